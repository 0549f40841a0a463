// The create/start split (SpawnOptions.startGate) and containers that outlive
// the process that created them (detached), as runc's create/start and a
// subreaper (conmon, containerd's shim) use them.
import t from 'tap';
import { execFileSync, spawn as spawnNode } from 'node:child_process';
import { closeSync, constants as fsc, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { run, spawn, type Spec } from '../../lib/index.js';
import { openFds, payloadBinary, repoRoot, scratch, spec, testRootfs, zombieChildren } from '../helpers/env.js';
import { children, fifoGate, lineReader, sleep, startGate, tagged } from './helpers.js';

/** A spec whose payload writes `ran` to /st/marker (the scratch dir st, bound), tagged for the process check. */
function markerSpec(st: string, tag: string, extra = ''): Spec {
  const s = spec(['/bin/sh', '-c', `echo ran > /st/marker; echo out-${tag}; ${extra}`, tag]);
  s.mounts!.push({ destination: '/st', source: st, type: 'bind', options: ['rbind'] });
  return s;
}

t.test('startGate: set up, waiting at the gate, and the payload runs only once a byte comes', async (t) => {
  const st = scratch(t);
  const tag = `gate-${randomBytes(4).toString('hex')}`;
  await run(spec(['/bin/true']), { stdio: 'ignore' }); // loads the addon (its init memfd and pidfd stay open)
  const fds = openFds();
  const gate = fifoGate(st);
  const c = spawn(markerSpec(st, tag), { stdio: ['ignore', 'pipe', 'inherit'], startGate: gate.fd });
  let out = '';
  c.stdout!.on('data', (d) => (out += d));
  await c.spawned;
  t.ok(c.pid! > 0, 'spawned resolves with the init pid');
  t.match(readFileSync(`/proc/${c.pid}/cmdline`, 'utf8'), /^nodularity-init\0/, 'the pid is the init');
  t.same(children(c.pid!), [], 'the init has forked nothing yet');
  await sleep(300);
  t.notOk(existsSync(join(st, 'marker')), 'the payload has not run');
  t.same(tagged(tag).length, 1, 'only the init carries the tag (in its argv)');
  // The container holds its own copy: closing ours (as `create` exiting does) changes nothing.
  closeSync(gate.fd);
  startGate(gate.path);
  const r = await c.exited;
  t.equal(r.exitCode, 0);
  t.equal(r.initDied, false, 'the init reported the status');
  t.equal(readFileSync(join(st, 'marker'), 'utf8'), 'ran\n', 'the payload ran after the byte');
  await new Promise((res) => (c.stdout!.readableEnded ? res(null) : c.stdout!.once('close', res)));
  t.equal(out, `out-${tag}\n`, "the payload's stdout is the one given at create");
  t.same(openFds(), fds, 'no fd leaked in the launcher');
  t.same(zombieChildren(), []);
  t.same(tagged(tag), [], 'nothing of the container is left');
});

t.test('startGate: EOF on the gate ends the container (127) without running the payload', async (t) => {
  const st = scratch(t);
  const tag = `gate-eof-${randomBytes(4).toString('hex')}`;
  const path = join(st, 'gate.fifo');
  execFileSync('mkfifo', ['-m', '0600', path]);
  // A reader and a writer: the writer's close is the reader's EOF.
  const rd = openSync(path, fsc.O_RDONLY | fsc.O_NONBLOCK);
  const wr = openSync(path, fsc.O_WRONLY);
  const c = spawn(markerSpec(st, tag), { stdio: 'ignore', startGate: rd });
  await c.spawned;
  closeSync(rd);
  closeSync(wr);
  const r = await c.exited;
  t.equal(r.exitCode, 127, 'exit 127');
  t.notOk(existsSync(join(st, 'marker')), 'the payload never ran');
  t.same(tagged(tag), []);
});

t.test('startGate: SIGTERM to a created container ends it as SIGTERM would', async (t) => {
  const st = scratch(t);
  const tag = `gate-term-${randomBytes(4).toString('hex')}`;
  const gate = fifoGate(st);
  t.teardown(() => closeSync(gate.fd));
  const c = spawn(markerSpec(st, tag), { stdio: 'ignore', startGate: gate.fd });
  await c.spawned;
  t.ok(c.kill('SIGTERM'));
  const r = await c.exited;
  t.equal(r.signal, 'SIGTERM');
  t.equal(r.exitCode, 128 + 15);
  t.notOk(existsSync(join(st, 'marker')), 'the payload never ran');
  t.same(tagged(tag), []);
});

t.test('startGate without the init is refused before anything is made', async (t) => {
  const st = scratch(t);
  const gate = fifoGate(st);
  t.teardown(() => closeSync(gate.fd));
  t.throws(() => spawn(spec(['/bin/true']), { startGate: gate.fd, init: false }), {
    name: 'SpecError',
    message: /init.*startGate needs the init/,
  });
  t.throws(() => spawn(spec(['/bin/true']), { startGate: 9999 }), {
    message: /startGate must be an open file descriptor/,
  });
});

t.test('detached + startGate: the container outlives the node process that created it', async (t) => {
  // The launcher is a node process run under a child subreaper (the test
  // payload's `subreaper` verb: prctl(PR_SET_CHILD_SUBREAPER), as conmon and
  // containerd's shim are), so when the launcher exits the container's init
  // is reparented to the subreaper, not to the host's PID 1, and the
  // subreaper reaps it: the test sees both. The launcher must exit by itself
  // (nothing of the container keeps its event loop alive).
  const st = scratch(t);
  const tag = `detached-${randomBytes(4).toString('hex')}`;
  const fifo = join(st, 'exec.fifo');
  execFileSync('mkfifo', ['-m', '0600', fifo]);
  const log = join(st, 'log');
  const script = `
    import { openSync, constants as c } from 'node:fs';
    import { spawn, createSpec } from ${JSON.stringify(repoRoot + '/lib/index.ts')};
    const s = createSpec({ rootfs: ${JSON.stringify(testRootfs())},
      args: ['/bin/sh', '-c', 'echo ran > /st/marker; echo out-${tag}', '${tag}'] });
    s.mounts.push({ destination: '/st', source: ${JSON.stringify(st)}, type: 'bind', options: ['rbind'] });
    const gate = openSync(${JSON.stringify(fifo)}, c.O_RDWR | c.O_CLOEXEC);
    const out = openSync(${JSON.stringify(log)}, c.O_WRONLY | c.O_CREAT | c.O_CLOEXEC, 0o600);
    const ct = spawn(s, { stdio: ['ignore', out, out], startGate: gate, detached: true });
    await ct.spawned;
    console.log('container', ct.pid);
  `;
  const reaper = spawnNode(
    payloadBinary,
    ['subreaper', process.execPath, ...process.execArgv, '--input-type=module', '-e', script],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const { waitLine } = lineReader(reaper);
  t.teardown(() => {
    for (const p of tagged(tag)) process.kill(p, 'SIGKILL');
    reaper.kill('SIGKILL');
  });
  const reaperPid = Number((await waitLine(/^subreaper (\d+)$/, 'the subreaper'))[1]);
  const pid = Number((await waitLine(/^container (\d+)$/, 'the container pid'))[1]);
  t.equal(
    (await waitLine(/^launcher-exited (\d+)$/, 'the launcher to exit'))[1],
    '0',
    'the launcher exited by itself, 0',
  );
  const ppid = Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/^PPid:\s+(\d+)$/m)![1]);
  t.equal(ppid, reaperPid, "the init was reparented to the launcher's subreaper");
  t.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /^nodularity-init\0/);
  await sleep(200);
  t.notOk(existsSync(join(st, 'marker')), 'still created: the payload has not run');
  startGate(fifo);
  const reaped = await waitLine(new RegExp(`^reaped ${pid} (\\d+)$`), 'the subreaper to reap the init');
  t.equal(reaped[1], '0', 'the init exited 0 (the payload did)');
  t.equal(readFileSync(join(st, 'marker'), 'utf8'), 'ran\n', 'the payload ran after the start byte');
  t.equal(readFileSync(log, 'utf8'), `out-${tag}\n`, 'its stdout is the fd create was given');
  await waitLine(/^done$/, 'the subreaper to finish');
  t.same(tagged(tag), [], 'nothing of the container is left');
});
