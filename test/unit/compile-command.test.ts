// Stage "command" (lib/singularity/compile/command.ts): what each action runs.
import t from 'tap';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { planCommand } from '../../lib/singularity/compile/command.js';
import type { ResolvedRunImage } from '../../lib/singularity/image.js';
import { scratch, type Tap } from '../helpers/env.js';

function image(t: Tap, files: Record<string, number>, extra: Partial<ResolvedRunImage> = {}): ResolvedRunImage {
  const r = scratch(t);
  for (const [p, mode] of Object.entries(files)) {
    mkdirSync(join(r, p, '..'), { recursive: true });
    writeFileSync(join(r, p), '');
    chmodSync(join(r, p), mode);
  }
  return {
    ref: 'img',
    rootfs: r,
    sandbox: '/.singularity.d/runscript' in files || '/.singularity.d/test' in files,
    ...extra,
  };
}

t.test('exec runs the command as given', async (t) => {
  t.same(planCommand('exec', ['a', 'b'], image(t, {})), {
    args: ['a', 'b'],
    runnable: true,
    env: [],
    warnings: [],
    infos: [],
  });
});

t.test(
  'run: runscript, else Entrypoint + Cmd (args replace Cmd), else /bin/sh with an INFO, else an error',
  async (t) => {
    t.same(planCommand('run', ['x'], image(t, { '/.singularity.d/runscript': 0o755 })).args, [
      '/.singularity.d/runscript',
      'x',
    ]);
    const cfg = { entrypoint: ['/ep'], cmd: ['c1'], env: [] } as never;
    t.same(planCommand('run', [], image(t, {}, { config: cfg })).args, ['/ep', 'c1']);
    t.same(planCommand('run', ['x'], image(t, {}, { config: cfg })).args, ['/ep', 'x']);
    const sh = planCommand('run', ['x'], image(t, { '/bin/sh': 0o755 }));
    t.same([sh.args, sh.infos], [['/bin/sh', 'x'], ['No runscript found in container, executing /bin/sh']]);
    t.throws(() => planCommand('run', [], image(t, { '/bin/sh': 0o644 })), {
      name: 'SpecError',
      option: 'image',
      message: /img has no \/\.singularity\.d\/runscript, no Entrypoint or Cmd and no \/bin\/sh/,
    });
  },
);

t.test(
  'shell: the asked shell when executable, else bash --norc, else sh; SHELL and APPTAINER_SHELL set',
  async (t) => {
    const img = image(t, { '/bin/bash': 0o755, '/bin/zsh': 0o755, '/bin/fish': 0o644 });
    t.same(planCommand('shell', ['/bin/zsh'], img), {
      args: ['/bin/zsh'],
      runnable: true,
      env: [
        ['APPTAINER_SHELL', '/bin/zsh'],
        ['SINGULARITY_SHELL', '/bin/zsh'],
      ],
      warnings: [],
      infos: [],
    });
    const fish = planCommand('shell', ['/bin/fish'], img);
    t.same(fish.args, ['/bin/bash', '--norc']);
    t.same(fish.env[0], ['SHELL', '/bin/bash']);
    t.match(fish.warnings, [/shell \/bin\/fish is not an executable file in the container/]);
    t.same(planCommand('shell', [], image(t, {})), {
      args: ['/bin/sh'],
      runnable: true,
      env: [['SHELL', '/bin/sh']],
      warnings: [],
      infos: [],
    });
  },
);

t.test("test: the sandbox's test script, else not runnable", async (t) => {
  t.same(planCommand('test', ['a'], image(t, { '/.singularity.d/test': 0o755 })).args, ['/.singularity.d/test', 'a']);
  const none = planCommand('test', [], image(t, {}));
  t.same([none.runnable, none.args], [false, ['/bin/true']]);
});
