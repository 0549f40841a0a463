// One container's cgroup: made in every hierarchy the caller may write to,
// limits written, processes added, killed or frozen as a whole, figures read
// at exit, removed when the container is. See hierarchy.ts for the host
// shapes and files.ts for what the limits become.
//
// Where it goes: `cgroupsPath` as runc's cgroupfs driver reads it (absolute:
// from each hierarchy's root; relative: under the caller's own cgroup), else
// `nodularity-<id>` under the caller's own cgroup, which is what a pilot in a
// batch slot wants (HTCondor's and Slurm's job cgroup, a systemd scope with
// Delegate=yes). A path never climbs out with "..".
import {
  accessSync,
  constants as fsc,
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmdirSync,
  writeSync,
} from 'node:fs';
import { constants as osc } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SpecError } from '../errors.js';
import { loadBinding } from '../native.js';
import { deviceProgram, type DeviceRule } from './bpf-devices.js';
import { resourceWrites } from './files.js';
import { hierarchies, processDirs, type Hierarchies } from './hierarchy.js';
import { runcStats, type RuncStats } from './stats.js';
import type { CgroupStats, LinuxResources } from './types.js';

/** The host could not give the container the cgroup it asked for. One line: what, where, why, what to do. */
export class CgroupError extends Error {
  readonly code?: string;
  readonly path?: string;
  readonly controller?: string;
  constructor(message: string, more: { code?: string; path?: string; controller?: string } = {}) {
    super(message);
    this.name = 'CgroupError';
    Object.assign(this, more);
  }
}

export interface CgroupOptions {
  /** runtime-spec linux.cgroupsPath. */
  path?: string;
  /** The container id, for the default path. */
  id: string;
  resources?: LinuxResources;
  /** The spec's linux.devices, allowed by the devices controller too. */
  devices?: { type: string; major: number; minor: number }[];
  /** For tests and callers that know better than /proc/self. */
  hierarchies?: Hierarchies;
}

function check(path: string): string[] {
  const parts = path.split('/').filter(Boolean);
  for (const p of parts)
    if (p === '.' || p === '..' || p.includes('\0'))
      throw new SpecError('/linux/cgroupsPath', `must not hold "${p}" components: ${JSON.stringify(path)}`);
  return parts;
}

function writeFile(file: string, value: string): void {
  const fd = openSync(file, fsc.O_WRONLY | fsc.O_NOFOLLOW);
  try {
    writeSync(fd, value);
  } finally {
    closeSync(fd);
  }
}

