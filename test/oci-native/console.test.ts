// process.terminal with a console socket (SpawnOptions.consoleSocket): the
// pty made in the container's devpts, its master sent over the caller's unix
// socket with SCM_RIGHTS (runc's --console-socket protocol), received on the
// host by the test payload's `recvtty` verb as conmon or containerd's shim would.
import t from 'tap';
import { spawn as spawnNode } from 'node:child_process';
import { closeSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openConsoleSocket, run, spawn } from '../../lib/index.js';
import { openFds, payloadBinary, scratch, spec, zombieChildren, type Tap } from '../helpers/env.js';
import { fifoGate, lineReader, sleep, startGate, tagged } from './helpers.js';

// What the payload checks from inside: its tty's name, that 0, 1 and 2 are
// terminals, that it has a controlling terminal (field 7 of stat, tty_nr, not 0),
// and which fds it holds (ls's own directory fd is the 4th).
const inside = (tag: string) => [
  '/bin/sh',
  '-c',
  `echo tty=$(tty); [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-tty; echo ctty=$(cut -d' ' -f7 /proc/self/stat); echo fds=$(ls /proc/self/fd | tr '\\n' ' '); echo end-${tag}`,
  tag,
];

async function recvtty(t: Tap, dir: string) {
  const sock = join(dir, 'console.sock');
  const child = spawnNode(payloadBinary, ['recvtty', sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => child.kill('SIGKILL'));
  const r = lineReader(child);
  await r.waitLine(/^listening$/, 'recvtty to listen');
  const exited = new Promise((res) => child.once('close', res)); // exited, reaped and its pipes closed
  return { sock, ...r, exited };
}

t.test("consoleSocket: the master goes to the caller, the slave is the payload's terminal", async (t) => {
  const dir = scratch(t);
  const tag = `console-${randomBytes(4).toString('hex')}`;
  await run(spec(['/bin/true']), { stdio: 'ignore' }); // the addon's own fds first
  const fds = openFds();
  const rt = await recvtty(t, dir);
  const fd = openConsoleSocket(rt.sock);
  const s = spec(inside(tag));
  s.process!.terminal = true;
  const c = spawn(s, { consoleSocket: fd });
  await c.spawned;
  closeSync(fd);
  t.equal(c.terminal, null, 'no terminal stream in the launcher: the master went over the socket');
  const r = await c.exited;
  t.equal(r.exitCode, 0);
  await rt.waitLine(/^eof$/, 'the relay to end');
  const name = (await rt.waitLine(/^name (.*)$/, 'the name'))[1];
  t.match(name, /^\/dev\/pts\/\d+$/, 'the data beside the fd names the pty, as runc sends it');
  t.ok(rt.lines.includes('master chr=1 tty=1'), 'a terminal master arrived');
  t.ok(rt.lines.includes(`tty=${name}`), `the payload's tty is that pty, in its own devpts (${name})`);
  t.ok(rt.lines.includes('all-tty'), 'stdin, stdout and stderr are the terminal');
  const ctty = rt.lines.find((l) => l.startsWith('ctty='));
  t.ok(ctty && ctty !== 'ctty=0', `it is the controlling terminal (${ctty})`);
  t.ok(
    rt.lines.includes('fds=0 1 2 3'),
    `the console socket is not left open in the payload: ${rt.lines.find((l) => l.startsWith('fds='))}`,
  );
  t.ok(rt.lines.includes(`end-${tag}`));
  await rt.exited;
  t.same(openFds(), fds, 'no fd leaked in the launcher');
  t.same(zombieChildren(), []);
  t.same(tagged(tag), []);
});

t.test('consoleSocket with startGate: the master arrives at create, the output after start', async (t) => {
  const dir = scratch(t);
  const tag = `console-gate-${randomBytes(4).toString('hex')}`;
  const rt = await recvtty(t, dir);
  const gate = fifoGate(dir);
  const fd = openConsoleSocket(rt.sock);
  const s = spec(inside(tag));
  s.process!.terminal = true;
  const c = spawn(s, { consoleSocket: fd, startGate: gate.fd });
  await c.spawned;
  closeSync(fd);
  closeSync(gate.fd);
  await rt.waitLine(/^master chr=1 tty=1$/, 'the master, before start');
  await sleep(200);
  t.notOk(
    rt.lines.some((l) => l.startsWith('tty=')),
    'nothing ran before start',
  );
  startGate(gate.path);
  t.equal((await c.exited).exitCode, 0);
  await rt.waitLine(new RegExp(`^end-${tag}$`), 'the payload output');
  t.ok(rt.lines.includes('all-tty'));
});

t.test('consoleSocket needs process.terminal; a path nobody listens on is named', async (t) => {
  const dir = scratch(t);
  t.throws(() => spawn(spec(['/bin/true']), { consoleSocket: 0 }), {
    name: 'SpecError',
    message: /consoleSocket.*needs process\.terminal/,
  });
  t.throws(() => openConsoleSocket(join(dir, 'nobody.sock')), { code: 'ENOENT', message: /nobody\.sock/ });
  t.notOk(existsSync(join(dir, 'nobody.sock')));
});
