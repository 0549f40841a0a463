// The library side of instances (issue 18): startInstance() from a Node
// process that then exits leaves an instance another process finds by name
// and joins; a joining process gets the instance's security, not what its
// own options would compile to; another user can neither list nor join my
// instances (store checked for owner, mode and links); 20 instances started
// and stopped leave no process, mount, record or fd behind.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { exec, getInstance, listInstances, startInstance } from '../../lib/singularity/index.js';
import { parseSecurityFlags } from '../../lib/seccomp/index.js';
import { isRoot, openFds, repoRoot, scratch, testRootfs } from '../helpers/env.js';
import { bare, requireBuiltCli, TEST_USER, testUser } from '../hostile/fixtures.js';
import { icli, mountsUnder, recorded, running, storeBase, userStore } from './helpers.js';

async function output(c: Awaited<ReturnType<typeof exec>>): Promise<{ out: string; code: number | null }> {
  let out = '';
  c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const r = await c.exited;
  await new Promise((res) => (c.stdout!.readableEnded ? res(null) : c.stdout!.once('close', res)));
  return { out, code: r.exitCode };
}

t.test('started by a Node process that exits, found and joined by another', async (t) => {
  const base = storeBase(t);
  const dir = scratch(t);
  const script = join(dir, 'start.mts');
  writeFileSync(
    script,
    [
      `import { startInstance } from ${JSON.stringify(join(repoRoot, 'lib', 'singularity', 'index.ts'))};`,
      `const i = await startInstance(${JSON.stringify(testRootfs())}, 'detached', { instanceDir: ${JSON.stringify(base)} });`,
      `process.stdout.write(String(i.pid));`,
    ].join('\n'),
  );
  const r = spawnSync(...bare([process.execPath, '--import=tsx', script]), { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, `the starting process exited by itself (stderr: ${r.stderr})`);
  const pid = Number(r.stdout);
  t.ok(running(pid), 'the instance outlived it');
  const i = await getInstance('detached', { instanceDir: base });
  t.equal(i?.pid, pid, 'found by name from another process');
  t.same(
    (await listInstances({ instanceDir: base })).map((x) => x.name),
    ['detached'],
  );
  const c = await i!.exec(['/bin/sh', '-c', 'echo $$; cat /proc/1/cmdline'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const o = await output(c);
  t.equal(o.code, 0);
  t.match(o.out, /nodularity-init/, 'joined: PID 1 is the instance init');
  t.ok(c.pid && c.image.rootfs === testRootfs(), 'the same ImageContainer handle as exec()');
  const s = await i!.stop();
  t.same(s, { name: 'detached', wasRunning: true, killed: false });
  t.notOk(running(pid));
  t.equal(await getInstance('detached', { instanceDir: base }), null);
});

t.test("a joining process gets the instance's security, not its own options'", async (t) => {
  const base = storeBase(t);
  // The instance: no seccomp filter; the exec asks for nothing (its own default would be nodularity's profile).
  const i = await startInstance(testRootfs(), 'sec', {
    instanceDir: base,
    security: parseSecurityFlags(['seccomp:unconfined']),
  });
  t.teardown(() => i.stop({ timeout: 0 }));
  const c = await exec(i, ['/bin/sh', '-c', 'grep -E "^(Seccomp|NoNewPrivs|CapEff):" /proc/self/status'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const o = await output(c);
  t.match(o.out, /^Seccomp:\s+0$/m, "the instance's (unconfined)");
  const plain = await exec(testRootfs(), ['/bin/sh', '-c', 'grep -E "^Seccomp:" /proc/self/status'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.match((await output(plain)).out, /^Seccomp:\s+2$/m, 'what the same exec options give outside an instance');
});

t.test("another user's store, or a store others may write, is refused", async (t) => {
  const base = storeBase(t);
  const i = await startInstance(testRootfs(), 'mine', { instanceDir: base });
  t.teardown(() => i.stop({ timeout: 0 }));
  const store = userStore(base);
  // group-writable directory: refused (someone else could plant a record)
  chmodSync(store, 0o770);
  await t.rejects(listInstances({ instanceDir: base }), /is writable by group or others/);
  chmodSync(store, 0o700);
  const state = join(store, 'mine', 'state.json');
  chmodSync(state, 0o666);
  await t.rejects(getInstance('mine', { instanceDir: base }), /state\.json is writable by group or others/);
  chmodSync(state, 0o600);
  // a record replaced by a link: not followed
  renameSync(state, `${state}.real`);
  symlinkSync(`${state}.real`, state);
  await t.rejects(getInstance('mine', { instanceDir: base }), /state\.json is a link: refused/);
  renameSync(`${state}.real`, state);
  t.equal((await getInstance('mine', { instanceDir: base }))?.pid, i.pid, 'the real record is fine');
  await t.rejects(startInstance(testRootfs(), 'a/b', { instanceDir: base }), /invalid instance name/);

  if (!isRoot) return; // the rest runs the CLI as the unprivileged test user against root's instance
  requireBuiltCli();
  const { uid, gid } = testUser();
  const as = (args: string[], env: Record<string, string>) => {
    const r = spawnSync(
      ...bare([
        'setpriv',
        `--reuid=${uid}`,
        `--regid=${gid}`,
        '--clear-groups',
        'env',
        `HOME=${base}`,
        ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
        join(repoRoot, 'bin', 'nodularity'),
        ...args,
      ]),
      { encoding: 'utf8', cwd: '/', timeout: 60_000 },
    );
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const list = as(['instance', 'list', '--user', 'root'], { NODULARITY_INSTANCE_DIR: base });
  t.equal(list.code, 255);
  t.match(list.err, /--user: only root may look at another user's instances/);
  const join1 = as(['exec', 'instance://mine', 'id'], { NODULARITY_INSTANCE_DIR: base });
  t.match(join1.err, /no instance mine is running|permission denied \(EACCES/, "not found from the test user's side");
  // The test user points its store at root's: a link is refused, root's directory is not its own.
  const theirs = join(base, 'evil');
  mkdirSync(join(theirs, hostname()), { recursive: true });
  symlinkSync(store, join(theirs, hostname(), TEST_USER));
  spawnSync('chown', ['-R', '-h', `${uid}:${gid}`, theirs]);
  const viaLink = as(['exec', 'instance://mine', 'id'], { NODULARITY_INSTANCE_DIR: theirs });
  t.equal(viaLink.code, 255);
  t.match(viaLink.err, /(is not a directory \(a link|EACCES|permission denied)/i);
  const listLink = as(['instance', 'list'], { NODULARITY_INSTANCE_DIR: theirs });
  t.match(listLink.err, /is not a directory \(a link/, 'list refuses the link too');
  // root lists the test user's (empty) store, and its own instance is untouched
  const rootList = icli(base, ['instance', 'list', '--user', TEST_USER, '--json']);
  t.equal(rootList.code, 0, rootList.err);
  t.same(JSON.parse(rootList.out), { instances: [] });
  t.ok(running(i.pid));
});

t.test('a name is claimed once: of concurrent starts under one name, one wins', async (t) => {
  const base = storeBase(t);
  const tries = await Promise.allSettled(
    Array.from({ length: 6 }, () => startInstance(testRootfs(), 'contested', { instanceDir: base })),
  );
  const won = tries.filter((x) => x.status === 'fulfilled');
  t.equal(won.length, 1, 'exactly one start succeeded');
  for (const x of tries)
    if (x.status === 'rejected') t.match((x.reason as Error).message, /an instance contested already exists/);
  const i = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof startInstance>>>).value;
  t.same(
    (await listInstances({ instanceDir: base })).map((x) => [x.name, x.pid]),
    [['contested', i.pid]],
  );
  await i.stop();
  t.same(recorded(base), []);
});

t.test('20 instances started and stopped leave nothing behind', async (t) => {
  const base = storeBase(t);
  const rootfs = testRootfs();
  // one start/stop first: the addon, the seccomp profile and the like are loaded once per process
  await (await startInstance(rootfs, 'warm', { instanceDir: base })).stop();
  const fds = openFds();
  const pids: number[] = [];
  const started = await Promise.all(
    Array.from({ length: 20 }, (_, k) => startInstance(rootfs, `many-${k}`, { instanceDir: base })),
  );
  for (const i of started) pids.push(i.pid);
  t.equal((await listInstances({ instanceDir: base })).length, 20, '20 listed');
  t.equal(new Set(pids).size, 20);
  const results = await Promise.all(started.map((i) => i.stop({ timeout: 5 })));
  t.ok(
    results.every((r) => r.wasRunning && !r.killed),
    'each stopped by SIGTERM',
  );
  t.same(
    pids.filter((p) => running(p)),
    [],
    'no init left',
  );
  t.same(recorded(base), [], 'no record left');
  t.same(mountsUnder(base), [], 'no mount names the store');
  t.same(mountsUnder(rootfs), [], 'no mount of the image on the host');
  t.same(openFds(), fds, 'no fd left open in this process');
});
