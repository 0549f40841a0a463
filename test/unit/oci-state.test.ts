// The state store of the OCI verbs (lib/oci/state.ts), without the CLI: the
// directory per container, its lock, and what a directory another user wrote
// can make a root process do. Through the CLI: test/oci/*.test.ts.
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  checkId,
  ContainerDir,
  listIds,
  load,
  mustLoad,
  OciStateError,
  procStat,
  signalChecked,
  stateRoot,
  statusOf,
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

t.test(
  'a container is a directory: claimed once, its record read without following links, removed whole',
  async (t) => {
    const root = scratch(t);
    const d = await ContainerDir.claim(root, 'a');
    d.writeRecord(record('a'));
    await t.rejects(ContainerDir.claim(root, 'a'), { message: /container with given ID already exists: a/ });
    d.writeRecord(record('a', { bundle: '/other' }));
    const s = mustLoad(root, 'a');
    t.equal(s.rec.bundle, '/other', 'a rewrite replaces the record');
    t.equal(s.owner, uid);
    s.dir.close();
    t.equal(load(root, 'none'), undefined);
    t.throws(() => mustLoad(root, 'none'), { message: /container does not exist: none/ });
    // The directory itself a symlink (to a directory with a valid record): refused, not followed.
    symlinkSync(join(root, 'a'), join(root, 'link'));
    t.throws(() => load(root, 'link'), { message: /is not a directory \(a symbolic link or a file\)/ });
    // state.json a symlink, junk, another id's record, too big.
    const mk = (id: string, content?: string) => {
      mkdirSync(join(root, id), { mode: 0o700 });
      if (content !== undefined) writeFileSync(join(root, id, 'state.json'), content);
    };
    mk('sl');
    symlinkSync(join(root, 'a', 'state.json'), join(root, 'sl', 'state.json'));
    t.throws(() => load(root, 'sl'), { message: /state file \S+ is a symbolic link/ });
    mk('junk', 'SECRET{');
    t.throws(() => load(root, 'junk'), { message: /^state file \S+ is not valid JSON$/ }, 'the content is not echoed');
    mk('other', JSON.stringify(record('a')));
    t.throws(() => load(root, 'other'), { message: /not a nodularity state record for `other`/ });
    mk('big', ' '.repeat(300_000));
    t.throws(() => load(root, 'big'), { message: /at most 256 KiB/ });
    mk('empty');
    t.equal(load(root, 'empty'), undefined, 'a directory without a record (a create that died early) is no container');
    // exec.fifo must be a FIFO.
    writeFileSync(join(root, 'a', 'exec.fifo'), '');
    const a = mustLoad(root, 'a');
    t.throws(() => a.dir.hasFifo(), { message: /exec.fifo is not a FIFO/ });
    unlinkSync(join(root, 'a', 'exec.fifo'));
    t.equal(a.dir.hasFifo(), false);
    await a.dir.remove();
    a.dir.close();
    d.close();
    t.same(
      readdirSync(root).filter((n) => !['sl', 'junk', 'other', 'big', 'empty', 'link'].includes(n)),
      [],
      'nothing of `a` is left',
    );
    t.same(listIds(root), ['big', 'empty', 'junk', 'link', 'other', 'sl']);
  },
);

t.test('the lock: one holder at a time; a dead holder is seen at once; a symlink is refused', async (t) => {
  const root = scratch(t);
  const d1 = await ContainerDir.claim(root, 'c');
  d1.writeRecord(record('c'));
  const d2 = ContainerDir.open(root, 'c')!;
  let second = false;
  const p = d2.lock().then(() => {
    second = true;
  });
  await new Promise((r) => setTimeout(r, 100));
  t.equal(second, false, 'the second locker waits while the first holds the lock');
  d1.unlock();
  await p;
  t.equal(second, true, 'and gets it once released');
  d2.unlock();
  // A lock left by a dead process (pid+start time of a finished child).
  const dead = spawn('true', { stdio: 'ignore' });
  await new Promise((r) => dead.once('spawn', r));
  const st = procStat(dead.pid!) ?? ['Z', '1'];
  await new Promise((r) => dead.once('exit', r));
  writeFileSync(join(root, 'c', 'lock'), `${dead.pid} ${st[1]}\n`);
  const t0 = Date.now();
  await d2.lock();
  t.ok(Date.now() - t0 < 1000, `a dead holder's lock is broken at once (${Date.now() - t0} ms)`);
  t.equal(readFileSync(join(root, 'c', 'lock'), 'utf8'), `${process.pid} ${self[1]}\n`, 'and the lock is ours');
  d2.unlock();
  const canary = join(root, 'canary');
  writeFileSync(canary, 'canary');
  symlinkSync(canary, join(root, 'c', 'lock'));
  await t.rejects(d2.lock(), { message: /lock file \S+ is a symbolic link/ });
  t.equal(readFileSync(canary, 'utf8'), 'canary', 'the link target is untouched');
  d1.close();
  d2.close();
});

t.test('status follows the recorded processes by pid and start time, and the FIFO', async (t) => {
  const root = scratch(t);
  const dir = await ContainerDir.claim(root, 'x');
  t.teardown(() => dir.close());
  const load = (over: Partial<StateRecord>): LoadedState => ({ dir, owner: uid, rec: record('x', over) });
  t.equal(statusOf(load({})), 'creating', 'the runtime lives, no payload yet');
  t.equal(statusOf(load({ runtimeStart: '1' })), 'stopped', 'the runtime pid is another process now');
  t.equal(statusOf(load({ pid: process.pid, pidStart: self[1] })), 'running');
  t.equal(statusOf(load({ pid: process.pid, pidStart: '1' })), 'stopped', 'a reused pid is not the container');
  execFileSync('mkfifo', [join(root, 'x', 'exec.fifo')]);
  t.equal(statusOf(load({ pid: process.pid, pidStart: self[1] })), 'created', 'alive, waiting at exec.fifo');
  t.equal(statusOf(load({ pid: process.pid, pidStart: self[1], started: true })), 'running', 'started says running');
  t.equal(statusOf(load({ pid: process.pid, pidStart: '1' })), 'stopped', 'died before start: stopped');
  unlinkSync(join(root, 'x', 'exec.fifo'));
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
    { message: /container not running/ },
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
