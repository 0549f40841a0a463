#!/usr/bin/env node
// The test command (npm test): runs the tap suite as the current user and,
// when that is root, a second time as an unprivileged user, so that the
// unprivileged path (single-ID maps, newuidmap ranges) is tested for real.
// Ends with the line "N passed, N failed" that CI reads. A skipped test is
// reported apart and fails the run in CI: no skip counts as a pass.
//
// Root-only files: test/root/**/*.test.ts need root for what they set up
// (daemons such as slurmd, munged). They run in the root pass only and check
// the unprivileged user's path themselves (e.g. srun as nodularity-test). Run
// by a non-root user, each is reported as skipped, which fails in CI.
import { spawnSync, execFileSync } from 'node:child_process';
import { accessSync, chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const TEST_USER = process.env.NODULARITY_TEST_USER || 'nodularity-test';
const CI = process.env.CI === 'true' || process.env.CI === '1';
const args = process.argv.slice(2);

function findTests(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...findTests(p));
    else if (e.name.endsWith('.test.ts')) out.push(relative(root, p));
  }
  return out.sort();
}

const files = args.length ? args : findTests(join(root, 'test'));
const counts = { passed: 0, failed: 0, skipped: 0 };
const failures = [];
const ROOT_ONLY_DIR = join(root, 'test', 'root');
/** Whether FILE (as given on the command line or found) lies under test/root/. */
const isRootOnly = (file) => !relative(ROOT_ONLY_DIR, resolve(root, file)).startsWith('..');

for (const f of ['build/Release/nodularity.node', 'build/Release/nodularity-init', 'build/Release/nodularity-test-payload']) {
  if (!existsSync(join(root, f))) {
    console.error(`${f} is missing: run \`npm install\` (or \`npx node-gyp rebuild\`) first`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
}

/** Run tap over the files as the given identity; tally subtests from the TAP stream. */
function runPass(label, prefix, env, files) {
  console.log(`\n# ===== ${label} =====`);
  // tap given no files would search for tests itself.
  if (!files.length) {
    console.log('# no test files for this pass');
    return;
  }
  const tapBin = join(root, 'node_modules', '.bin', 'tap');
  const r = spawnSync(prefix[0] ?? tapBin, [...prefix.slice(1), ...(prefix.length ? [tapBin] : []),
    '--disable-coverage', '--reporter=tap', '--timeout=240', '--jobs=1', ...files], {
    cwd: root, env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024,
  });
  process.stdout.write(r.stdout ?? '');
  process.stderr.write(r.stderr ?? '');
  let file = '';
  let fileHadFailure = false;
  const failedBefore = counts.failed;
  const reported = new Set();
  for (const line of (r.stdout ?? '').split('\n')) {
    const sub = /^    (not )?ok \d+ - (.*?)(?: # (SKIP|TODO)\b.*| # time=.*)?$/.exec(line);
    const top = /^(not )?ok \d+ - (\S+)/.exec(line);
    if (/^# Subtest: /.test(line)) { file = line.slice(11); fileHadFailure = false; }
    if (top) reported.add(top[2]);
    if (sub) {
      if (sub[3]) counts.skipped++;
      else if (sub[1]) { counts.failed++; fileHadFailure = true; failures.push(`${label}: ${file} > ${sub[2]}`); }
      else counts.passed++;
    } else if (top && top[1] && !fileHadFailure) {
      // A file that failed outside any subtest (crash, timeout, syntax error).
      counts.failed++;
      failures.push(`${label}: ${top[2]} (file failed)`);
    }
  }
  // A file with no result line never ran (tap itself crashed): a failure,
  // as is tap failing while no test said why.
  for (const f of files) {
    if (!reported.has(f)) { counts.failed++; failures.push(`${label}: ${f} (no result: tap did not run it)`); }
  }
  if (r.status === 1 && counts.failed === failedBefore) {
    counts.failed++;
    failures.push(`${label}: tap exited with 1 but no test failed`);
  }
  if (r.status !== 0 && r.status !== 1) {
    counts.failed++;
    failures.push(`${label}: tap exited with ${r.status ?? r.signal}${r.error ? `: ${r.error.message}` : ''}`);
  }
}

const isRoot = process.geteuid() === 0;
let suidDir;
const env = {};
if (isRoot) {
  // A setuid-root copy of the payload for the "setuid gives nothing" tests:
  // only root can make it, the unprivileged pass uses it too.
  suidDir = mkdtempSync(join(tmpdir(), 'nodularity-suid-'));
  chmodSync(suidDir, 0o755);
  const suid = join(suidDir, 'suid-payload');
  copyFileSync(join(root, 'build/Release/nodularity-test-payload'), suid);
  chownSync(suid, 0, 0);
  chmodSync(suid, 0o4755);
  env.NODULARITY_TEST_SUID_PAYLOAD = suid;
}

const rootOnly = files.filter(isRootOnly);
const everyPass = files.filter((f) => !isRootOnly(f));
if (!isRoot) {
  for (const f of rootOnly) {
    counts.skipped++;
    console.log(`# SKIP ${f}: root-only (test/root/), run the suite as root`);
  }
}
runPass(isRoot ? 'as root' : `as uid ${process.geteuid()}`, [], env, isRoot ? files : everyPass);

if (isRoot) {
  let uid;
  try {
    uid = Number(execFileSync('id', ['-u', TEST_USER], { encoding: 'utf8' }).trim());
  } catch {
    counts.failed++;
    failures.push(`unprivileged pass: user ${TEST_USER} does not exist (create it with \`bash scripts/test-user.sh\`, which .ci/run does)`);
  }
  if (uid !== undefined) {
    const gid = Number(execFileSync('id', ['-g', TEST_USER], { encoding: 'utf8' }).trim());
    const home = mkdtempSync(join(tmpdir(), 'nodularity-home-'));
    chownSync(home, uid, gid);
    // tap keeps its bookkeeping in .tap/ of the project: hand it over.
    mkdirSync(join(root, '.tap'), { recursive: true });
    execFileSync('chown', ['-R', `${uid}:${gid}`, join(root, '.tap')]);
    try {
      accessSync(join(root, 'build/Release/nodularity.node'));
      if ((statSync(root).mode & 0o005) !== 0o005) throw new Error(`${root} is not readable by others`);
    } catch (e) {
      counts.failed++;
      failures.push(`unprivileged pass: ${e.message}`);
    }
    runPass(`as ${TEST_USER} (uid ${uid}, unprivileged)`,
      ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--inh-caps=-all', 'env', `HOME=${home}`, `USER=${TEST_USER}`],
      { ...env, TMPDIR: '/tmp' }, everyPass);
    execFileSync('chown', ['-R', '0:0', join(root, '.tap')]);
    rmSync(home, { recursive: true, force: true });
  }
}
if (suidDir) rmSync(suidDir, { recursive: true, force: true });

if (failures.length) console.log(`\nFailed:\n  ${failures.join('\n  ')}`);
if (counts.skipped && CI) console.log(`\n${counts.skipped} skipped: a skip is a failure in CI`);
console.log(`\n${counts.passed} passed, ${counts.failed} failed${counts.skipped ? `, ${counts.skipped} skipped` : ''}`);
process.exit(counts.failed || (CI && counts.skipped) ? 1 : 0);
