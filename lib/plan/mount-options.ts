// Stage "mount options": a mount's runtime-spec options -> MS_* flags for a
// fresh file system, MOUNT_ATTR_* for a bind, propagation, fs data. Pure.
import { SpecError } from '../errors.js';
import { MOUNT_ATTR, MS } from './flags.js';

export const PROPAGATION: Record<string, [number, boolean]> = {
  private: [MS.PRIVATE, false],
  rprivate: [MS.PRIVATE, true],
  slave: [MS.SLAVE, false],
  rslave: [MS.SLAVE, true],
  shared: [MS.SHARED, false],
  rshared: [MS.SHARED, true],
  unbindable: [MS.UNBINDABLE, false],
  runbindable: [MS.UNBINDABLE, true],
};

// The mount options of runtime-spec 1.1 (and mount(8)). For a fresh file
// system the plain ones are MS_* flags and anything else is fs data; for a
// bind they are MOUNT_ATTR_* set with mount_setattr(2), and an option a bind
// cannot honour is a SpecError rather than silently dropped.
interface OptionEffect {
  ms?: [set: number, clear: number];
  /** mount_setattr: attributes set and cleared (atime modes clear MOUNT_ATTR__ATIME). */
  attr?: [set: number, clear: number];
}
export const ATIME_MASK = 0x70; // MOUNT_ATTR__ATIME
export const OPTION_TABLE: Record<string, OptionEffect> = {
  ro: { ms: [MS.RDONLY, 0], attr: [MOUNT_ATTR.RDONLY, 0] },
  rw: { ms: [0, MS.RDONLY], attr: [0, MOUNT_ATTR.RDONLY] },
  nosuid: { ms: [MS.NOSUID, 0], attr: [MOUNT_ATTR.NOSUID, 0] },
  suid: { ms: [0, MS.NOSUID], attr: [0, MOUNT_ATTR.NOSUID] },
  nodev: { ms: [MS.NODEV, 0], attr: [MOUNT_ATTR.NODEV, 0] },
  dev: { ms: [0, MS.NODEV], attr: [0, MOUNT_ATTR.NODEV] },
  noexec: { ms: [MS.NOEXEC, 0], attr: [MOUNT_ATTR.NOEXEC, 0] },
  exec: { ms: [0, MS.NOEXEC], attr: [0, MOUNT_ATTR.NOEXEC] },
  noatime: { ms: [MS.NOATIME, MS.RELATIME | MS.STRICTATIME], attr: [MOUNT_ATTR.NOATIME, ATIME_MASK] },
  // "atime": the kernel's default (relatime), i.e. not noatime.
  atime: { ms: [0, MS.NOATIME], attr: [MOUNT_ATTR.RELATIME, ATIME_MASK] },
  relatime: { ms: [MS.RELATIME, MS.NOATIME | MS.STRICTATIME], attr: [MOUNT_ATTR.RELATIME, ATIME_MASK] },
  norelatime: { ms: [MS.STRICTATIME, MS.RELATIME], attr: [MOUNT_ATTR.STRICTATIME, ATIME_MASK] },
  strictatime: { ms: [MS.STRICTATIME, MS.NOATIME | MS.RELATIME], attr: [MOUNT_ATTR.STRICTATIME, ATIME_MASK] },
  nostrictatime: { ms: [0, MS.STRICTATIME], attr: [MOUNT_ATTR.RELATIME, ATIME_MASK] },
  nodiratime: { ms: [MS.NODIRATIME, 0], attr: [MOUNT_ATTR.NODIRATIME, 0] },
  diratime: { ms: [0, MS.NODIRATIME], attr: [0, MOUNT_ATTR.NODIRATIME] },
  nosymfollow: { ms: [MS.NOSYMFOLLOW, 0], attr: [MOUNT_ATTR.NOSYMFOLLOW, 0] },
  symfollow: { ms: [0, MS.NOSYMFOLLOW], attr: [0, MOUNT_ATTR.NOSYMFOLLOW] },
  // Superblock options: a fresh mount takes them; a bind shares the
  // superblock and cannot change them.
  sync: { ms: [MS.SYNCHRONOUS, 0] },
  async: { ms: [0, MS.SYNCHRONOUS] },
  dirsync: { ms: [MS.DIRSYNC, 0] },
  mand: { ms: [MS.MANDLOCK, 0] },
  nomand: { ms: [0, MS.MANDLOCK] },
  lazytime: { ms: [MS.LAZYTIME, 0] },
  nolazytime: { ms: [0, MS.LAZYTIME] },
  silent: { ms: [MS.SILENT, 0] },
  loud: { ms: [0, MS.SILENT] },
};

