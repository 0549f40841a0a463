// stdin/stdout/stderr: pipes, large output, closed stdin, fds.
import t from 'tap';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from '../../lib/index.js';
import { scratch, spec } from '../helpers/env.js';
import { capture } from '../helpers/run.js';

t.test('large output on stdout, stderr apart', async (t) => {
  const n = 8 * 1024 * 1024 + 123;
  const r = await capture(spec(['/payload', 'bigout', String(n)]));
  t.equal(r.exitCode, 0);
  t.equal(r.stdout!.length, n, 'every byte arrived');
  t.equal(r.stdout!.subarray(0, 5).toString(), 'abcde');
  t.equal(r.err, 'done\n');
});

t.test('stdin piped in, echoed back', async (t) => {
  const input = Buffer.alloc(3 * 1024 * 1024, 'xyz');
  const r = await capture(spec(['/payload', 'cat']), { input });
  t.equal(r.exitCode, 0);
  t.ok(r.stdout!.equals(input), 'round trip of 3 MiB');
  t.equal(r.err, `read ${input.length}\n`);
});

t.test('stdin closed (ignore) reads EOF at once', async (t) => {
  const r = await capture(spec(['/payload', 'cat']));
  t.equal(r.err, 'read 0\n');
});

t.test('a file descriptor as stdout', async (t) => {
  const d = scratch(t);
  const file = join(d, 'out.txt');
  const fd = openSync(file, 'w');
  const c = spawn(spec(['/bin/echo', 'to a file']), { stdio: ['ignore', fd, 'ignore'] });
  await c.exited;
  closeSync(fd);
  t.equal(readFileSync(file, 'utf8'), 'to a file\n');
});

t.test('only the requested stdio reaches the payload: no other fd is open', async (t) => {
  const r = await capture(spec(['/payload', 'fds']));
  t.equal(r.out, 'fds: 0 1 2\n');
  const r2 = await capture(spec(['/payload', 'fds']), { init: false });
  t.equal(r2.out, 'fds: 0 1 2\n', 'without init too');
});

t.test('close event after exit and drained streams', async (t) => {
  const c = spawn(spec(['/bin/sh', '-c', 'echo a; echo b >&2']));
  const events: string[] = [];
  c.on('spawn', () => events.push('spawn'));
  c.on('exit', () => events.push('exit'));
  const closed = new Promise<[number, string | null]>((res) => c.on('close', (code, sig) => res([code, sig])));
  c.stdout!.resume();
  c.stderr!.resume();
  t.same(await closed, [0, null]);
  t.same(events, ['spawn', 'exit']);
});
