#!/usr/bin/env node
// The test command (npm test): runs the tap suite as the current user and,
// when that is root, a second time as an unprivileged user, so that the
// unprivileged path (single-ID maps, newuidmap ranges) is tested for real.
// Ends with the line "N passed, N failed" that CI reads.
//
// Counting: every result at every depth of a file's TAP stream is looked at.
// A test that has no subtests counts once (passed or failed); a test with
// subtests is counted through them, and once more as failed only if it failed
// outside them. Every SKIP or TODO directive, at any depth, is one skip and
// the test it stands in does not count as passed. A skip fails the run in CI:
// no skip counts as a pass.
//
// Running: each file is its own node process with tsx as the TypeScript
// loader (esbuild: about 1 s of CPU less per file than tap's ts-node loader,
// and a test file is a process of its own, twice), and no tap runner in
// between, so no .tap/ state in the checkout. Types are checked apart, by
// `npm run typecheck`.
//
// Files run --jobs at a time; a file whose first lines say `// test-runner: serial`
// (with the reason) changes or measures host-wide state (the host mount
// table, free ports, daemons) and runs with nothing else running.
//
// Root-only files: test/root/**/*.test.ts need root for what they set up
// (daemons such as slurmd, munged). They run in the root pass only and check
// the unprivileged user's path themselves (e.g. srun as nodularity-test). Run
// by a non-root user, each is reported as skipped, which fails in CI.
//
// Usage: node test/run.mjs [--unit] [--jobs=N] [--one-pass] [FILE...]
//   --unit      test/unit only, one pass: needs no addon and no busybox
//   --jobs=N    files at a time (default: NODULARITY_TEST_JOBS or cores + 1)
//   --one-pass  as root, skip the unprivileged pass
import { spawn, execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  openSync,
  readSync,
  closeSync,
  readdirSync,
  rmSync,
  statSync,
} from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Parser } from 'tap-parser';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const TEST_USER = process.env.NODULARITY_TEST_USER || 'nodularity-test';
const CI = process.env.CI === 'true' || process.env.CI === '1';
/** Per file, seconds: tap ends the file's root test then; we kill the file's process group a little later. */
const TIMEOUT_S = 240;

const opts = {
  unit: false,
  onePass: false,
  jobs: Number(process.env.NODULARITY_TEST_JOBS) || availableParallelism() + 1,
};
const args = [];
for (const a of process.argv.slice(2)) {
  if (a === '--unit') opts.unit = true;
  else if (a === '--one-pass') opts.onePass = true;
  else if (/^--jobs=\d+$/.test(a)) opts.jobs = Math.max(1, Number(a.slice(7)));
  else if (a.startsWith('--')) {
    console.error(`test/run.mjs: unknown option ${a}`);
    process.exit(2);
  } else args.push(a);
}

function findTests(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...findTests(p));
    else if (e.name.endsWith('.test.ts')) out.push(relative(root, p));
  }
  return out.sort();
}

const files = args.length ? args : findTests(join(root, 'test', opts.unit ? 'unit' : ''));
const counts = { passed: 0, failed: 0, skipped: 0 };
const failures = [];
const skips = [];
const ROOT_ONLY_DIR = join(root, 'test', 'root');
/** Whether FILE (as given on the command line or found) lies under test/root/. */
const isRootOnly = (file) => !relative(ROOT_ONLY_DIR, resolve(root, file)).startsWith('..');

/** Whether the file's head says `// test-runner: serial`. */
function isSerial(file) {
  const fd = openSync(resolve(root, file), 'r');
  try {
    const buf = Buffer.alloc(2048);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return /^\/\/ test-runner: serial\b/m.test(buf.subarray(0, n).toString('utf8'));
  } finally {
    closeSync(fd);
  }
}

if (!opts.unit) {
  for (const f of [
    'build/Release/nodularity.node',
    'build/Release/nodularity-init',
    'build/Release/nodularity-test-payload',
  ]) {
    if (!existsSync(join(root, f))) {
      console.error(`${f} is missing: run \`npm install\` (or \`npx node-gyp rebuild\`) first`);
      console.log('0 passed, 1 failed');
      process.exit(1);
    }
  }
}

/**
 * Tally one file's TAP stream (see the counting rules at the top). Returns
 * what it counted; `names` are the failed or skipped tests, "a > b > c".
 */
