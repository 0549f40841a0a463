// preserveFds (runc's --preserve-fds N): the caller's fds 3 .. 3+N-1 stay open
// in the payload at the same numbers, and nothing above them does. The
// launcher is a node process given two extra fds (3 and 4) by this test, as a
// client gives them to `runc create --preserve-fds 2`; Node's own fds lie above.
import t from 'tap';
import { spawn as spawnNode } from 'node:child_process';
import { closeSync, constants as fsc, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { repoRoot, scratch, testRootfs } from '../helpers/env.js';
import { tagged } from './helpers.js';

async function launch(dir: string, tag: string, preserveFds: number | undefined) {
  const script = `
    import { run, createSpec } from ${JSON.stringify(repoRoot + '/lib/index.ts')};
    const s = createSpec({ rootfs: ${JSON.stringify(testRootfs())},
      args: ['/bin/sh', '-c', '/payload fds; echo via3 >&3; echo via4 >&4; true', '${tag}'] });
    const r = await run(s, { stdio: ['ignore', 'pipe', 'pipe'], preserveFds: ${preserveFds} });
    console.log(JSON.stringify({ code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() }));
  `;
  const f3 = openSync(join(dir, `fd3-${preserveFds}`), fsc.O_WRONLY | fsc.O_CREAT, 0o600);
  const f4 = openSync(join(dir, `fd4-${preserveFds}`), fsc.O_WRONLY | fsc.O_CREAT, 0o600);
  const child = spawnNode(process.execPath, [...process.execArgv, '--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit', f3, f4],
  });
  closeSync(f3);
  closeSync(f4);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  const code = await new Promise((res) => child.once('close', res));
  if (code !== 0) throw new Error(`launcher exited ${code}: ${out}`);
  return {
    ...(JSON.parse(out) as { code: number; out: string; err: string }),
    fd3: readFileSync(join(dir, `fd3-${preserveFds}`), 'utf8'),
    fd4: readFileSync(join(dir, `fd4-${preserveFds}`), 'utf8'),
  };
}

t.test("preserveFds: 2 keeps the caller's fds 3 and 4, and only those", async (t) => {
  const dir = scratch(t);
  const tag = `preserve-${randomBytes(4).toString('hex')}`;
  const r = await launch(dir, tag, 2);
  t.equal(r.code, 0, r.err);
  t.match(r.out, /^fds: 0 1 2 3 4\n/, "the payload holds 0-2 and the two preserved fds, none of Node's");
  t.equal(r.fd3, 'via3\n', "fd 3 in the container is the caller's fd 3");
  t.equal(r.fd4, 'via4\n', "fd 4 in the container is the caller's fd 4");
  t.same(tagged(tag), []);
});

t.test('without preserveFds, the same fds are closed in the payload', async (t) => {
  const dir = scratch(t);
  const tag = `preserve-none-${randomBytes(4).toString('hex')}`;
  const r = await launch(dir, tag, undefined);
  t.match(r.out, /^fds: 0 1 2\n/);
  t.match(r.err, /Bad file descriptor/, 'writing to fd 3 fails inside');
  t.equal(r.fd3, '');
  t.equal(r.fd4, '');
});

t.test('preserveFds naming an fd that is not open is refused', async (t) => {
  const { spawn } = await import('../../lib/index.js');
  const { spec } = await import('../helpers/env.js');
  t.throws(() => spawn(spec(['/bin/true']), { preserveFds: 4000 }), { message: /preserveFds: fd \d+ is not open/ });
});
