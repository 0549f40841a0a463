// CLI verbs for images: pull, inspect, cache list|clean.
import type { Command } from 'commander';
import { pullImage, inspectImage, ImageCache, defaultCacheDir, type PullOptions } from '../image/index.js';
import { human, progressReporter } from './progress.js';

interface CommonFlags {
  insecure?: boolean;
  username?: string;
  passwordStdin?: boolean;
  platform?: string;
  cache?: string;
}

/**
 * A string from an image made safe to print on a terminal: C0 controls
 * (newline and tab included: one field, one line), DEL, C1 controls (0x9b is
 * CSI to some terminals) and the invisible or direction-changing format
 * characters are written as escapes. An image label is not a terminal
 * command (`\x1b]0;title\x07`, `\x1b[2J`), nor a way to forge lines.
 */
export function printable(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g, (c) => {
    const named: Record<string, string> = { '\n': '\\n', '\t': '\\t', '\r': '\\r' };
    const code = c.charCodeAt(0);
    return named[c] ?? (code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`);
  });
}

/**
 * JSON.stringify output made terminal-safe the same way: it escapes C0 but
 * leaves DEL, C1 and the format characters raw; as \uXXXX escapes (they only
 * occur inside strings) the JSON still parses to the same value.
 */
export function jsonPrintable(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(/[\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
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
    if (!os || !architecture) throw new Error(`--platform \`${flags.platform}\`: expected OS/ARCH[/VARIANT], e.g. linux/amd64`);
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
  addCommonFlags(program.command('pull')
    .description('fetch an image (oci:DIR[:TAG], docker-archive:FILE, docker://HOST/REPO[:TAG|@DIGEST]) and unpack it into the cache, or into DEST/rootfs')
    .argument('<source>', 'image source')
    .argument('[dest]', 'unpack into DEST (DEST/rootfs + DEST/image.json) instead of the cache')
    .option('-q, --quiet', 'no progress output')
    .option('--keep-devices', 'create the image\'s device nodes (root; trusted images only: they are the host\'s devices)')
    .option('--keep-setid', 'keep setuid/setgid bits in DEST (root; any user who can reach DEST can run them)'))
    .action(async (source: string, dest: string | undefined, flags: CommonFlags & { quiet?: boolean; keepDevices?: boolean; keepSetid?: boolean }) => {
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
          process.stderr.write(`${s.files} files, ${s.directories} dirs, ${s.symlinks} symlinks, ${s.hardlinks} hard links, ${human(s.bytes)}` +
            (s.devicesSkipped ? `; ${s.devicesSkipped} device nodes skipped (${root ? 'see --keep-devices' : 'not root'})` : '') +
            (s.setidDropped ? `; setuid/setgid dropped on ${s.setidDropped} files (${root ? 'see --keep-setid' : 'not root'})` : '') + '\n');
        }
        process.stdout.write(img.rootfs + '\n');
      } finally {
        progress.stop();
      }
    });

  addCommonFlags(program.command('inspect')
    .description('show an image\'s manifest, config and layers without unpacking it')
    .argument('<source>', 'image source')
    .option('--json', 'print JSON'))
    .action(async (source: string, flags: CommonFlags & { json?: boolean }) => {
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
        ...info.layers.map((l, i) => `  ${String(i + 1).padStart(2)}. ${l.digest}  ${human(l.size).padStart(10)}  ${l.mediaType}`),
        ...(info.cachedRootfs ? [`Cached at:    ${info.cachedRootfs}`] : []),
      ];
      // Everything above may come from the image (labels, env, entrypoint, ...).
      process.stdout.write(lines.map(printable).join('\n') + '\n');
    });

  const cache = program.command('cache').description('list or clean the image cache');
  cache.command('list')
    .description('list unpacked images in the cache')
    .option('--cache <dir>', `cache directory (default: ${defaultCacheDir()})`)
    .option('--json', 'print JSON')
    .action(async (flags: { cache?: string; json?: boolean }) => {
      const entries = await new ImageCache(flags.cache).list();
      if (flags.json) {
        process.stdout.write(jsonPrintable(entries.map((e) => ({ manifestDigest: e.manifestDigest, rootfs: e.rootfs, source: e.meta.source, unpacked: e.meta.unpacked, bytes: e.meta.stats.bytes }))) + '\n');
        return;
      }
      for (const e of entries) process.stdout.write(printable(`${e.manifestDigest}  ${human(e.meta.stats.bytes).padStart(10)}  ${e.meta.unpacked}  ${e.meta.source}`) + '\n');
    });
  cache.command('clean')
    .description('remove cached images (all, or the given manifest digests), blobs and stale temp files')
    .argument('[digests...]', 'manifest digests to remove (default: everything)')
    .option('--cache <dir>', `cache directory (default: ${defaultCacheDir()})`)
    .action(async (digests: string[], flags: { cache?: string }) => {
      const r = await new ImageCache(flags.cache).clean(digests.length ? { digests } : {});
      process.stdout.write(`removed ${r.removed.length} image(s), freed ${human(r.bytesFreed)}\n`);
    });
}