function tally(tap, fileOk, file, fileNote) {
  const c = { passed: 0, failed: 0, skipped: 0, failedNames: [], skippedNames: [] };
  // A node is a test: its results in order, each maybe with the node of its subtest.
  const newNode = () => ({ items: [], skipAll: false, bailout: null });
  const attach = (parser, node) => {
    let pending = null;
    parser.on('child', (child) => {
      pending = newNode();
      attach(child, pending);
    });
    parser.on('assert', (res) => {
      node.items.push({ res, sub: pending });
      pending = null;
    });
    parser.on('complete', (final) => {
      if (final.plan?.skipAll) node.skipAll = final.plan.skipReason || 'plan 1..0';
    });
    parser.on('bailout', (reason) => {
      node.bailout = reason || 'bail out';
    });
  };
  const top = newNode();
  const parser = new Parser();
  attach(parser, top);
  parser.end(tap);

  /**
   * The failed assertions of NODE with what tap said of each (found, wanted,
   * where), a few lines each: the final "Failed:" list is often all a CI log
   * keeps, so it must say why and not only what.
   */
  const why = (node) => {
    const lines = [];
    for (const { res, sub } of node.items) {
      if (res.ok || sub || res.skip !== false || res.todo !== false) continue;
      lines.push(`not ok ${res.id} - ${res.name || ''}`.slice(0, 1500).replace(/\n/g, '\n        '));
      const d = res.diag || {};
      for (const k of ['found', 'wanted', 'pattern', 'doNotWant', 'message', 'diff']) {
        if (d[k] === undefined) continue;
        const v = typeof d[k] === 'string' ? d[k] : JSON.stringify(d[k]);
        lines.push(`  ${k}: ${v.length > 1200 ? `${v.slice(0, 1200)}…` : v}`.trimEnd().replace(/\n/g, '\n          '));
      }
      if (d.at) lines.push(`  at: ${d.at.fileName ?? ''}:${d.at.lineNumber ?? ''}`);
    }
    return lines.length ? `\n      ${lines.slice(0, 40).join('\n      ')}` : '';
  };

  /** Count NODE (reached by PATH, finished with OK); returns whether a failure was counted in it. */
  const count = (node, path, ok) => {
    let failedBelow = false;
    let skippedHere = false;
    let subtests = 0;
    for (const { res, sub } of node.items) {
      const name = [...path, res.name || `#${res.id}`].join(' > ');
      if (res.skip !== false || res.todo !== false) {
        c.skipped++;
        c.skippedNames.push(
          `${name} (${res.skip !== false ? 'SKIP' : 'TODO'}${typeof (res.skip || res.todo) === 'string' ? `: ${res.skip || res.todo}` : ''})`,
        );
        skippedHere = true;
        if (sub) subtests++;
      } else if (sub) {
        subtests++;
        if (count(sub, [...path, res.name || `#${res.id}`], res.ok)) failedBelow = true;
      }
    }
    if (node.bailout) {
      c.failed++;
      c.failedNames.push(`${path.join(' > ')} (bail out: ${node.bailout})`);
      return true;
    }
    if (!ok) {
      if (failedBelow) return true;
      c.failed++;
      if (path.length === 1) c.failedNames.push(`${file} (file failed: ${fileNote})`);
      else
        c.failedNames.push(
          (subtests ? `${path.join(' > ')} (failed outside its subtests)` : path.join(' > ')) + why(node),
        );
      return true;
    }
    if (node.skipAll && !skippedHere) {
      c.skipped++;
      c.skippedNames.push(`${path.join(' > ')} (SKIP: ${node.skipAll})`);
    } else if (!subtests && !skippedHere) c.passed++;
    return failedBelow;
  };
  count(top, [file], fileOk);
  return c;
}

/** Run one file as the given identity; resolves with its TAP, stderr, exit status and seconds. */
function runFile(file, prefix, env) {
  const nodeArgs = ['--import=tsx', '--enable-source-maps', resolve(root, file)];
  const [cmd, ...cmdArgs] = [...prefix, process.execPath, ...nodeArgs];
  const started = process.hrtime.bigint();
  return new Promise((done) => {
    const child = spawn(cmd, cmdArgs, {
      cwd: root,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        ...env,
        TAP: '1',
        TAP_TIMEOUT: String(TIMEOUT_S),
        TSX_TSCONFIG_PATH: join(root, 'test', 'tsconfig.json'),
      },
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d) => {
      err += d;
    });
    let killed = false;
    const timer = setTimeout(
      () => {
        killed = true;
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      },
      (TIMEOUT_S + 30) * 1000,
    );
    child.on('error', (e) => {
      err += `\n${e.message}`;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      done({ out, err, code, signal, killed, seconds });
    });
  });
}

