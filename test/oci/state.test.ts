// The state directory under attack and under load, through bin/nodularity-oci:
// links planted for state.json, exec.fifo, lock and the directory itself are
// refused (the link targets, host canaries, stay untouched); root does not run
// the hooks a user's state names; verbs on one id at once are serialised.
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, scratch } from '../helpers/env.js';
import { oci } from './helpers.js';

const TEST_USER = process.env.NODULARITY_TEST_USER || 'nodularity-test';

function startTime(pid: number): string {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2).split(' ')[19]!;
}

/** A record as create writes it. */
function record(id: string, over: Record<string, unknown> = {}): string {
  return JSON.stringify({
    ociVersion: '1.2.0',
    id,
    bundle: '/nonexistent',
    created: new Date().toISOString(),
    pid: 0,
    pidStart: '',
    runtimePid: 0,
    runtimeStart: '',
    ...over,
  });
}

/** A sleeping host process of ours, tagged, killed at teardown. */
async function sleeper(t: Tap): Promise<{ pid: number; start: string }> {
  const p = spawn('sleep', ['300'], { stdio: 'ignore' });
  t.teardown(() => {
    p.kill('SIGKILL');
  });
  await new Promise((r) => p.once('spawn', r));
  // Until the exec replaced node's image (the start time does not change, the name does).
  for (let i = 0; i < 100 && !readFileSync(`/proc/${p.pid}/cmdline`, 'latin1').startsWith('sleep'); i++)
    await new Promise((r) => setTimeout(r, 10));
  return { pid: p.pid!, start: startTime(p.pid!) };
}
type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

t.test('planted links are refused and their targets untouched', async (t) => {
  const root = scratch(t);
  const outside = scratch(t);
  const canary = join(outside, 'canary');
  writeFileSync(canary, 'canary\n');
  const same = () => existsSync(canary) && readFileSync(canary, 'utf8') === 'canary\n';

  // state.json -> a file outside holding a record of the right id.
  mkdirSync(join(root, 'h1'));
  writeFileSync(join(outside, 'h1.json'), record('h1'));
  symlinkSync(join(outside, 'h1.json'), join(root, 'h1', 'state.json'));
  for (const verb of [['state'], ['delete', '--force'], ['kill']]) {
    const r = await oci(root, ...verb, 'h1');
    t.equal(r.code, 1, `${verb.join(' ')}: refused`);
    t.match(r.err, /state file \S+h1\/state\.json is a symbolic link: refusing it/);
  }
  t.ok(existsSync(join(outside, 'h1.json')), 'the link target is still there');

  // exec.fifo -> the canary: start must not write to it, state must not call it created.
  const s = await sleeper(t);
  mkdirSync(join(root, 'h2'));
  writeFileSync(join(root, 'h2', 'state.json'), record('h2', { pid: s.pid, pidStart: s.start }));
  symlinkSync(canary, join(root, 'h2', 'exec.fifo'));
  for (const verb of ['start', 'state']) {
    const r = await oci(root, verb, 'h2');
    t.equal(r.code, 1, `${verb}: refused`);
    t.match(r.err, /h2\/exec\.fifo is not a FIFO \(a symbolic link or a file\): refusing it/);
  }
  t.ok(same(), 'the canary is untouched');

  // lock -> the canary: delete takes the lock, and refuses this one.
  mkdirSync(join(root, 'h3'));
  writeFileSync(join(root, 'h3', 'state.json'), record('h3'));
  symlinkSync(canary, join(root, 'h3', 'lock'));
  const d3 = await oci(root, 'delete', 'h3');
  t.equal(d3.code, 1);
  t.match(d3.err, /lock file \S+h3\/lock is a symbolic link: refusing it/);
  t.ok(same(), 'the canary is untouched');

  // The container directory itself a link to a directory outside with a stopped record.
  mkdirSync(join(outside, 'h4'));
  writeFileSync(join(outside, 'h4', 'state.json'), record('h4'));
  symlinkSync(join(outside, 'h4'), join(root, 'h4'));
  const d4 = await oci(root, 'delete', 'h4');
  t.equal(d4.code, 1);
  t.match(d4.err, /state directory \S+h4 is not a directory \(a symbolic link or a file\): refusing it/);
  t.same(readdirSync(join(outside, 'h4')), ['state.json'], "the link target's content is untouched");
  t.equal(
    readFileSync(`/proc/${s.pid}/stat`, 'utf8').split(') ')[1]![0],
    'S',
    'the process a record named was not signalled',
  );
});

