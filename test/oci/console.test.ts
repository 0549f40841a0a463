// What conmon and containerd's shim see of nodularity-oci: `create` run under
// a child subreaper (as they are) exits while the container's init is
// reparented to that subreaper, which reaps it after the payload ends; with
// process.terminal and --console-socket the pty master comes over the socket
// (runc's protocol), received on the host by the test payload's `recvtty`;
// --preserve-fds passes the client's fds; --pid-file names the init.
import t from 'tap';
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { payloadBinary, scratch, type Tap } from '../helpers/env.js';
import { lineReader } from '../oci-native/helpers.js';
import { cleanEnv, makeBundle, OCI_BIN, oci } from './helpers.js';

async function recvtty(t: Tap, dir: string) {
  const sock = join(dir, 'console.sock');
  const child = spawn(payloadBinary, ['recvtty', sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => child.kill('SIGKILL'));
  const r = lineReader(child);
  await r.waitLine(/^listening$/, 'recvtty to listen');
  return { sock, ...r };
}

t.test('create under a subreaper with --console-socket: the init is adopted, the payload gets the pty', async (t) => {
  const root = scratch(t);
  const dir = scratch(t);
  const tag = `oci-console-${randomBytes(4).toString('hex')}`;
  const bundle = makeBundle(join(dir, 'b'), [
    '/bin/sh',
    '-c',
    `echo tty=$(tty); [ -t 0 ] && [ -t 1 ] && echo all-tty; echo end-${tag}; exit 3`,
  ]);
  const cfg = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  cfg.process.terminal = true;
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(cfg));
  const rt = await recvtty(t, dir);
  const pidFile = join(dir, 'pid');
  // The subreaper runs `nodularity-oci create`, as conmon and the shim do, and reports what it reaps.
  const sub = spawn(
    payloadBinary,
    [
      'subreaper',
      OCI_BIN,
      '--root',
      root,
      'create',
      '--bundle',
      bundle,
      '--console-socket',
      rt.sock,
      '--pid-file',
      pidFile,
      'c1',
    ],
    { env: cleanEnv, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.teardown(() => sub.kill('SIGKILL'));
  const subr = lineReader(sub);
  const launcher = await subr.waitLine(/^launcher-exited (\d+)$/, 'create to exit');
  t.equal(launcher[1], '0', 'create exited 0 (wait status)');
  const pid = Number(readFileSync(pidFile, 'utf8'));
  const st = await oci(root, 'state', 'c1');
  t.equal(JSON.parse(st.out).status, 'created');
  t.equal(JSON.parse(st.out).pid, pid, 'the pid file names the init');
  const ppid = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
  t.equal(ppid, sub.pid, "the init's parent is now the subreaper");
  const name = (await rt.waitLine(/^name (.*)$/, 'the pty master'))[1];
  t.match(name, /^\/dev\/pts\/\d+$/, "the master came over the socket with the slave's name");
  t.ok(rt.lines.includes('master chr=1 tty=1'));
  t.equal((await oci(root, 'start', 'c1')).code, 0);
  await rt.waitLine(new RegExp(`^end-${tag}`), 'the payload to finish');
  t.ok(rt.lines.includes(`tty=${name}`), `the payload's terminal is that pty (${name})`);
  t.ok(rt.lines.includes('all-tty'));
  const reaped = await subr.waitLine(new RegExp(`^reaped ${pid} (\\d+)$`), 'the subreaper to reap the init');
  t.equal(Number(reaped[1]) >> 8, 3, "the init's wait status carries the payload's exit 3");
  const s2 = await oci(root, 'state', 'c1');
  t.equal(JSON.parse(s2.out).status, 'stopped');
  t.equal((await oci(root, 'delete', 'c1')).code, 0);
  t.same(readdirSync(root), []);
});

t.test(
  '--console-socket without process.terminal, or a terminal without a socket, is refused before anything runs',
  async (t) => {
    const root = scratch(t);
    const dir = scratch(t);
    const bundle = makeBundle(join(dir, 'b'), ['/bin/true']);
    const rt = await recvtty(t, dir);
    const r = await oci(root, 'create', '--bundle', bundle, '--console-socket', rt.sock, 'x');
    t.equal(r.code, 1);
    t.match(r.err, /--console-socket is given but process.terminal is false/);
    const cfg = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
    cfg.process.terminal = true;
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(cfg));
    const r2 = await oci(root, 'create', '--bundle', bundle, 'x');
    t.equal(r2.code, 1);
    t.match(r2.err, /process.terminal is true in config.json: pass --console-socket/);
    const r3 = await oci(root, 'create', '--bundle', bundle, '--console-socket', join(dir, 'nope.sock'), 'x');
    t.equal(r3.code, 1);
    t.match(r3.err, /--console-socket: console socket \S+nope.sock: cannot connect \(ENOENT\)/);
    t.same(readdirSync(root), [], 'nothing left');
  },
);

t.test("--preserve-fds N: the client's fds 3.. reach the payload", async (t) => {
  const root = scratch(t);
  const dir = scratch(t);
  const bundle = makeBundle(join(dir, 'b'), [
    '/bin/sh',
    '-c',
    'echo via-fd3 >&3; echo fds=$(ls /proc/self/fd | tr "\\n" " ")',
  ]);
  const extra = join(dir, 'extra');
  const out = join(dir, 'out');
  const efd = openSync(extra, 'w');
  const ofd = openSync(out, 'w');
  const p = spawn(OCI_BIN, ['--root', root, 'run', '--preserve-fds', '1', '--bundle', bundle, 'p1'], {
    env: cleanEnv,
    stdio: ['ignore', ofd, 'inherit', efd],
  });
  const code = await new Promise((r) => p.once('exit', r));
  closeSync(efd);
  closeSync(ofd);
  t.equal(code, 0);
  t.equal(readFileSync(extra, 'utf8'), 'via-fd3\n', 'fd 3 is the file the client gave');
  t.match(readFileSync(out, 'utf8'), /^fds=0 1 2 3 4$/m, "and no other fd of ours (4 is ls's directory)");
  t.same(readdirSync(root), []);
});
