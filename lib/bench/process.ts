// Whole processes, as a batch system or a pilot starts them: `node -e 0`,
// the installed `nodularity exec DIR CMD` and `nodularity-oci run`, and the
// other runtimes' own commands, each run as a fresh process by
// bench/floor/rusage.c (fork, exec, wait4): wall time, and CPU time (user +
// system of the command and of every descendant it reaped) as
// /usr/bin/time -v reports them. Rows take turns in blocks, in one run.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt, table } from './format.js';
import type { ExtraContext, ExtraSection } from './section.js';
import { benchSpec, compileC, PACKAGE_DIR } from './setup.js';
import { median } from './stats.js';

interface Row {
  id: string;
  label: string;
  cmd: string[];
  env?: NodeJS.ProcessEnv;
  error: string | null;
  wall: number[];
  cpu: number[];
  rss: number[];
}

export interface ProcessOptions {
  /** Runs per row, over all blocks. */
  runs: number;
}

/** The process section: a row per command, `node -e 0` first (the ratios' base). */
export async function processSection(x: ExtraContext, o: ProcessOptions): Promise<ExtraSection> {
  const work = join(x.out, 'work');
  mkdirSync(work, { recursive: true });
  const helper = compileC(join(PACKAGE_DIR, 'bench', 'floor', 'rusage.c'), join(work, 'rusage'));
  // The measured build's installed commands: bin/ beside its dist/.
  const dist = x.nodUrl ? dirname(fileURLToPath(x.nodUrl)) : join(PACKAGE_DIR, 'dist');
  const bin = join(dist, '..', 'bin');
  const bundle = join(work, 'bundle-nodularity-oci');
  mkdirSync(bundle, { recursive: true });
  writeFileSync(
    join(bundle, 'config.json'),
    JSON.stringify(benchSpec(x.rootfs, { uid: 0, gid: 0, net: x.network === 'none', args: x.args })),
  );
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const tag = `nbp-${process.pid}`;
  const rows: Row[] = [
    { id: 'node', label: 'node -e 0', cmd: [process.execPath, '-e', '0'] },
    {
      id: 'nodularity-exec',
      label: `nodularity exec DIR ${x.args.join(' ')}`,
      cmd: [join(bin, 'nodularity'), 'exec', x.rootfs, ...x.args],
    },
    {
      id: 'nodularity-oci',
      label: 'nodularity-oci run',
      cmd: [join(bin, 'nodularity-oci'), '--root', join(work, 'oci-state'), 'run', '--bundle', bundle, `${tag}-{{n}}`],
    },
    ...(x.drivers.floor ? [{ id: 'floor', label: 'floor.c', cmd: [x.drivers.floor, x.rootfs, ...x.args] }] : []),
    ...['bwrap', 'ch-run', 'crun', 'runc'].flatMap((id) => {
      const rt = x.drivers.runtimes[id];
      if (!rt) return [];
      if (rt.status !== 'ok' || !rt.cmd)
        return [{ id, label: id, cmd: [], error: `${rt.status}: ${rt.detail ?? ''}` } as Partial<Row>];
      return [
        {
          id,
          label: id,
          cmd: [rt.cmd, ...rt.args!.map((a) => a.replace('{{id}}', `${tag}-${id}-{{n}}`))],
          env: rt.envAdd ? { ...env, ...rt.envAdd } : env,
        },
      ];
    }),
  ].map((r) => ({ env, error: null, wall: [], cpu: [], rss: [], ...r }) as Row);

  const blocks = 5;
  const per = Math.max(1, Math.ceil(o.runs / blocks));
  for (let b = 0; b < blocks; b++)
    for (const r of rows) {
      if (r.error) continue;
      // Each block's container ids differ from the last ({{n}} restarts at 0).
      const cmd = r.cmd.map((a) => a.replace('{{n}}', `${b}-{{n}}`));
      const res = spawnSync(helper, [String(per), ...cmd], {
        encoding: 'utf8',
        env: r.env,
        stdio: ['ignore', 'pipe', 'pipe'],
        maxBuffer: 1 << 26,
      });
      let out: { status: number; wall_ns: number[]; cpu_ns: number[]; maxrss_kib: number[] } | undefined;
      try {
        out = JSON.parse(res.stdout.trim().split('\n').pop() ?? '');
      } catch {
        /* below */
      }
      if (res.status !== 0 || !out || out.status !== 0) {
        r.error = `${cmd.join(' ')}: ${out ? `wait status ${out.status}` : `exit ${res.status}`}: ${res.stderr.trim().slice(-300)}`;
        continue;
      }
      r.wall.push(...out.wall_ns.map((n) => n / 1e6));
      r.cpu.push(...out.cpu_ns.map((n) => n / 1e6));
      r.rss.push(...out.maxrss_kib);
    }

  const base = rows[0];
  const bw = median(base.wall);
  const bc = median(base.cpu);
  const data = rows.map((r) => ({
    id: r.id,
    label: r.label,
    error: r.error,
    n: r.wall.length,
    wallP50: median(r.wall),
    cpuP50: median(r.cpu),
    maxRssKiB: median(r.rss),
    xNodeWall: median(r.wall) / bw,
    xNodeCpu: median(r.cpu) / bc,
  }));
  const h = ['command', 'n', 'wall p50 ms', 'CPU p50 ms', 'max RSS MiB', 'x node wall', 'x node CPU', 'status'];
  const lines = data.map((d) => [
    d.label,
    String(d.n),
    fmt(d.wallP50),
    fmt(d.cpuP50),
    fmt(d.maxRssKiB / 1024, 1),
    fmt(d.xNodeWall, 2),
    fmt(d.xNodeCpu, 2),
    d.error ?? '',
  ]);
  const foot =
    'Each command a fresh process (bench/floor/rusage.c: fork, exec, wait4); CPU = user + system of the process and every descendant it reaped, as /usr/bin/time -v reports.';
  return {
    title: `Whole processes: ${x.args.join(' ')} in a container, started as a command, against node -e 0`,
    data,
    text: `${table(h, lines, { align: 'lrrrrrrl' })}\n${foot}`,
    markdown: `${table(h, lines, { markdown: true, align: 'lrrrrrrl' })}\n\n${foot}`,
  };
}