t.test("a stopped container's directory is removed whole by delete; poststop hooks run for its owner", async (t) => {
  const root = scratch(t);
  const out = scratch(t);
  mkdirSync(join(root, 'p1'));
  const hook = { path: '/bin/sh', args: ['sh', '-c', `cat > ${out}/poststop.json`] };
  writeFileSync(join(root, 'p1', 'state.json'), record('p1', { hooks: { poststop: [hook] } }));
  const st = await oci(root, 'state', 'p1');
  t.equal(st.code, 0, st.err);
  t.equal(JSON.parse(st.out).status, 'stopped', 'a record whose processes are gone is stopped');
  const d = await oci(root, 'delete', 'p1');
  t.equal(d.code, 0, d.err);
  t.same(readdirSync(root), [], 'nothing is left in --root');
  const got = JSON.parse(readFileSync(join(out, 'poststop.json'), 'utf8'));
  t.equal(got.id, 'p1');
  t.equal(got.status, 'stopped', 'the hook got the state JSON on stdin');
});

t.test("root does not run the hooks a user's state names, nor signal a process that is not the user's", async (t) => {
  if (!isRoot) {
    t.comment(
      "another user's state needs root to reach it: the root pass checks this (the owner's own hooks run: see above)",
    );
    t.pass('unprivileged: covered by the owner test above');
    return;
  }
  const uidOf = (flag: string) => Number(execFileSync('id', [flag, TEST_USER], { encoding: 'utf8' }).trim());
  const [tu, tg] = [uidOf('-u'), uidOf('-g')];
  const root = scratch(t);
  const out = scratch(t);
  const canary = join(out, 'root-ran-a-user-hook');
  mkdirSync(join(root, 'u1'), { mode: 0o700 });
  const hook = { path: '/bin/sh', args: ['sh', '-c', `touch ${canary}`] };
  writeFileSync(join(root, 'u1', 'state.json'), record('u1', { hooks: { poststop: [hook], poststart: [hook] } }));
  chownSync(join(root, 'u1', 'state.json'), tu, tg);
  chownSync(join(root, 'u1'), tu, tg);
  const d = await oci(root, 'delete', 'u1');
  t.equal(d.code, 0, d.err);
  t.match(
    d.err,
    /level=warning msg="not running the poststop hooks of container u1: its state belongs to uid \d+, and this is uid 0"/,
  );
  t.notOk(existsSync(canary), "the user's hook did not run as root");
  t.same(readdirSync(root), [], 'the state is gone all the same');

  // A user's record naming root's process: not signalled.
  const s = await sleeper(t);
  mkdirSync(join(root, 'u2'), { mode: 0o700 });
  writeFileSync(join(root, 'u2', 'state.json'), record('u2', { pid: s.pid, pidStart: s.start, started: true }));
  chownSync(join(root, 'u2', 'state.json'), tu, tg);
  chownSync(join(root, 'u2'), tu, tg);
  const k = await oci(root, 'kill', 'u2', 'KILL');
  t.equal(k.code, 1);
  t.match(k.err, new RegExp(`pid ${s.pid} does not belong to uid ${tu}`));
  const f = await oci(root, 'delete', '--force', 'u2');
  t.equal(f.code, 1, 'delete --force refuses too');
  t.equal(readFileSync(`/proc/${s.pid}/stat`, 'utf8').split(') ')[1]![0], 'S', 'the root process still sleeps');
  // A state.json of another owner than its directory's: refused.
  mkdirSync(join(root, 'u3'), { mode: 0o700 });
  writeFileSync(join(root, 'u3', 'state.json'), record('u3'));
  chownSync(join(root, 'u3'), tu, tg);
  const s3 = await oci(root, 'state', 'u3');
  t.equal(s3.code, 1);
  t.match(s3.err, /state file \S+ belongs to uid 0, not to the directory's owner/);
});

t.test('verbs on one id at once: one create claims it, concurrent deletes leave nothing and all succeed', async (t) => {
  const root = scratch(t);
  const bundle = scratch(t);
  writeFileSync(join(bundle, 'config.json'), '{ not json');
  // Every create fails on the bundle, but only after the claim check: none may leave a directory behind.
  const bad = await Promise.all([1, 2, 3].map(() => oci(root, 'create', '--bundle', bundle, 'c')));
  t.ok(
    bad.every((r) => r.code === 1),
    'a broken config.json fails every create',
  );
  t.same(readdirSync(root), [], 'and leaves nothing');
  // Stopped containers deleted by three verbs at once.
  for (const id of ['d1', 'd2']) {
    mkdirSync(join(root, id));
    writeFileSync(join(root, id, 'state.json'), record(id));
  }
  const dels = await Promise.all([
    oci(root, 'delete', '--force', 'd1'),
    oci(root, 'delete', '--force', 'd1'),
    oci(root, 'delete', '--force', 'd1'),
    oci(root, 'delete', 'd2'),
    oci(root, 'state', 'd2'),
  ]);
  t.same(
    dels.slice(0, 4).map((r) => r.code),
    [0, 0, 0, 0],
    dels.map((r) => r.err).join(''),
  );
  t.ok(dels[4]!.code === 0 || /container does not exist: d2/.test(dels[4]!.err), 'state sees it whole or not at all');
  t.same(readdirSync(root), [], 'nothing left');
});
