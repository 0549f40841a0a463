// Stage "env" (lib/singularity/compile/env.ts): environment layers 1-3 and the image's env scripts.
import t from 'tap';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { planBaseEnv, type EnvInput } from '../../lib/singularity/compile/env.js';
import { scratch } from '../helpers/env.js';

const base = (rootfs: string): EnvInput => ({
  image: { ref: 'img', rootfs, sandbox: false },
  mode: 'exec',
  hostEnv: { TERM: 'xterm', FOO: 'host', APPTAINERENV_X: 'y' },
  hostCwd: '/work',
  cleanenv: false,
  home: '/home/u',
  gpu: false,
  userBinds: [
    { source: '/a', readonly: false },
    { source: '/b', destination: '/c', readonly: true },
  ],
  noEval: false,
});

t.test('host layer, container PATH/HOME, what Apptainer tells the payload, the image config last', async (t) => {
  const r = scratch(t);
  const e = planBaseEnv({
    ...base(r),
    image: { ref: 'oci:/x:tag', rootfs: r, sandbox: false, config: { env: ['FOO=image', 'PATH=/img'] } as never },
  });
  const env = Object.fromEntries(e.baseEnv);
  t.equal(env.FOO, 'image', 'the image config wins over the host');
  t.equal(env.PATH, '/img');
  t.equal(env.HOME, '/home/u');
  t.equal(env.APPTAINERENV_X, undefined, 'prefixed variables are not passed as they are');
  t.equal(env.APPTAINER_CONTAINER, 'oci:/x:tag', 'a reference stays as given');
  t.equal(env.SINGULARITY_NAME, 'x:tag');
  t.equal(env.APPTAINER_COMMAND, 'exec');
  t.equal(env.APPTAINER_BIND, '/a,/c');
  t.equal(env.LD_LIBRARY_PATH, undefined, 'no sandbox, no gpu');
  t.equal(env.PS1, undefined);
  t.same(e.envScripts, []);
  const local = Object.fromEntries(
    planBaseEnv({ ...base(r), mode: 'shell', gpu: true, noEval: true, cleanenv: true }).baseEnv,
  );
  t.equal(local.APPTAINER_CONTAINER, '/work/img', 'a local image as an absolute path');
  t.equal(local.PS1, 'Apptainer> ');
  t.equal(local.LD_LIBRARY_PATH, '/.singularity.d/libs');
  t.equal(local.SINGULARITY_NO_EVAL, '1');
  t.equal(local.FOO, undefined, 'cleanenv');
  t.equal(local.TERM, 'xterm');
  t.equal(local.LANG, 'C');
});

t.test("a sandbox's env scripts: *.sh regular files in lexical order, resolved in the image", async (t) => {
  const r = scratch(t);
  const dir = join(r, '.singularity.d/env');
  mkdirSync(dir, { recursive: true });
  for (const f of ['90-b.sh', '01-a.sh', 'README']) writeFileSync(join(dir, f), '');
  mkdirSync(join(dir, '50-dir.sh'));
  symlinkSync('/etc/shadow', join(dir, '60-out.sh'));
  const e = planBaseEnv({ ...base(r), image: { ref: r, rootfs: r, sandbox: true } });
  t.same(e.envScripts, ['/.singularity.d/env/01-a.sh', '/.singularity.d/env/90-b.sh']);
  t.equal(e.baseEnv.get('LD_LIBRARY_PATH'), '/.singularity.d/libs');
  t.same(planBaseEnv(base(r)).envScripts, [], 'not a sandbox: no scripts');
});
