// How the CLI reports a failure of its own: one line on stderr that names the
// file or option at fault and what to do, and an exit status (Apptainer's:
// 255 for the runtime, 126 for a command that cannot be executed, 127 for one
// that does not exist). The modules below the CLI throw their own errors
// (SpecError, ContainerError, ImageError) or plain Node errors from the file
// system (ENOENT from mkdir, EACCES, ENOSPC); this is the one place that turns
// them into a line a user can act on. A stack trace only with -d (main.ts).
import { dirname } from 'node:path';
import { RUNTIME_FAILURE } from './payload-exit.js';

/** Apptainer's status for a command found but not executable. */
export const CANNOT_EXECUTE = 126;
/** Apptainer's (and the shell's) status for a command not found. */
export const NOT_FOUND = 127;

export interface Failure {
  message: string;
  status: number;
}

interface Errno {
  code?: unknown;
  syscall?: unknown;
  path?: unknown;
  dest?: unknown;
  message: string;
}

/** Collapse a message to one line (an error may quote a file's content). */
function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

/** The value of `--NAME` (or `--NAME=V`) before a `--`, if given. */
function optionValue(args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length && args[i] !== '--'; i++) {
    if (args[i] === name) return args[i + 1];
    if (args[i]!.startsWith(`${name}=`)) return args[i]!.slice(name.length + 1);
  }
  return undefined;
}

function isInside(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/**
 * What to do about an errno error on PATH: the cache directory gets its own
 * advice (where it comes from and how to move it); any other path the generic
 * one for the code.
 */
async function errnoLine(e: Errno, args: string[]): Promise<{ line: string; inCache: boolean }> {
  const code = String(e.code);
  const syscall = typeof e.syscall === 'string' ? e.syscall : undefined;
  // A destination's temporary sibling (DEST.nodularity-PID-HEX) is DEST to the user.
  const path = typeof e.path === 'string' && e.path ? e.path.replace(/\.nodularity-\d+-[0-9a-f]+$/, '') : undefined;
  // A write(2) on an open file has no path: for the image verbs, that file is in the cache (or pull's DEST).
  const verb = args.find((a) => !a.startsWith('-'));
  const imageVerb = verb !== undefined && ['exec', 'run', 'shell', 'test', 'pull'].includes(verb);
  const what = path ?? (imageVerb ? `a file of the image cache${verb === 'pull' ? ' (or DEST)' : ''}` : 'a file');
  const how = `${code}${syscall ? `, ${syscall}` : ''}`;
  // The cache: --cache, else $NODULARITY_CACHE, else the XDG/HOME default.
  let cache: string | undefined;
  let cacheFrom = '';
  const flag = optionValue(args, '--cache');
  if (flag !== undefined) {
    cache = (await import('node:path')).resolve(flag);
    cacheFrom = '--cache';
  } else {
    const { defaultCacheDir } = await import('../image/cache.js');
    cache = defaultCacheDir();
    cacheFrom = process.env.NODULARITY_CACHE
      ? 'NODULARITY_CACHE'
      : process.env.APPTAINER_CACHEDIR || process.env.SINGULARITY_CACHEDIR
        ? 'the cache directory in APPTAINER_CACHEDIR'
        : 'the default cache directory';
  }
  const inCache = path !== undefined ? isInside(path, cache) || isInside(cache, path) : imageVerb;
  const moveCache =
    cacheFrom === '--cache'
      ? 'pass another --cache'
      : cacheFrom === 'NODULARITY_CACHE'
        ? 'set NODULARITY_CACHE to another directory'
        : 'set NODULARITY_CACHE (or pass --cache) to a directory you can write';
  return { line: adviceFor(code, syscall, path, what, how, inCache, cache, cacheFrom, moveCache, e.message), inCache };
}

function adviceFor(
  code: string,
  syscall: string | undefined,
  path: string | undefined,
  what: string,
  how: string,
  inCache: boolean,
  cache: string,
  cacheFrom: string,
  moveCache: string,
  message: string,
): string {
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return (
        `${code === 'ENOSPC' ? 'no space left on the device' : 'disk quota exceeded'} while writing ${what} (${how}): free some space` +
        (inCache
          ? `, or ${moveCache.replace('a directory you can write', 'a larger file system')}`
          : ', or choose a larger file system')
      );
    case 'EFBIG':
      return (
        `${what}: file too large (${how}; the file size limit, \`ulimit -f\`, was reached): raise the limit` +
        (inCache ? `, or ${moveCache}` : '')
      );
    case 'EROFS':
      return (
        `${what} is on a read-only file system (${how})` +
        (inCache ? `: ${moveCache}` : ': choose a writable directory')
      );
    case 'EACCES':
    case 'EPERM':
      if (inCache)
        return `${cacheFrom === 'the default cache directory' ? `the default cache directory ${cache}` : `cache directory ${cache}`}: permission denied on ${what} (${how}): ${moveCache}`;
      return `${what}: permission denied (${how}): make it readable (writable, for a destination) by uid ${process.geteuid!()}, or run as its owner`;
    case 'ENOENT':
      if (inCache)
        return `${cacheFrom === 'the default cache directory' ? `the default cache directory ${cache}` : `cache directory ${cache}`} cannot be created: ${what} does not exist (${how}): ${moveCache}`;
      if (syscall === 'mkdir' && path)
        return `cannot create ${path}: the directory ${dirname(path)} does not exist (${how}); create it first`;
      return `${what} does not exist (${how})`;
    case 'ENOTDIR':
      if (inCache)
        return `${cacheFrom === 'the default cache directory' ? `the default cache directory ${cache}` : `cache directory ${cache}`} cannot be created: a component of ${what} is not a directory (${how}): ${moveCache}`;
      return `${what}: a component of the path is not a directory (${how})`;
    case 'EEXIST':
      return `${what} already exists (${how})`;
    case 'ELOOP':
      return `${what}: too many symbolic links, or a symbolic link where none is allowed (${how})`;
    case 'EMFILE':
    case 'ENFILE':
      return `too many open files (${how}${path ? ` on ${path}` : ''}): raise \`ulimit -n\``;
    case 'ENOMEM':
      return `out of memory (${how})`;
    default:
      return `${what}: ${oneLine(message)}`;
  }
}

