// Stage "process" (lib/plan/process.ts): the executable through the layers, rlimits, capabilities.
import t from 'tap';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSpec } from '../../lib/index.js';
import { PlanBuilder } from '../../lib/plan/mounts.js';
import { planProcess } from '../../lib/plan/process.js';
import { scratch, type Tap } from '../helpers/env.js';

function image(t: Tap): string {
  const r = scratch(t);
  mkdirSync(join(r, 'bin'));
  writeFileSync(join(r, 'bin/tool'), '#!/bin/sh\n');
  chmodSync(join(r, 'bin/tool'), 0o755);
  writeFileSync(join(r, 'bin/data'), '');
  return r;
}

t.test('PATH search as execvp, with ENOENT/EACCES codes for the CLI', async (t) => {
  const r = image(t);
  const run = (args: string[]) =>
    planProcess(createSpec({ rootfs: r, args, env: ['PATH=/usr/bin:/bin'] }), new PlanBuilder(r), '/', 40);
  t.equal(run(['tool']).execPath, '/bin/tool');
  t.throws(() => run(['data']), { name: 'SpecError', pointer: '/process/args/0', code: 'EACCES' });
  t.throws(() => run(['nope']), {
    name: 'SpecError',
    pointer: '/process/args/0',
    code: 'ENOENT',
    message: /searched PATH=\/usr\/bin:\/bin/,
  });
});

t.test('rlimits and capabilities as numbers, checked', async (t) => {
  const r = image(t);
  const s = createSpec({ rootfs: r, args: ['/bin/tool'] });
  s.process!.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 10, hard: 20 }];
  s.process!.capabilities = {
    bounding: ['CAP_CHOWN', 'NET_RAW', 'CAP_BPF'],
    permitted: ['CAP_CHOWN'],
    effective: ['CAP_CHOWN'],
  };
  const p = planProcess(s, new PlanBuilder(r), '/', 38);
  t.same(p.rlimits, [{ resource: 7, soft: 10, hard: 20 }]);
  t.equal(p.capBounding, (1n << 0n) | (1n << 13n), "CAP_BPF (39) is above this kernel's last cap: left out");
  t.equal(p.capEffective, 1n);
  s.process!.capabilities = { effective: ['CAP_KILL'] };
  t.throws(() => planProcess(s, new PlanBuilder(r), '/', 38), {
    name: 'SpecError',
    pointer: '/process/capabilities/effective',
  });
  s.process!.capabilities = {};
  s.process!.rlimits = [{ type: 'RLIMIT_FLY', soft: 1, hard: 1 }];
  t.throws(() => planProcess(s, new PlanBuilder(r), '/', 38), {
    name: 'SpecError',
    pointer: '/process/rlimits/0/type',
  });
});
