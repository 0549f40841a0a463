// The CLI in Apptainer's place: HTCondor's exact argument form, its exit-37
// check, `test`, `--version`, APPTAINERENV_ reaching the payload, the payload
// being the CLI's child or grandchild, and bad command lines.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeCliWrapper } from '../helpers/cli.js';
import { scratch } from '../helpers/env.js';
import { makeSandbox } from './fixtures.js';

let image: string;
let cli: string;
t.before(() => {
  image = makeSandbox(t, {
    runscript: '#!/bin/sh\necho "run: $*"\n',
    test: '#!/bin/sh\necho testing; exit 0\n',
    files: { exit_37: '#!/bin/sh\nexit 37\n' },
  });
  // What HTCondor's SINGULARITY knob would point at: an executable.
  cli = join(scratch(t), 'nodularity');
  writeCliWrapper(cli);
});

function nodularity(args: string[], env: NodeJS.ProcessEnv = {}, cwd = '/') {
  const r = spawnSync(cli, args, { encoding: 'utf8', env: { ...process.env, ...env }, cwd });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

t.test('--version says apptainer (HTCondor picks APPTAINERENV_ from it); version too', async (t) => {
  const v = nodularity(['--version']);
  t.equal(v.code, 0);
  t.match(v.out, /^apptainer version \d+\.\d+\.\d+\+nodularity\.\d+\.\d+\.\d+\n$/);
  t.equal(nodularity(['version']).out, v.out);
});

t.test('exec -C IMAGE /exit_37 exits 37', async (t) => {
  t.equal(nodularity(['exec', '-C', image, '/exit_37']).code, 37);
});

t.test("HTCondor's argument form, as given, with APPTAINERENV_ reaching the payload", async (t) => {
  const slot = scratch(t);
  const scratchDir = join(slot, 'execute', 'dir_1');
  mkdirSync(scratchDir, { recursive: true });
  writeFileSync(
    join(scratchDir, 'condor_exec.exe'),
    '#!/bin/sh\necho "args: $*"; pwd; echo "home=$HOME"; echo "job=$JOB_ID"; ls /tmp | wc -l; echo data > out.txt; exit 3\n',
  );
  chmodSync(join(scratchDir, 'condor_exec.exe'), 0o755);
  const r = nodularity(
    [
      '-s',
      'exec',
      '-S',
      '/tmp',
      '-S',
      '/var/tmp',
      '-W',
      scratchDir,
      '--pwd',
      scratchDir,
      '-B',
      slot,
      '--home',
      scratchDir,
      '-C',
      image,
      join(scratchDir, 'condor_exec.exe'),
      'a1',
      '-x',
      '--long',
    ],
    { APPTAINERENV_JOB_ID: '1234.0', HOST_SECRET: 'no' },
  );
  t.equal(r.code, 3, r.err);
  // /tmp is fresh (-S), holding only the mount point of the slot dir (-B), which is under the host's /tmp here.
  t.equal(r.out, `args: a1 -x --long\n${scratchDir}\nhome=${scratchDir}\njob=1234.0\n1\n`);
  t.equal(readFileSync(join(scratchDir, 'out.txt'), 'utf8'), 'data\n', 'the job wrote into its scratch dir');
  t.equal(r.err, '', '-s: nothing but the payload');
});

t.test('a SIGTERM while the payload is being started reaches the payload, not the CLI alone', async (t) => {
  // Between the clone and the CLI's forwarding there was a window where the
  // CLI died of the signal and the payload got the parent-death SIGKILL.
  // Signals at delays across the launch: whenever the payload has started
  // (its marker exists), the CLI must end with the payload's 143.
  const dir = scratch(t);
  let started = 0;
  for (let i = 0; i < 14; i++) {
    const marker = join(dir, `started-${i}`);
    const c = spawn(cli, ['exec', image, '/bin/sh', '-c', `touch ${marker}; exec sleep 20`], { stdio: 'ignore' });
    const ended = new Promise<[number | null, NodeJS.Signals | null]>((r) =>
      c.once('exit', (code, sig) => r([code, sig])),
    );
    await new Promise((r) => setTimeout(r, 100 + i * 100));
    c.kill('SIGTERM');
    const [code, sig] = await ended;
    if (existsSync(marker)) {
      started++;
      t.same(
        [code, sig],
        [143, null],
        `delay ${100 + i * 100} ms, payload running: the CLI exits 143, the payload's status`,
      );
    } else {
      t.ok(code === 143 || sig === 'SIGTERM', `delay ${100 + i * 100} ms, before the payload: ${code} ${sig}`);
    }
  }
  t.ok(started > 0, `some signals came after the payload started (${started} of 14)`);
});

t.test("the payload is the CLI's child or grandchild", async (t) => {
  const marker = `nodularity-marker-${process.pid}`;
  const c = spawn(cli, ['exec', image, '/bin/sh', '-c', `sleep 30; echo ${marker}`], { stdio: 'ignore' });
  t.teardown(() => {
    c.kill('SIGKILL');
  });
  const ppid = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
  let found: number | undefined;
  for (let i = 0; i < 400 && !found; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const shells: number[] = [];
    for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      try {
        const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
        if (argv[0] === '/bin/sh' && argv.some((a) => a.includes(marker))) shells.push(Number(p));
      } catch {
        /* gone */
      }
    }
    // The payload's shell, not a child it forked for `sleep` that has not
    // exec'd yet (the same argv for a moment: the test once took that one).
    found = shells.find((p) => {
      try {
        return !shells.includes(ppid(p));
      } catch {
        return false;
      }
    });
  }
  t.ok(found, 'payload found');
  const parent = ppid(found!);
  const cmd = (pid: number) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').slice(0, 120);
    } catch {
      return '(gone)';
    }
  };
  t.ok(
    parent === c.pid || ppid(parent) === c.pid,
    `payload ${found} -> ${parent} (${cmd(parent)}) -> ${ppid(parent)} (${cmd(ppid(parent))}); CLI ${c.pid}`,
  );
  process.kill(c.pid!, 'SIGTERM');
  const code = await new Promise((r) => c.on('exit', (code, sig) => r(code ?? sig)));
  t.equal(code, 143, 'SIGTERM forwarded to the payload: 128+15');
});

