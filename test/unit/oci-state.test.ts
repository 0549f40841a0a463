// The state store of `nodularity oci` (lib/oci/state.ts), without the CLI:
// what a file another user wrote can make a root process do.
import t from 'tap';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  checkId,
  mustRead,
  OciStateError,
  procStat,
  readState,
  removeState,
  signalChecked,
  stateRoot,
  statusOf,
  writeState,
  type LoadedState,
  type StateRecord,
} from '../../lib/oci/state.js';
import { parseSignal, signalName, signalNumber } from '../../lib/signals.js';
import { which } from '../../lib/which.js';
import { isRoot, scratch, uid } from '../helpers/env.js';

const self = procStat(process.pid)!;
const record = (id: string, over: Partial<StateRecord> = {}): StateRecord => ({
  ociVersion: '1.1.0',
  id,
  bundle: '/b',
  created: new Date(0).toISOString(),
  pid: 0,
  pidStart: '',
  runtimePid: process.pid,
  runtimeStart: self[1],
  ...over,
});

t.test('ids: letters, digits and _ . + @ : -, not starting with a dot', async (t) => {
  for (const ok of ['job-1', 'a.b:c@d+e_f', 'x'.repeat(251)]) t.equal(checkId(ok), ok);
  for (const bad of ['', '.hidden', '../x', 'a/b', 'x'.repeat(252), 'sp ace'])
    t.throws(() => checkId(bad), OciStateError, JSON.stringify(bad));
});

t.test('the state directory must be ours and not writable by others', async (t) => {
  const dir = scratch(t);
  t.equal(stateRoot(join(dir, 'given'), true), join(dir, 'given'), '--root is taken as given');
  const shared = join(dir, 'xdg');
  mkdirSync(join(shared, 'nodularity'), { recursive: true, mode: 0o777 });
  chmodSync(join(shared, 'nodularity'), 0o777);
  const saved = process.env.XDG_RUNTIME_DIR;
  t.teardown(() => {
    if (saved === undefined) delete process.env.XDG_RUNTIME_DIR;
    else process.env.XDG_RUNTIME_DIR = saved;
  });
  process.env.XDG_RUNTIME_DIR = shared;
  t.throws(() => stateRoot(undefined, false), { name: 'OciStateError', message: /writable only by it; pass --root/ });
  chmodSync(join(shared, 'nodularity'), 0o700);
  t.equal(stateRoot(undefined, false), join(shared, 'nodularity'));
});

t.test("write claims an id once; read refuses links, junk and another id's record", async (t) => {
  const root = scratch(t);
  const file = writeState(root, record('a'), true);
  t.throws(() => writeState(root, record('a'), true), { message: /container `a` already exists/ });
  writeState(root, record('a', { bundle: '/other' }), false);
  t.equal(mustRead(root, 'a').rec.bundle, '/other', 'a rewrite replaces the record');
  t.equal(mustRead(root, 'a').owner, uid);
  t.equal(readState(root, 'none'), undefined);
  t.throws(() => mustRead(root, 'none'), { message: /container `none` does not exist/ });
  symlinkSync(file, join(root, 'link.json'));
  t.throws(() => readState(root, 'link'), { message: /is a symbolic link/ });
  writeFileSync(join(root, 'junk.json'), 'SECRET{');
  t.throws(
    () => readState(root, 'junk'),
    { message: /^state file \S+ is not valid JSON$/ },
    'the content is not echoed',
  );
  writeFileSync(join(root, 'other.json'), JSON.stringify(record('a')));
  t.throws(() => readState(root, 'other'), { message: /not a nodularity state record for `other`/ });
  writeFileSync(join(root, 'big.json'), ' '.repeat(70000));
  t.throws(() => readState(root, 'big'), { message: /at most 64 KiB/ });
  removeState(file);
  removeState(file); // gone already: fine
  t.equal(readState(root, 'a'), undefined);
});

t.test('status follows the recorded processes by pid and start time', async (t) => {
  const root = scratch(t);
  const load = (over: Partial<StateRecord>): LoadedState => ({
    file: join(root, 'x.json'),
    owner: uid,
    rec: record('x', over),
  });
  t.equal(statusOf(load({})), 'creating', 'the runtime lives, no payload yet');
  t.equal(statusOf(load({ runtimeStart: '1' })), 'stopped', 'the runtime pid is another process now');
  t.equal(statusOf(load({ pid: process.pid, pidStart: self[1] })), 'running');
  t.equal(statusOf(load({ pid: process.pid, pidStart: '1' })), 'stopped', 'a reused pid is not the container');
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.teardown(() => {
    sleeper.kill('SIGKILL');
  });
  await new Promise((r) => sleeper.once('spawn', r));
  let st = procStat(sleeper.pid!)!;
  for (let i = 0; i < 50 && readFileSync(`/proc/${sleeper.pid}/cmdline`, 'utf8').startsWith(process.execPath); i++) {
    await new Promise((r) => setTimeout(r, 20));
    st = procStat(sleeper.pid!)!;
  }
  const running = load({ pid: sleeper.pid!, pidStart: st[1] });
  t.throws(
    () => signalChecked(running, sleeper.pid!, '1', 'SIGTERM'),
    { message: /is not running/ },
    'no signal to a reused pid',
  );
  if (isRoot) {
    // Root reads a record a job's user wrote: a pid of someone else is not signalled.
    const foreign: LoadedState = { ...running, owner: 12345 };
    t.throws(() => signalChecked(foreign, sleeper.pid!, st[1], 'SIGTERM'), { message: /does not belong to uid 12345/ });
    t.equal(statusOf(running), 'running', 'and it still runs');
  } else {
    t.comment('a record written by another uid needs root to read it: the root pass checks that');
  }
  signalChecked(running, sleeper.pid!, st[1], 'SIGTERM');
  const [, sig] = await new Promise<[number | null, NodeJS.Signals | null]>((r) =>
    sleeper.once('exit', (c, s) => r([c, s])),
  );
  t.equal(sig, 'SIGTERM', "the owner's own process is signalled");
});

t.test('one signal table: names, numbers and what users type', async (t) => {
  t.equal(signalNumber('SIGKILL'), 9);
  t.equal(signalNumber(15), 15);
  t.throws(() => signalNumber('SIGNOPE' as NodeJS.Signals), TypeError);
  t.equal(signalName(6), 'SIGABRT', 'the first name of a shared number');
  t.equal(signalName(99), null);
  t.same(['TERM', 'sigterm', 'SIGTERM', '15'].map(parseSignal), Array(4).fill('SIGTERM'));
  t.same(['NOPE', '99', '', '-9'].map(parseSignal), [null, null, null, null]);
});

t.test('which: absolute PATH entries, then the default PATH; never a relative one', async (t) => {
  const dir = scratch(t);
  mkdirSync(join(dir, 'bin'));
  writeFileSync(join(dir, 'bin', 'nodularity-probe'), '#!/bin/sh\n', { mode: 0o755 });
  writeFileSync(join(dir, 'bin', 'not-exec'), '', { mode: 0o644 });
  const saved = { path: process.env.PATH, cwd: process.cwd() };
  t.teardown(() => {
    process.env.PATH = saved.path;
    process.chdir(saved.cwd);
  });
  process.env.PATH = join(dir, 'bin');
  t.equal(which('nodularity-probe'), join(dir, 'bin', 'nodularity-probe'));
  t.equal(which('not-exec'), null);
  t.equal(which('sh'), '/usr/bin/sh', 'found through the default PATH');
  process.chdir(dir);
  process.env.PATH = 'bin';
  t.equal(which('nodularity-probe'), null, 'a relative PATH entry is not searched');
});