/** Codes whose advice adds to an ImageError's own message (it already says ENOENT). */
const ADVISED = new Set(['ENOSPC', 'EDQUOT', 'EFBIG', 'EROFS', 'EACCES', 'EPERM', 'EMFILE', 'ENFILE']);

/** The verbs that speak Apptainer's log format. */
const APPTAINER_VERBS = new Set(['exec', 'run', 'shell', 'test', 'version']);

/**
 * The line to print for a failure: `FATAL:   message` for the Apptainer
 * verbs, as Apptainer's sylog writes it (log scrapers look for FATAL:), and
 * `nodularity: message` for nodularity's own verbs (but for every verb when
 * installed as apptainer or singularity: that command speaks one format).
 */
export function failureLine(message: string, args: string[], asApptainer = false): string {
  const verb = args.find((a) => !a.startsWith('-'));
  return asApptainer || (verb !== undefined && APPTAINER_VERBS.has(verb))
    ? `FATAL:   ${message}`
    : `nodularity: ${message}`;
}

/** The line and status for a failure that ended the CLI. */
export async function describeFailure(e: unknown, args: string[]): Promise<Failure> {
  if (!(e instanceof Error)) return { message: oneLine(String(e)), status: RUNTIME_FAILURE };
  const x = e as Error & Errno & { pointer?: string; step?: string; cause?: unknown };
  // The command does not exist (127) or is not executable (126), as Apptainer says it.
  if (x.name === 'SpecError' && x.pointer === '/process/args/0' && (x.code === 'ENOENT' || x.code === 'EACCES'))
    return { message: oneLine(x.message), status: x.code === 'ENOENT' ? NOT_FOUND : CANNOT_EXECUTE };
  if (x.name === 'ContainerError' && x.step === 'exec' && (x.code === 'ENOENT' || x.code === 'EACCES'))
    return { message: oneLine(x.message), status: x.code === 'ENOENT' ? NOT_FOUND : CANNOT_EXECUTE };
  if (x.name === 'ContainerError' || x.name === 'SpecError' || x.name === 'OciStateError')
    return { message: oneLine(x.message), status: RUNTIME_FAILURE };
  if (x.name === 'ImageError') {
    // An image error carrying a file system error from below: say what to do about that.
    const c = x.cause as Errno | undefined;
    if (c && typeof c === 'object' && typeof c.code === 'string' && typeof c.syscall === 'string') {
      const a = await errnoLine(c, args);
      // The cache's own trouble: the errno line names it and says where to move it.
      if (a.inCache) return { message: a.line, status: RUNTIME_FAILURE };
      if (ADVISED.has(c.code)) return { message: `${oneLine(x.message)}: ${a.line}`, status: RUNTIME_FAILURE };
    }
    return { message: oneLine(x.message), status: RUNTIME_FAILURE };
  }
  // A raw Node error from the file system (mkdir, open, write ...).
  if (typeof x.code === 'string' && typeof x.syscall === 'string')
    return { message: (await errnoLine(x, args)).line, status: RUNTIME_FAILURE };
  return { message: oneLine(x.message), status: RUNTIME_FAILURE };
}