t.test('run and test', async (t) => {
  t.same(nodularity(['run', image, 'x', '-y']), { code: 0, out: 'run: x -y\n', err: '' });
  t.same(nodularity(['test', image]), { code: 0, out: 'testing\n', err: '' });
  const bare = makeSandbox(t);
  const r = nodularity(['test', bare]);
  t.equal(r.code, 0);
  t.match(r.err, /No test script found in container/);
});

t.test('env, cleanenv and env-file on the command line', async (t) => {
  const d = scratch(t);
  writeFileSync(join(d, 'f.env'), 'FROM_FILE=1\n');
  const r = nodularity(
    [
      'exec',
      '-e',
      '--env',
      'A=1,B=2',
      '--env-file',
      join(d, 'f.env'),
      image,
      '/bin/sh',
      '-c',
      'echo $A$B$FROM_FILE${HOST_SECRET:-clean}',
    ],
    { HOST_SECRET: 'leak' },
  );
  t.equal(r.out, '121clean\n', r.err);
});

t.test('bad flags and missing images: a message and the usage, status 255, no stack trace', async (t) => {
  const bad = nodularity(['exec', '--no-such-flag', image, '/bin/true']);
  t.equal(bad.code, 255);
  t.match(bad.err, /unknown option '--no-such-flag'/);
  t.match(bad.err, /Usage: nodularity exec \[options\] <image> <command\.\.\.>/);
  const missing = nodularity(['exec', '/no/such/image', '/bin/true']);
  t.equal(missing.code, 255);
  t.match(missing.err, /^FATAL: {3}image: image \/no\/such\/image does not exist \(ENOENT\)\n$/);
  const noCmd = nodularity(['exec', image]);
  t.equal(noCmd.code, 255);
  t.match(noCmd.err, /missing required argument 'command'/);
  const badNet = nodularity(['exec', '--net', '--network', 'bridge', image, '/bin/true']);
  t.equal(badNet.code, 255);
  t.match(badNet.err, /--network.*Allowed choices are none, host/);
  const unknown = nodularity(['frobnicate']);
  t.equal(unknown.code, 255);
  t.match(unknown.err, /unknown command 'frobnicate'/);
  for (const r of [bad, missing, noCmd, badNet, unknown]) t.notMatch(r.err, /\n\s+at /, 'no stack trace');
});