function readInt(file: string, key?: string): number | null {
  try {
    const text = readFileSync(file, 'utf8');
    if (key === undefined) return text.trim() === 'max' ? null : Number(text.trim());
    const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

const errCode = (e: unknown) => (e as NodeJS.ErrnoException).code;

/** Root may move processes anywhere; anyone else only into a cgroup whose cgroup.procs it may write. */
/** How many processes DIR's cgroup.procs lists (0 when it cannot be read: the join then fails as before). */
function populated(dir: string): number {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
}

function mayWrite(dir: string): boolean {
  if (process.geteuid!() === 0) return true;
  try {
    accessSync(join(dir, 'cgroup.procs'), fsc.W_OK);
    return true;
  } catch {
    return false;
  }
}

export class Cgroup {
  /** Every directory of the container's cgroup, one per hierarchy (v1 co-mounted controllers share one). */
  readonly dirs: string[] = [];
  /** The v2 directory, when the unified tree could be used. */
  readonly v2: string | null = null;
  /** v1 controller -> directory. */
  readonly v1 = new Map<string, string>();
  readonly warnings: string[] = [];
  /** Directories we made, deepest last: removed in reverse. */
  private readonly made: string[] = [];

  private constructor(private readonly h: Hierarchies) {}

  /**
   * Make the cgroup and write its limits. Atomic for the caller: on any
   * failure what was made is removed before the error is thrown.
   */
  static create(o: CgroupOptions): Cgroup {
    const h = o.hierarchies ?? hierarchies();
    const cg = new Cgroup(h);
    const rel = o.path ?? `nodularity-${o.id}`;
    const parts = check(rel);
    // Bad values are SpecErrors before anything is made, whoever may write where.
    if (o.resources) resourceWrites(o.resources, (c) => (h.v1.has(c) ? 1 : 2), o.devices ?? []);
    if (!parts.length)
      throw new SpecError('/linux/cgroupsPath', `must name a cgroup below the root: ${JSON.stringify(rel)}`);
    const base = (mount: string, own: string) => (rel.startsWith('/') ? mount : own);
    try {
      // v1 first: as root on a v1 or hybrid host these hold the limits.
      const seen = new Set<string>();
      for (const [ctl, hier] of h.v1) {
        if (seen.has(hier.mount)) {
          cg.v1.set(ctl, cg.v1.get(hier.controllers[0])!);
          continue;
        }
        const dir = cg.mkdirs(base(hier.mount, hier.own), parts, ctl, o.path === undefined);
        if (!dir) continue; // not ours to write (unprivileged on v1): that controller is simply unavailable
        seen.add(hier.mount);
        cg.dirs.push(dir);
        for (const c of hier.controllers) cg.v1.set(c, dir);
        if (hier.controllers.includes('cpuset')) cg.inheritCpuset(dir);
      }
      if (h.v2) {
        const dir = cg.mkdirs(base(h.v2.mount, h.v2.own), parts, '', o.path === undefined);
        if (dir) {
          (cg as { v2: string | null }).v2 = dir;
          cg.dirs.push(dir);
        }
      }
      if (!cg.dirs.length)
        throw new CgroupError(
          `no cgroup hierarchy is writable for ${rel} (own v2 cgroup ${h.v2?.own ?? 'none'}): run as root, or inside a delegated subtree, e.g. \`systemd-run --user --scope -p Delegate=yes ...\``,
          { code: 'EACCES', path: rel },
        );
      if (o.resources) cg.apply(o.resources, o.devices ?? []);
      return cg;
    } catch (e) {
      cg.removeMade();
      throw e;
    }
  }

  /** mkdir each component under `from`; null when the first one we would make is not ours to make (EACCES/EROFS). */
  private mkdirs(from: string, parts: string[], controller: string, fresh: boolean): string | null {
    let dir = from;
    for (const [i, p] of parts.entries()) {
      dir = join(dir, p);
      try {
        mkdirSync(dir, { mode: 0o755 });
        this.made.push(dir);
      } catch (e) {
        const code = errCode(e);
        // A name we chose must be ours alone: joining another container's
        // cgroup would share its limits, and our destroy would kill it.
        if (code === 'EEXIST' && fresh && i === parts.length - 1)
          throw new CgroupError(`the cgroup ${dir} already exists (another container of the same name?)`, {
            code,
            path: dir,
            controller,
          });
        if (code === 'EEXIST' && i === parts.length - 1) {
          // A cgroupsPath naming an existing cgroup is joined only while it
          // is empty: one that holds processes is not the container's own,
          // and its limits, kill --all, pause and our destroy would reach
          // them (runc refuses it too).
          const n = populated(dir);
          if (n)
            throw new CgroupError(
              `the cgroup ${dir} already holds ${n} process(es): a container's cgroup must be its own`,
              { code: 'EBUSY', path: dir, controller },
            );
          continue;
        }
        if (code === 'EEXIST') continue;
        if ((code === 'EACCES' || code === 'EPERM' || code === 'EROFS') && !this.made.some((m) => dir.startsWith(m)))
          return null;
        throw new CgroupError(`cannot make the cgroup ${dir}${controller ? ` (${controller})` : ''}: ${code}`, {
          code,
          path: dir,
          controller,
        });
      }
    }
    return dir;
  }

  /** A new v1 cpuset cgroup has no cpus and no mems, and takes no process until it has: copy them down. */
  private inheritCpuset(dir: string): void {
    const chain: string[] = [];
    for (let d = dir; this.made.includes(d); d = join(d, '..')) chain.unshift(d);
    for (const d of chain)
      for (const f of ['cpuset.cpus', 'cpuset.mems']) {
        const mine = readFileSync(join(d, f), 'utf8').trim();
        if (!mine) writeFile(join(d, f), readFileSync(join(d, '..', f), 'utf8').trim() || '\n');
      }
  }

  private apply(r: LinuxResources, nodes: { type: string; major: number; minor: number }[]): void {
    const h = this.h;
    const versionOf = (ctl: string): 1 | 2 => (this.v1.has(ctl) ? 1 : 2);
    const { writes, warnings, bpfDevices } = resourceWrites(r, versionOf, nodes);
    this.warnings.push(...warnings);
    if (bpfDevices.length) this.attachDevices(bpfDevices);
    // v2: the controllers the writes need, enabled from our own cgroup down.
    const needV2 = new Set(writes.filter((w) => w.controller && !this.v1.has(w.controller)).map((w) => w.controller));
    if (needV2.size) this.enableV2(needV2, h);
    for (const wr of writes) {
      const dir = wr.controller && this.v1.has(wr.controller) ? this.v1.get(wr.controller)! : this.v2;
      if (!dir)
        throw new CgroupError(
          `${wr.pointer}: the ${wr.controller} controller is not available to this process (no v1 hierarchy and no v2 tree we may write)`,
          { controller: wr.controller },
        );
      try {
        writeFile(join(dir, wr.file), wr.value);
      } catch (e) {
        const code = errCode(e);
        throw new CgroupError(
          code === 'ENOENT'
            ? `${wr.pointer}: this host has no ${wr.file} (the ${wr.controller || 'cgroup'} controller lacks it)`
            : `${wr.pointer}: writing ${JSON.stringify(wr.value)} to ${join(dir, wr.file)}: ${code}`,
          { code, path: join(dir, wr.file), controller: wr.controller },
        );
      }
    }
  }

  /**
   * cgroup v2 device rules: a BPF_PROG_TYPE_CGROUP_DEVICE program attached
   * to our v2 directory (BPF_F_ALLOW_MULTI: the parents' programs still
   * run). Loading one needs CAP_BPF or CAP_SYS_ADMIN: an unprivileged caller
   * in a delegated subtree gets a warning instead (its container's /dev holds
   * only the nodes the spec lists, every other mount is nodev, and it cannot
   * make device nodes), as rootless runc and crun go without.
   */
  private attachDevices(rules: DeviceRule[]): void {
    if (!this.v2)
      throw new CgroupError(
        '/linux/resources/devices: device rules need the v1 devices controller or a cgroup v2 directory, and this process may write neither',
        { controller: 'devices' },
      );
    const r = loadBinding().attachDeviceProgram(this.v2, deviceProgram(rules));
    if (!r.errno) return;
    const code = Object.entries(osc.errno).find(([, n]) => n === r.errno)?.[0] ?? `errno ${r.errno}`;
    if ((code === 'EPERM' || code === 'EACCES') && process.geteuid!() !== 0 && r.step === 'load') {
      this.warnings.push(
        `linux.resources.devices: not applied (loading a cgroup v2 device program needs CAP_BPF or CAP_SYS_ADMIN: ${code})`,
      );
      return;
    }
    throw new CgroupError(
      `/linux/resources/devices: cannot ${r.step} the device program for ${this.v2}: ${code}${r.log ? `\n${r.log.trim()}` : ''}`,
      { code, path: this.v2, controller: 'devices' },
    );
  }

  private enableV2(needed: Set<string>, h: Hierarchies): void {
    const v2 = h.v2;
    const missing = [...needed].filter((c) => !v2?.controllers.has(c));
    if (!v2 || !this.v2 || missing.length)
      throw new CgroupError(
        `the ${missing.join(', ') || [...needed].join(', ')} controller${missing.length > 1 ? 's are' : ' is'} not available on this host's cgroup v2 tree`,
        { controller: missing[0] },
      );
    // Every ancestor of our directory from the tree's root must pass the controllers down.
    const chain: string[] = [];
    for (let d = join(this.v2, '..'); d.startsWith(v2.mount); d = join(d, '..')) {
      chain.unshift(d);
      if (d === v2.mount) break;
    }
    for (const d of chain) {
      const have = new Set(readFileSync(join(d, 'cgroup.subtree_control'), 'utf8').split(/\s+/).filter(Boolean));
      const add = [...needed].filter((c) => !have.has(c));
      if (!add.length) continue;
      try {
        writeFile(join(d, 'cgroup.subtree_control'), add.map((c) => `+${c}`).join(' '));
      } catch (e) {
        const code = errCode(e);
        throw new CgroupError(
          `cannot enable ${add.join(', ')} below ${d}: ${code}${code === 'EBUSY' ? ' (it holds processes: cgroup v2 lets only leaves hold them; start the launcher in a leaf cgroup of its own)' : ''}`,
          { code, path: d, controller: add[0] },
        );
      }
    }
  }

  /** Put PID in the cgroup, in every hierarchy. */
  addProcess(pid: number): void {
    for (const d of this.dirs) {
      try {
        writeFile(join(d, 'cgroup.procs'), String(pid));
      } catch (e) {
        throw new CgroupError(`cannot move process ${pid} into ${d}: ${errCode(e)}`, { code: errCode(e), path: d });
      }
    }
  }

  /** The pids in the cgroup (the v2 tree when we have one, else the first v1 hierarchy). */
  pids(): number[] {
    const dir = this.v2 ?? this.v1.get('pids') ?? this.v1.get('freezer') ?? this.dirs[0];
    try {
      return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  }

  /**
   * SIGKILL every process, including those that left their parent's tree
   * (a double fork): cgroup.kill on v2, else freeze, kill each, thaw, so that
   * nothing forks between the read of cgroup.procs and the kills.
   */
  async killAll(signal: NodeJS.Signals | number = 'SIGKILL'): Promise<void> {
    if (this.v2 && signal === 'SIGKILL') {
      try {
        writeFile(join(this.v2, 'cgroup.kill'), '1');
        return;
      } catch (e) {
        if (errCode(e) !== 'ENOENT') throw e; // before 5.14: no cgroup.kill
      }
    }
    // A paused container stays paused for any signal but SIGKILL, which
    // takes effect only once its processes thaw (v1 freezer).
    const paused = this.frozen();
    const frozen =
      paused ||
      (await this.freeze().then(
        () => true,
        () => false,
      ));
    try {
      for (const pid of this.pids()) {
        try {
          process.kill(pid, signal);
        } catch {
          /* gone */
        }
      }
    } finally {
      if (frozen && (!paused || signal === 'SIGKILL' || signal === 9)) await this.thaw();
    }
  }

  /**
   * Change the limits of a live cgroup (`oci update`): RESOURCES as
   * linux.resources, only the fields given are written. Device rules are not
   * changed here (as runc's update): they return with a warning.
   */
  update(r: LinuxResources): string[] {
    const { devices, ...rest } = r;
    this.warnings.length = 0;
    this.apply(rest, []);
    if (devices?.length) this.warnings.push('linux.resources.devices: not changed by update (as runc)');
    return [...this.warnings];
  }

  /** The figures in runc's stats form (`oci events --stats`). */
  runcStats(): RuncStats {
    return runcStats(this.v1, this.v2);
  }

  async freeze(): Promise<void> {
    if (this.v2) {
      writeFile(join(this.v2, 'cgroup.freeze'), '1');
      await this.waitFor(() => /^frozen 1$/m.test(readFileSync(join(this.v2!, 'cgroup.events'), 'utf8')));
      return;
    }
    const f = this.v1.get('freezer');
    if (!f) throw new CgroupError('freezing needs the freezer controller (v1) or cgroup v2', { controller: 'freezer' });
    writeFile(join(f, 'freezer.state'), 'FROZEN');
    await this.waitFor(() => readFileSync(join(f, 'freezer.state'), 'utf8').trim() === 'FROZEN');
  }

  /** Whether the cgroup is frozen now (v2 cgroup.events, else the v1 freezer); false when it cannot say. */
  frozen(): boolean {
    try {
      if (this.v2) return /^frozen 1$/m.test(readFileSync(join(this.v2, 'cgroup.events'), 'utf8'));
      const f = this.v1.get('freezer');
      return f ? readFileSync(join(f, 'freezer.state'), 'utf8').trim() === 'FROZEN' : false;
    } catch {
      return false;
    }
  }

  async thaw(): Promise<void> {
    if (this.v2) writeFile(join(this.v2, 'cgroup.freeze'), '0');
    else {
      const f = this.v1.get('freezer');
      if (f) writeFile(join(f, 'freezer.state'), 'THAWED');
    }
  }

  private async waitFor(done: () => boolean, ms = 2000): Promise<void> {
    for (let t = 0; !done(); t += 5) {
      if (t > ms) throw new CgroupError(`the cgroup did not settle within ${ms} ms`);
      await sleep(5);
    }
  }

  stats(): CgroupStats {
    const mem = this.v1.get('memory');
    const cpu = this.v1.get('cpuacct');
    const pids = this.v1.get('pids');
    const v2 = this.v2;
    const on = (d: string | null | undefined, f: string, key?: string) => (d ? readInt(join(d, f), key) : null);
    const cpuNs = on(cpu, 'cpuacct.usage');
    return {
      memoryPeak: mem ? on(mem, 'memory.max_usage_in_bytes') : on(v2, 'memory.peak'),
      memoryCurrent: mem ? on(mem, 'memory.usage_in_bytes') : on(v2, 'memory.current'),
      oomKills: mem ? on(mem, 'memory.oom_control', 'oom_kill') : on(v2, 'memory.events', 'oom_kill'),
      cpuUsageMicros: cpu ? (cpuNs === null ? null : Math.round(cpuNs / 1000)) : on(v2, 'cpu.stat', 'usage_usec'),
      pids: pids ? on(pids, 'pids.current') : on(v2, 'pids.current'),
    };
  }

  /**
   * Kill what is left, wait for the cgroup to empty, remove what we made.
   * Directories that existed before (a cgroupsPath someone else made) stay.
   */
  async destroy(): Promise<void> {
    if (this.pids().length) {
      await this.killAll('SIGKILL');
      await this.waitFor(() => this.pids().length === 0).catch(() => {});
    }
    // rmdir can see EBUSY for a moment after the last process is reaped.
    for (let attempt = 0; ; attempt++) {
      try {
        this.removeMade();
        return;
      } catch (e) {
        if (errCode(e) !== 'EBUSY' || attempt > 100) throw e;
        await sleep(10);
      }
    }
  }

  /** The directories this object made (parents of an absolute path included), to record for a later destroy. */
  get created(): string[] {
    return [...this.made];
  }

  /**
   * The cgroup another process made (`oci create` recorded `dirs` and
   * `created` in the container's state): for kill, stats and destroy. A
   * directory that is not under one of this host's cgroup mounts, or climbs
   * with "..", is refused: the record may come from a file another user wrote.
   */
  static fromDirs(dirs: string[], created: string[] = dirs, h: Hierarchies = hierarchies()): Cgroup {
    const cg = new Cgroup(h);
    const under = (d: string, mount: string) => d.startsWith(`${mount}/`) && !d.split('/').includes('..');
    for (const d of dirs) {
      const v1 = [...h.v1.values()].find((x) => under(d, x.mount));
      if (v1) {
        cg.dirs.push(d);
        for (const c of v1.controllers) cg.v1.set(c, d);
      } else if (h.v2 && under(d, h.v2.mount)) {
        cg.dirs.push(d);
        (cg as { v2: string | null }).v2 = d;
      } else throw new CgroupError(`${d} is not a cgroup directory of this host`, { path: d });
    }
    for (const d of created) {
      if (!dirs.some((x) => x === d || x.startsWith(`${d}/`)))
        throw new CgroupError(`${d} is not one of the container's cgroup directories or their parents`, { path: d });
      cg.made.push(d);
    }
    return cg;
  }

  /**
   * The cgroup process PID is in (an exec joins its container's), in every
   * hierarchy where it is not ours: an exec'd process put there (addProcess)
   * before its payload runs is under the container's limits, and kill --all,
   * delete and pause reach it. Null when PID shares all of our cgroups (a
   * container without one of its own): nothing to move. Nothing is made or
   * removed through it. For a caller other than root, a cgroup it may not
   * write is left out: not one it made for a container (those are its own,
   * in a delegated subtree), but e.g. the login session scope the target was
   * started from, which an exec from another session must not fail on.
   */
  static ofProcess(pid: number, h: Hierarchies = hierarchies()): Cgroup | null {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    } catch (e) {
      throw new CgroupError(`cannot read the cgroups of process ${pid}: ${errCode(e)}`, { code: errCode(e) });
    }
    const theirs = processDirs(text, h);
    const cg = new Cgroup(h);
    const seen = new Set<string>();
    for (const x of h.v1.values()) {
      if (seen.has(x.mount)) continue;
      seen.add(x.mount);
      const d = theirs.v1.find((v) => v === x.mount || v.startsWith(`${x.mount}/`));
      if (!d || d === x.own || !mayWrite(d)) continue;
      cg.dirs.push(d);
      for (const c of x.controllers) cg.v1.set(c, d);
    }
    if (h.v2 && theirs.v2 && theirs.v2 !== h.v2.own && mayWrite(theirs.v2)) {
      cg.dirs.push(theirs.v2);
      (cg as { v2: string | null }).v2 = theirs.v2;
    }
    return cg.dirs.length ? cg : null;
  }

  /** Remove what we made now; only for a cgroup that never held a process (a launch that failed before clone). */
  removeEmpty(): void {
    this.removeMade();
  }

  private removeMade(): void {
    while (this.made.length) {
      const d = this.made[this.made.length - 1];
      try {
        rmdirSync(d);
      } catch (e) {
        if (errCode(e) !== 'ENOENT') throw e;
      }
      this.made.pop();
    }
  }
}