export interface ParsedOptions {
  flags: number;
  cleared: number;
  /** For binds: mount_setattr of the plain options (recursively for rbind). */
  attrSet: number;
  attrClr: number;
  /** The r* options (rro, rnosuid, ...): always recursive. */
  rattrSet: number;
  rattrClr: number;
  bind: boolean;
  recursive: boolean;
  propagation: number;
  data: string[];
  /** Pointer of the first option a bind cannot apply. */
  notForBind?: [ptr: string, option: string];
}

export function parseOptions(options: string[] | undefined, ptr: string): ParsedOptions {
  const r: ParsedOptions = {
    flags: 0,
    cleared: 0,
    attrSet: 0,
    attrClr: 0,
    rattrSet: 0,
    rattrClr: 0,
    bind: false,
    recursive: false,
    propagation: 0,
    data: [],
  };
  // The last option wins. An atime mode replaces the one before it: its bits
  // are set while the whole MOUNT_ATTR__ATIME field is cleared (mount_setattr(2)).
  const apply = (set: number, clear: number, [s, c]: [number, number]): [number, number] =>
    clear & ATIME_MASK ? [(s & ~ATIME_MASK) | set, c | clear] : [(s | set) & ~clear, (c | clear) & ~set];
  (options ?? []).forEach((o, i) => {
    if (typeof o !== 'string') throw new SpecError(`${ptr}/${i}`, 'must be a string');
    if (o === 'bind') r.bind = true;
    else if (o === 'rbind') {
      r.bind = true;
      r.recursive = true;
    } else if (o in PROPAGATION) r.propagation = PROPAGATION[o][0];
    else if (o in OPTION_TABLE) {
      const e = OPTION_TABLE[o];
      if (e.ms) [r.flags, r.cleared] = apply(e.ms[0], e.ms[1], [r.flags, r.cleared]);
      if (e.attr) [r.attrSet, r.attrClr] = apply(e.attr[0], e.attr[1], [r.attrSet, r.attrClr]);
      else r.notForBind ??= [`${ptr}/${i}`, o];
    } else if (o.length > 1 && o[0] === 'r' && OPTION_TABLE[o.slice(1)]?.attr) {
      const [set, clear] = OPTION_TABLE[o.slice(1)].attr!;
      [r.rattrSet, r.rattrClr] = apply(set, clear, [r.rattrSet, r.rattrClr]);
    } else if (o === 'defaults' || o.startsWith('x-')) {
      /* nothing for the kernel (mount(8): x-* is for userspace) */
    } else if (o.startsWith('tmpcopyup') || o.startsWith('idmap') || o.startsWith('ridmap') || o === 'copy-symlink')
      throw new SpecError(`${ptr}/${i}`, `mount option ${o} is not supported`);
    else {
      r.data.push(o);
      r.notForBind ??= [`${ptr}/${i}`, o];
    }
  });
  return r;
}

/**
 * A bind's options split into those a bind applies and those it cannot (fs
 * data such as `mode=755`, superblock flags such as `sync`): runc and crun
 * pass the latter to a bind mount, where the kernel ignores them. The OCI
 * front end (config.json) drops them with a warning, as those runtimes
 * silently do; the library itself refuses them (parseOptions' notForBind),
 * so that nobody who wrote a spec by hand loses an option without knowing.
 * Unsupported options (tmpcopyup, idmap, ...) stay, to be refused.
 */
export function splitBindOptions(options: string[]): { kept: string[]; ignored: string[] } {
  const kept: string[] = [];
  const ignored: string[] = [];
  for (const o of options) {
    const known =
      typeof o !== 'string' ||
      o === 'bind' ||
      o === 'rbind' ||
      o === 'defaults' ||
      o.startsWith('x-') ||
      o in PROPAGATION ||
      OPTION_TABLE[o]?.attr !== undefined ||
      (o.length > 1 && o[0] === 'r' && OPTION_TABLE[o.slice(1)]?.attr !== undefined) ||
      /^(tmpcopyup|idmap|ridmap|copy-symlink)/.test(o);
    (known ? kept : ignored).push(o);
  }
  return { kept, ignored };
}

/** Whether a runtime-spec mount is a bind (type bind, or a bind/rbind option with any type, as runc reads it). */
export function isBindMount(m: { type?: string; options?: unknown }): boolean {
  return m.type === 'bind' || (Array.isArray(m.options) && m.options.some((o) => o === 'bind' || o === 'rbind'));
}
