// A pilot-shaped mix: the job steps a grid pilot launches back to back and
// several at once, from one image pulled into the cache: short payloads
// (true, a shell reading a bound input file, echo with a per-job argument
// and environment), each with a read-only bind of the pilot's work
// directory. The image is an OCI layout the bench writes offline from its
// busybox rootfs and pulls like any `oci:DIR:TAG` source. Measured as
// containers per second with 2 and 8 in flight, for run() and for a
// prepared container (the same mix through template.run()).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { hrtime } from 'node:process';
import { join } from 'node:path';
import { pullImage } from '../image/pull.js';
import { fmt, table } from './format.js';
import type { ExtraContext, ExtraSection } from './section.js';
import { benchSpec } from './setup.js';

const TAG = 'bench';

function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** An OCI image layout of `rootfs` (one uncompressed layer) at `dir`, written once; returns `oci:DIR:TAG`. */
export function writeLayout(rootfs: string, dir: string): string {
  const source = `oci:${dir}:${TAG}`;
  if (existsSync(join(dir, 'index.json'))) return source;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const blob = (data: Buffer) => {
    const d = sha256(data);
    writeFileSync(join(dir, 'blobs', 'sha256', d.slice(7)), data);
    return { digest: d, size: data.length };
  };
  const tar = spawnSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', rootfs, '-cf', '-', '.'], {
    maxBuffer: 1 << 30,
  });
  if (tar.status !== 0) throw new Error(`tar of ${rootfs} failed: ${tar.stderr?.toString().trim()}`);
  const layer = blob(tar.stdout);
  const config = blob(
    Buffer.from(
      JSON.stringify({
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
        os: 'linux',
        config: { Env: ['PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin'], Cmd: ['/bin/sh'] },
        rootfs: { type: 'layers', diff_ids: [layer.digest] },
      }),
    ),
  );
  const manifest = blob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
      }),
    ),
  );
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': TAG },
        },
      ],
    }),
  );
  return source;
}

/** Run `total` launches keeping `inflight` outstanding; resolves to elapsed ns. */
async function pump(launch: (i: number) => Promise<void>, total: number, inflight: number): Promise<number> {
  const t0 = hrtime.bigint();
  let next = 0;
  const lane = async () => {
    while (next < total) await launch(next++);
  };
  await Promise.all(Array.from({ length: Math.min(inflight, total) }, lane));
  return Number(hrtime.bigint() - t0);
}

export interface PilotOptions {
  /** Launches per driver and level, over all blocks. */
  count: number;
  levels: number[];
}

/** The pilot mix section. */
export async function pilotSection(x: ExtraContext, o: PilotOptions): Promise<ExtraSection> {
  const base = join(x.out, 'pilot');
  const work = join(base, 'work');
  mkdirSync(work, { recursive: true });
  writeFileSync(join(work, 'input'), 'event data\n'.repeat(1000));
  const source = writeLayout(x.rootfs, join(base, 'layout'));
  const pulled = await pullImage(source, { cacheDir: join(base, 'cache') });
  const bind = { source: work, destination: '/work', readonly: true };
  const mix: string[][] = [
    ['/bin/true'],
    ['/bin/sh', '-c', 'read -r first < /work/input && test -n "$first"'],
    ['/bin/echo', 'job'],
  ];
  const argsOf = (i: number) => (i % 3 === 2 ? [...mix[2], String(i)] : mix[i % 3]);
  const envOf = (i: number) => ['PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', `JOB_ID=${i}`];
  const spec = benchSpec(pulled.rootfs, { maps: false });
  const check = (r: { exitCode: number }, i: number) => {
    if (r.exitCode !== 0) throw new Error(`pilot mix launch ${i} (${argsOf(i).join(' ')}): exit ${r.exitCode}`);
  };
  const drivers: { label: string; error: string | null; launch: ((i: number) => Promise<void>) | null }[] = [
    {
      label: 'nodularity run()',
      error: null,
      launch: async (i) =>
        check(
          await x.nod.run(
            {
              ...spec,
              mounts: [
                ...spec.mounts!,
                { destination: '/work', type: 'bind', source: work, options: ['rbind', 'nosuid', 'nodev', 'ro'] },
              ],
              process: { ...spec.process!, args: argsOf(i), env: envOf(i) },
            },
            { stdio: 'ignore' },
          ),
          i,
        ),
    },
  ];
  if (typeof x.nod.prepare === 'function') {
    const tpl = x.nod.prepare(spec, {});
    drivers.push({
      label: 'nodularity prepared',
      error: null,
      launch: async (i) => check(await tpl.run({ args: argsOf(i), env: envOf(i), binds: [bind], stdio: 'ignore' }), i),
    });
  } else drivers.push({ label: 'nodularity prepared', error: 'this build has no prepare()', launch: null });

  const blocks = 3;
  const per = Math.max(1, Math.ceil(o.count / blocks));
  const spans = new Map<string, { n: number; ns: number }[]>();
  for (const d of drivers) {
    if (!d.launch) continue;
    try {
      await pump(d.launch, 30, 2); // warm-up
    } catch (e) {
      d.error = (e as Error).message;
    }
  }
  for (let b = 0; b < blocks; b++)
    for (const level of o.levels)
      for (const d of drivers) {
        if (d.error || !d.launch) continue;
        try {
          const ns = await pump(d.launch, per, level);
          const k = `${d.label}\0${level}`;
          spans.set(k, [...(spans.get(k) ?? []), { n: per, ns }]);
        } catch (e) {
          d.error = (e as Error).message;
        }
      }
  const results = o.levels.flatMap((level) =>
    drivers.map((d) => {
      const s = spans.get(`${d.label}\0${level}`) ?? [];
      const n = s.reduce((a, v) => a + v.n, 0);
      const ns = s.reduce((a, v) => a + v.ns, 0);
      return { label: d.label, inflight: level, launches: n, perSec: n ? n / (ns / 1e9) : null, error: d.error };
    }),
  );
  const h = ['launcher', 'in flight', 'launches', 'containers/s', 'status'];
  const rows = results.map((r) => [r.label, String(r.inflight), String(r.launches), fmt(r.perSec, 0), r.error ?? '']);
  const foot =
    `Image ${source} pulled into ${join(base, 'cache')} (${pulled.cached ? 'already cached' : 'pulled now'}); ` +
    `each launch: ${mix.map((m) => m.join(' ')).join(' | ')} N, in turn, with JOB_ID=N and a read-only bind of ${work} on /work.`;
  return {
    title: `Pilot-shaped mix: short payloads from a pulled image with a bind, ${o.levels.join(' and ')} in flight`,
    data: { source, rootfs: pulled.rootfs, results },
    text: `${table(h, rows, { align: 'lrrrl' })}\n${foot}`,
    markdown: `${table(h, rows, { markdown: true, align: 'lrrrl' })}\n\n${foot}`,
  };
}
