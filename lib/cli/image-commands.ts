// CLI verbs for images: pull, inspect, cache list|clean.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import {
  pullImage,
  inspectImage,
  ImageCache,
  ImageError,
  defaultCacheDir,
  CACHE_CONTENT_TYPES,
  type CacheContentType,
  type PullOptions,
} from '../image/index.js';
import { human, progressReporter } from './progress.js';
import { jsonPrintable, printable } from './printable.js';

interface CommonFlags {
  insecure?: boolean;
  username?: string;
  passwordStdin?: boolean;
  platform?: string;
  cache?: string;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** Turn the shared flags into pull options (password only from stdin or env, never argv). */
async function optionsFrom(flags: CommonFlags): Promise<PullOptions> {
  const options: PullOptions = {};
  if (flags.insecure) options.insecure = true;
  if (flags.cache) options.cacheDir = flags.cache;
  if (flags.username !== undefined) {
    const password = flags.passwordStdin ? await readStdin() : process.env.NODULARITY_DOCKER_PASSWORD;
    if (password === undefined) throw new Error('--username needs --password-stdin or NODULARITY_DOCKER_PASSWORD');
    options.credentials = { username: flags.username, password };
  }
  if (flags.platform) {
    const [os, architecture, variant] = flags.platform.split('/');
    if (!os || !architecture)
      throw new Error(`--platform \`${flags.platform}\`: expected OS/ARCH[/VARIANT], e.g. linux/amd64`);
    options.platform = variant ? { os, architecture, variant } : { os, architecture };
  }
  return options;
}

function addCommonFlags(cmd: Command): Command {
  return cmd
    .option('--insecure', 'talk plain http to the registry')
    .option('--username <name>', 'registry user (password from --password-stdin or NODULARITY_DOCKER_PASSWORD)')
    .option('--password-stdin', 'read the registry password from standard input')
    .option('--platform <os/arch[/variant]>', 'platform to choose from a multi-platform image')
    .option('--cache <dir>', `cache directory (default: ${defaultCacheDir()})`);
}

/** Add `pull`, `inspect` and `cache list|clean` to a commander program. */
export function registerImageCommands(program: Command): void {
  addCommonFlags(
    program
      .command('pull')
      .description(
        'fetch an image (oci:DIR[:TAG], docker-archive:FILE, docker://HOST/REPO[:TAG|@DIGEST]) and unpack it into the cache, or into DEST/rootfs',
      )
      .argument('<source>', 'image source')
      .argument('[dest]', 'unpack into DEST (DEST/rootfs + DEST/image.json) instead of the cache')
      .option('-q, --quiet', 'no progress output')
      .option(
        '--keep-devices',
        "create the image's device nodes (root; trusted images only: they are the host's devices)",
      )
      .option('--keep-setid', 'keep setuid/setgid bits in DEST (root; any user who can reach DEST can run them)'),
  ).action(
    async (
      source: string,
      dest: string | undefined,
      flags: CommonFlags & { quiet?: boolean; keepDevices?: boolean; keepSetid?: boolean },
    ) => {
      const options = await optionsFrom(flags);
      if (dest) options.dest = dest;
      if (flags.keepDevices) options.keepDevices = true;
      if (flags.keepSetid) options.keepSetid = true;
      // pull's own -q, or the global -q/-s (`nodularity -q pull ...`).
      const g = program.opts<{ quiet?: boolean; silent?: boolean }>();
      const quiet = Boolean(flags.quiet || g.quiet || g.silent);
      const progress = progressReporter(quiet);
      options.onProgress = progress.onProgress;
      try {
        const img = await pullImage(source, options);
        progress.stop();
        const s = img.stats;
        const root = process.getuid?.() === 0;
        if (!quiet && !img.cached) {
          process.stderr.write(
            `${s.files} files, ${s.directories} dirs, ${s.symlinks} symlinks, ${s.hardlinks} hard links, ${human(s.bytes)}` +
              (s.devicesSkipped
                ? `; ${s.devicesSkipped} device nodes skipped (${root ? 'see --keep-devices' : 'not root'})`
                : '') +
              (s.setidDropped
                ? `; setuid/setgid dropped on ${s.setidDropped} files (${root ? 'see --keep-setid' : 'not root'})`
                : '') +
              '\n',
          );
        }
        process.stdout.write(img.rootfs + '\n');
      } finally {
        progress.stop();
      }
    },
  );

  addCommonFlags(
    program
      .command('inspect')
      .description("show an image's manifest, config and layers without unpacking it")
      .argument('<source>', 'image source')
      .option('--json', 'print JSON'),
  ).action(async (source: string, flags: CommonFlags & { json?: boolean }) => {
    const info = await inspectImage(source, await optionsFrom(flags));
    if (flags.json) {
      process.stdout.write(jsonPrintable(info) + '\n');
      return;
    }
    const c = info.config;
    const lines = [
      `Source:       ${info.source}`,
      `Manifest:     ${info.manifestDigest} (${info.mediaType})`,
      ...(info.indexDigest ? [`Index:        ${info.indexDigest}`] : []),
      `Platform:     ${c.os}/${c.architecture}${c.variant ? '/' + c.variant : ''}`,
      ...(c.created ? [`Created:      ${c.created}`] : []),
      `Entrypoint:   ${JSON.stringify(c.entrypoint)}`,
      `Cmd:          ${JSON.stringify(c.cmd)}`,
      `WorkingDir:   ${c.workingDir || '/'}`,
      `User:         ${c.user || '(root)'}`,
      'Env:',
      ...c.env.map((e) => `  ${e}`),
      ...(Object.keys(c.labels).length ? ['Labels:', ...Object.entries(c.labels).map(([k, v]) => `  ${k}=${v}`)] : []),
      `Layers:       ${info.layers.length}, ${human(info.size)}`,
      ...info.layers.map(
        (l, i) => `  ${String(i + 1).padStart(2)}. ${l.digest}  ${human(l.size).padStart(10)}  ${l.mediaType}`,
      ),
      ...(info.cachedRootfs ? [`Cached at:    ${info.cachedRootfs}`] : []),
    ];
    // Everything above may come from the image (labels, env, entrypoint, ...).
    process.stdout.write(lines.map(printable).join('\n') + '\n');
  });

  const cache = program
    .command('cache')
    .description('list or clean the image cache (blobs: layers as fetched; roots: unpacked images)');
  cache
    .command('list')
    .description('list unpacked roots and layer blobs in the cache')
    .option('--cache <dir>', `cache directory (default: ${defaultCacheDir()})`)
    .option('-T, --type <types>', `what to list: ${CACHE_CONTENT_TYPES.join(', ')} or all, comma-separated`, 'all')
    .option('--json', 'print JSON')
    .action(async (flags: { cache?: string; type: string; json?: boolean }) => {
      const c = openCache(flags.cache);
      const types = cacheTypes(flags.type);
      const roots = types.has('root') ? await c.list() : [];
      const blobs = types.has('blob') ? await c.listBlobs() : [];
      if (flags.json) {
        process.stdout.write(
          jsonPrintable([
            ...roots.map((e) => ({
              type: 'root',
              manifestDigest: e.manifestDigest,
              rootfs: e.rootfs,
              source: e.meta.source,
              unpacked: e.meta.unpacked,
              bytes: e.meta.stats.bytes,
            })),
            ...blobs.map((b) => ({
              type: 'blob',
              digest: b.digest,
              path: c.blobPath(b.digest),
              stored: b.stored,
              bytes: b.size,
            })),
          ]) + '\n',
        );
        return;
      }
      for (const e of roots)
        process.stdout.write(
          printable(
            `${e.manifestDigest}  ${human(e.meta.stats.bytes).padStart(10)}  ${e.meta.unpacked}  ${e.meta.source}`,
          ) + '\n',
        );
      for (const b of blobs) process.stdout.write(`${b.digest}  ${human(b.size).padStart(10)}  ${b.stored}  (blob)\n`);
    });
  cache
    .command('clean')
    .description(
      'remove cached roots (all, or the given manifest digests), layer blobs and stale temp files; roots that running containers use are skipped unless --force',
    )
    .argument('[digests...]', 'manifest digests of roots to remove (default: everything of --type)')
    .option('--cache <dir>', `cache directory (default: ${defaultCacheDir()})`)
    .option(
      '-T, --type <types>',
      `what to remove: ${CACHE_CONTENT_TYPES.join(', ')} or all, comma-separated (as Apptainer's --type)`,
      'all',
    )
    .option(
      '-f, --force',
      'also take away roots in use: they leave the cache now (the running containers keep working) and are deleted once those containers exit',
    )
    .action(async (digests: string[], flags: { cache?: string; type: string; force?: boolean }) => {
      const types = cacheTypes(flags.type);
      if (digests.length && !types.has('root'))
        throw new ImageError(
          'CACHE',
          `cache clean: digests name unpacked roots; --type ${flags.type} leaves roots out`,
        );
      const r = await openCache(flags.cache).clean({
        types: [...types],
        force: Boolean(flags.force),
        ...(digests.length ? { digests } : {}),
      });
      for (const s of r.skipped)
        process.stderr.write(
          `skipped ${s.manifestDigest}: in use by ${plural(s.holders.length, 'running container')} (pid ${s.holders.join(', ')}); --force takes it away anyway\n`,
        );
      for (const s of r.parked)
        process.stderr.write(
          `took away ${s.manifestDigest}: in use by ${plural(s.holders.length, 'running container')} (pid ${s.holders.join(', ')}); deleted once they exit\n`,
        );
      process.stdout.write(
        `removed ${r.removed.length} image(s), freed ${human(r.bytesFreed)}${types.has('blob') && !digests.length ? `, including ${r.blobs} blob(s)` : ''}` +
          (r.skipped.length ? `; skipped ${r.skipped.length} in use` : '') +
          (r.parked.length ? `; ${r.parked.length} in use taken away, deleted when released` : '') +
          '\n',
      );
    });
}

function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

/** `--type` of cache list/clean: Apptainer's comma-separated list; `all` for everything. */
function cacheTypes(value: string): Set<CacheContentType> {
  const out = new Set<CacheContentType>();
  for (const raw of value.split(',')) {
    const v = raw.trim();
    if (v === 'all') CACHE_CONTENT_TYPES.forEach((t) => out.add(t));
    else if ((CACHE_CONTENT_TYPES as readonly string[]).includes(v)) out.add(v as CacheContentType);
    else
      throw new ImageError(
        'CACHE',
        `--type \`${printable(v)}\`: not a cache type (expected ${CACHE_CONTENT_TYPES.join(', ')} or all, comma-separated)`,
      );
  }
  return out;
}

/** The cache of --cache or $NODULARITY_CACHE, which the user named and so must exist; the default one may not yet. */
function openCache(flag: string | undefined): ImageCache {
  const named = flag ?? process.env.NODULARITY_CACHE;
  if (named && !existsSync(named))
    throw new ImageError(
      'CACHE',
      `cache ${named}${flag ? ' (--cache)' : ' ($NODULARITY_CACHE)'} does not exist; check the path`,
    );
  return new ImageCache(flag);
}
