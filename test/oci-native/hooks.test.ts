// SpawnOptions.beforePivot: the launch pauses before pivot_root, with every
// namespace made and every mount in place, while the caller runs its hooks
// (runtime-spec's prestart, createRuntime, createContainer). A
// createContainer-style hook is run as an exec into the paused container
// ({joinPid}): in its namespaces, with its mount namespace's root still the
// host's, so the hook's path and the bundle's rootfs are as on the host.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { run, spawn } from '../../lib/index.js';
import { openFds, scratch, spec, testRootfs, zombieChildren } from '../helpers/env.js';
import { nsInode, tagged } from './helpers.js';

t.test('beforePivot: hooks run with the namespaces and mounts made, before the payload', async (t) => {
  const st = scratch(t);
  const tag = `hooks-${randomBytes(4).toString('hex')}`;
  await run(spec(['/bin/true']), { stdio: 'ignore' });
  const fds = openFds();
  const rootfs = testRootfs();
  const s = spec(['/bin/sh', '-c', 'cat /st/hook; echo payload > /st/payload', tag], {
    network: 'none',
    hostname: 'hooked',
  });
  s.mounts!.push({ destination: '/st', source: st, type: 'bind', options: ['rbind'] });
  const seen: Record<string, unknown> = {};
  const c = spawn(s, {
    stdio: ['ignore', 'pipe', 'pipe'],
    beforePivot: async (pid) => {
      // createRuntime: on the host, the container's namespaces exist.
      seen.net = nsInode(pid, 'net');
      seen.payloadRan = existsSync(join(st, 'payload'));
      seen.mounts = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
      // createContainer: in the container's namespaces, before pivot_root:
      // the rootfs path is where the container's mounts are.
      const hook = spec(['/bin/sh', '-c', `echo "hook in $(hostname)" > ${rootfs}/st/hook`]);
      const r = await run(hook, { stdio: ['ignore', 'ignore', 'pipe'], joinPid: pid });
      seen.hookExit = r.exitCode;
      seen.hookErr = r.stderr!.toString();
    },
  });
  let out = '';
  c.stdout!.on('data', (d) => (out += d));
  await c.spawned;
  const r = await c.exited;
  t.equal(r.exitCode, 0);
  t.not(seen.net, nsInode('self', 'net'), "the hook saw the container's own network namespace");
  t.equal(seen.payloadRan, false, 'the payload had not run');
  t.match(seen.mounts as string, ` ${rootfs}/st `, "the container's mounts were in place (at the rootfs path)");
  t.equal(seen.hookExit, 0, seen.hookErr as string);
  t.equal(
    out,
    'hook in hooked\n',
    'the createContainer hook ran in the container (its uts, its mounts) before the payload',
  );
  t.equal(readFileSync(join(st, 'payload'), 'utf8'), 'payload\n');
  await new Promise((res) => (c.stdout!.closed ? res(null) : c.stdout!.once('close', res)));
  await new Promise((res) => (c.stderr!.closed ? res(null) : c.stderr!.once('close', res)));
  t.same(openFds(), fds, 'no fd leaked');
  t.same(zombieChildren(), []);
  t.same(tagged(tag), []);
});

t.test('beforePivot: a failing hook ends the container before the payload, with its error', async (t) => {
  const st = scratch(t);
  const tag = `hooks-fail-${randomBytes(4).toString('hex')}`;
  await run(spec(['/bin/true']), { stdio: 'ignore' });
  const fds = openFds();
  const s = spec(['/bin/sh', '-c', 'echo ran > /st/payload', tag]);
  s.mounts!.push({ destination: '/st', source: st, type: 'bind', options: ['rbind'] });
  let hookPid = 0;
  const c = spawn(s, {
    stdio: 'ignore',
    beforePivot: async (pid) => {
      hookPid = pid;
      throw new Error('createRuntime hook /usr/bin/fail exited 1');
    },
  });
  await t.rejects(c.spawned, { message: 'createRuntime hook /usr/bin/fail exited 1' });
  await t.rejects(c.exited, { message: /exited 1/ });
  t.ok(hookPid > 0);
  t.notOk(existsSync(`/proc/${hookPid}`), 'the paused container is gone');
  t.notOk(existsSync(join(st, 'payload')), 'the payload never ran');
  t.same(openFds(), fds, 'no fd leaked');
  t.same(zombieChildren(), []);
  t.same(tagged(tag), []);
});
