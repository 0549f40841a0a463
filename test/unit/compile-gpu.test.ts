// Stage "gpu" (lib/singularity/compile/gpu.ts): --nv/--rocm as mounts, missing files as warnings.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { planGpuMounts } from '../../lib/singularity/compile/gpu.js';
import { scratch } from '../helpers/env.js';

t.test('nothing asked: nothing bound, nothing said', async (t) => {
  t.same(planGpuMounts({}, {}), { mounts: [], warnings: [] });
});

t.test('listed absolute files bound read-only; no libraries found is a warning, not a failure', async (t) => {
  const d = scratch(t);
  writeFileSync(join(d, 'nvidia-smi.conf'), '');
  const list = join(d, 'list.conf');
  writeFileSync(list, `# comment\n${join(d, 'nvidia-smi.conf')}\n${join(d, 'absent')}\n`);
  const p = planGpuMounts({ nv: true }, { NODULARITY_NVLIBLIST: list, PATH: '' });
  const files = p.mounts.filter((m) => m.source === join(d, 'nvidia-smi.conf'));
  t.same(files, [
    {
      destination: join(d, 'nvidia-smi.conf'),
      source: join(d, 'nvidia-smi.conf'),
      type: 'bind',
      options: ['rbind', 'rslave', 'ro'],
    },
  ]);
  t.ok(
    p.mounts.every((m) => m.options!.includes('ro') || m.options!.includes('bind')),
    'devices bind, files ro',
  );
  t.same(p.warnings, ['Could not find any nv libraries on this host!']);
  t.throws(() => planGpuMounts({ rocm: true }, { NODULARITY_ROCMLIBLIST: join(d, 'gone') }), {
    name: 'SpecError',
    option: '--rocm',
    message: /cannot read the library list/,
  });
});
