// Network: the host's by default (as Apptainer), or a new one with only lo.
import t from 'tap';
import { readdirSync } from 'node:fs';
import { spec } from '../helpers/env.js';
import { capture } from '../helpers/run.js';

t.test('a new network namespace has only lo, and it is up', async (t) => {
  const r = await capture(
    spec(['/bin/sh', '-c', 'ls /sys/class/net; cat /proc/net/dev | tail -n +3 | cut -d: -f1; ip -o link show lo'], {
      network: 'none',
    }),
  );
  t.equal(r.exitCode, 0, r.err);
  const lines = r.out
    .trim()
    .split('\n')
    .map((l) => l.trim());
  t.equal(lines[0], 'lo', '/sys/class/net has only lo');
  t.equal(lines[1], 'lo', '/proc/net/dev has only lo');
  t.match(lines[2], /<LOOPBACK,UP,LOWER_UP>/);
  t.equal(lines.length, 3);
});

t.test('the host network by default', async (t) => {
  const host = readdirSync('/sys/class/net').sort();
  const r = await capture(spec(['/bin/sh', '-c', 'ls /sys/class/net']));
  t.same(r.out.trim().split(/\s+/).sort(), host);
});
