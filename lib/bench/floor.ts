// The floor: bench/floor/floor.c, the least work that gives the same
// container as nodularity's default (no init, no policy), compiled here. It
// serves as a latency driver (`floor`, started by child_process like the
// other runtimes) and, in its own section, loops in C without Node: what the
// kernel work alone costs, with the child writing its maps (vfork), the
// parent writing them (fork), and with a network namespace.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fmt, table } from './format.js';
import type { ExtraContext, ExtraSection } from './section.js';
import { compileC, PACKAGE_DIR } from './setup.js';
import { summarize, type Summary } from './stats.js';

/** floor.c compiled into `workDir` (a checkout has it; an installed package does not ship it). */
export function floorBinary(workDir: string): { bin: string } | { error: string } {
  const src = join(PACKAGE_DIR, 'bench', 'floor', 'floor.c');
  if (!existsSync(src)) return { error: `${src} is not here (the floor is measured from a checkout)` };
  try {
    return { bin: compileC(src, join(workDir, 'floor')) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

const MODES: [string, string[]][] = [
  ['vfork', []],
  ['fork', ['--fork']],
  ['vfork+netns', ['--net']],
];

/** The floor's in-process loops, `loops` launches per mode in two alternating blocks. */
export async function floorSection(x: ExtraContext, loops: number): Promise<ExtraSection> {
  const bin = x.drivers.floor;
  const modes: Record<string, { samples: number[]; error: string | null; summary?: Summary }> = Object.fromEntries(
    MODES.map(([m]) => [m, { samples: [], error: x.drivers.floor ? null : (x.drivers.floorError ?? 'not built') }]),
  );
  for (let block = 0; block < 2; block++) {
    for (const [mode, args] of MODES) {
      const f = modes[mode];
      if (f.error || !bin) continue;
      try {
        const out = execFileSync(bin, [...args, '--loop', String(Math.ceil(loops / 2)), x.rootfs, ...x.args], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        f.samples.push(...(JSON.parse(out) as { ns: number[] }).ns);
      } catch (e) {
        const err = e as { stderr?: string; message?: string };
        f.error = `${bin} ${args.join(' ')}: ${(err.stderr || err.message || '').trim()}`;
      }
    }
  }
  const rows = MODES.map(([mode]) => {
    const f = modes[mode];
    if (f.error || !f.samples.length) return [`floor.c in-process (${mode})`, '0', '-', '-', '-', '-', f.error ?? ''];
    const s = (f.summary = summarize(f.samples));
    return [`floor.c in-process (${mode})`, String(s.n), fmt(s.p50), fmt(s.p90), fmt(s.p99), fmt(s.mean), ''];
  });
  const h = ['launcher (no Node)', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'mean ms', 'status'];
  return {
    title: `The floor: ${x.args.join(' ')} launched by floor.c in a loop, without Node`,
    data: Object.fromEntries(Object.entries(modes).map(([m, f]) => [m, { error: f.error, ...f.summary }])),
    text: table(h, rows, { align: 'lrrrrrl' }),
    markdown: table(h, rows, { markdown: true, align: 'lrrrrrl' }),
  };
}