/** Run the files of one pass, --jobs at a time, serial files alone; tally as they finish. */
async function runPass(label, prefix, env, passFiles) {
  console.log(`\n# ===== ${label} =====`);
  if (!passFiles.length) {
    console.log('# no test files for this pass');
    return;
  }
  const passStart = Date.now();
  const size = (f) => statSync(resolve(root, f)).size;
  // Longest first (size as the guess) packs the pool better; serial files after.
  const queue = [
    ...passFiles
      .filter((f) => !isSerial(f))
      .sort((a, b) => size(b) - size(a))
      .map((f) => ({ f, serial: false })),
    ...passFiles.filter(isSerial).map((f) => ({ f, serial: true })),
  ];
  const times = [];
  let running = 0;
  let n = 0;
  await new Promise((allDone) => {
    const next = () => {
      if (!queue.length && !running) return allDone();
      while (queue.length && running < opts.jobs) {
        if (queue[0].serial && running) break;
        const { f, serial } = queue.shift();
        running++;
        void runFile(f, prefix, env).then((r) => {
          running--;
          report(f, r);
          next();
        });
        if (serial) break;
      }
    };
    const report = (f, r) => {
      const ok = r.code === 0 && !r.killed;
      const c = tally(r.out, ok, f, r.killed ? 'killed on timeout' : `exit ${r.code ?? r.signal}`);
      n++;
      times.push([f, r.seconds]);
      console.log(`# Subtest: ${f}`);
      for (const line of r.out.split('\n')) console.log(line ? `    ${line}` : '');
      if (r.err.trim()) console.log(r.err.replace(/^/gm, '# stderr: '));
      if (r.killed) console.log(`    # killed after ${TIMEOUT_S + 30} s`);
      const status = ok && !c.failed ? 'ok' : 'not ok';
      console.log(`${status} ${n} - ${f} # time=${r.seconds.toFixed(1)}s exit=${r.code ?? r.signal}\n`);
      if (!ok && !c.failed) {
        c.failed++;
        const tail = r.err.trim().split('\n').slice(-12).join('\n        ');
        c.failedNames.push(
          `${f} (file failed: ${r.killed ? 'killed on timeout' : `exit ${r.code ?? r.signal}`})${tail ? `\n        ${tail}` : ''}`,
        );
      }
      counts.passed += c.passed;
      counts.failed += c.failed;
      counts.skipped += c.skipped;
      failures.push(...c.failedNames.map((x) => `${label}: ${x}`));
      skips.push(...c.skippedNames.map((x) => `${label}: ${x}`));
    };
    next();
  });
  const wall = (Date.now() - passStart) / 1000;
  console.log(`# time per file (${label}):`);
  for (const [f, s] of times.sort((a, b) => b[1] - a[1])) console.log(`#   ${s.toFixed(1).padStart(6)} s  ${f}`);
  console.log(`# pass total: ${wall.toFixed(1)} s wall for ${times.length} files, ${opts.jobs} at a time`);
  return wall;
}

const isRoot = process.geteuid() === 0 && !opts.unit;
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
if (!isRoot && !opts.unit) {
  for (const f of rootOnly) {
    counts.skipped++;
    skips.push(`${f}: root-only (test/root/), run the suite as root`);
  }
}
const walls = [];
const started = Date.now();
walls.push([
  isRoot ? 'as root' : `as uid ${process.geteuid()}`,
  await runPass(isRoot ? 'as root' : `as uid ${process.geteuid()}`, [], env, isRoot ? files : everyPass),
]);

if (isRoot && !opts.onePass) {
  let uid;
  try {
    uid = Number(execFileSync('id', ['-u', TEST_USER], { encoding: 'utf8' }).trim());
  } catch {
    counts.failed++;
    failures.push(
      `unprivileged pass: user ${TEST_USER} does not exist (create it with \`bash scripts/test-user.sh\`, which .ci/run does)`,
    );
  }
  if (uid !== undefined) {
    const gid = Number(execFileSync('id', ['-g', TEST_USER], { encoding: 'utf8' }).trim());
    // Its own HOME: nothing of this pass lands in root's home or the checkout.
    const home = mkdtempSync(join(tmpdir(), 'nodularity-home-'));
    chownSync(home, uid, gid);
    if ((statSync(root).mode & 0o005) !== 0o005) {
      counts.failed++;
      failures.push(`unprivileged pass: ${root} is not readable by others (chmod -R o+rX it)`);
    } else {
      const label = `as ${TEST_USER} (uid ${uid}, unprivileged)`;
      walls.push([
        label,
        await runPass(
          label,
          [
            'setpriv',
            `--reuid=${uid}`,
            `--regid=${gid}`,
            '--clear-groups',
            '--inh-caps=-all',
            'env',
            `HOME=${home}`,
            `USER=${TEST_USER}`,
          ],
          { ...env, TMPDIR: '/tmp' },
          everyPass,
        ),
      ]);
    }
    rmSync(home, { recursive: true, force: true });
  }
}
if (suidDir) rmSync(suidDir, { recursive: true, force: true });

if (skips.length) console.log(`\nSkipped:\n  ${skips.join('\n  ')}`);
if (failures.length) console.log(`\nFailed:\n  ${failures.join('\n  ')}`);
for (const [label, wall] of walls) if (wall !== undefined) console.log(`# ${label}: ${wall.toFixed(1)} s`);
console.log(`# total: ${((Date.now() - started) / 1000).toFixed(1)} s`);
if (counts.skipped && CI) console.log(`\n${counts.skipped} skipped: a skip is a failure in CI`);
console.log(`\n${counts.passed} passed, ${counts.failed} failed${counts.skipped ? `, ${counts.skipped} skipped` : ''}`);
process.exit(counts.failed || (CI && counts.skipped) ? 1 : 0);
