// Stage "spec": the pieces into one ordinary OCI Spec (createSpec's defaults,
// a read-only root unless a writable overlay is asked for, the mounts in
// order: host /etc files, the default and user binds, GPU binds), and the
// spawn options that go with it. What the verbs launch is this Spec, the
// same model an OCI bundle is read into.
import type { SpawnOptions } from '../../container.js';
import { createSpec } from '../../oci/defaults.js';
import type { Mount, Spec } from '../../oci/spec.js';
import type { IdentityPlan } from './identity.js';
import type { CheckedOptions } from './options.js';
import type { ExecOptions } from './types.js';

export interface SpecInput {
  rootfs: string;
  args: string[];
  cwd: string;
  uid: number;
  gid: number;
  /** In mount order (the session files are added last, by session.ts). */
  mounts: Mount[];
  identity: IdentityPlan;
  noMount: ReadonlySet<string>;
  overlayDir?: { dir: string; readonly: boolean };
}

/** The launch's Spec; its process.env is filled in once the image's scripts have run. */
export function assembleSpec(o: ExecOptions, i: SpecInput): Spec {
  const spec = createSpec({
    rootfs: i.rootfs,
    args: i.args,
    cwd: i.cwd,
    uid: i.uid,
    gid: i.gid,
    env: [],
    network: o.network ?? 'host',
    hostname: o.hostname,
    readonly: !o.writableTmpfs && !(i.overlayDir && !i.overlayDir.readonly),
    mounts: i.mounts,
    security: o.security,
  });
  if (i.noMount.has('sys')) spec.mounts = spec.mounts!.filter((m) => m.destination !== '/sys');
  if (o.resources) spec.linux!.resources = o.resources;
  if (i.identity.uidMappings) spec.linux!.uidMappings = i.identity.uidMappings;
  if (i.identity.gidMappings) spec.linux!.gidMappings = i.identity.gidMappings;
  const caps = i.identity.capabilities;
  if (caps) spec.process!.capabilities = { bounding: caps, effective: caps, permitted: caps };
  if (o.hostname === undefined) delete spec.hostname;
  if (o.terminal) {
    spec.process!.terminal = true;
    if (typeof o.terminal === 'object')
      spec.process!.consoleSize = { height: o.terminal.rows, width: o.terminal.columns };
  }
  return spec;
}

/** The spawn options of the launch: the caller's, an overlay root when needed, the init by default. */
export function spawnOptionsFor(o: ExecOptions, c: Pick<CheckedOptions, 'overlaySize' | 'overlayDir'>): SpawnOptions {
  return {
    stdio: o.stdio,
    signal: o.signal,
    timeout: o.timeout,
    killSignal: o.killSignal,
    detached: o.detached,
    rootOverlay: o.writableTmpfs ? 'always' : 'auto',
    init: o.init ?? true,
    ...(c.overlaySize ? { overlaySize: c.overlaySize } : {}),
    ...(c.overlayDir ? { overlayDir: c.overlayDir } : {}),
    allowHostProc: o.allowHostProc,
    allowImageDevices: o.allowImageDevices,
    forceKillAfterDelay: o.forceKillAfterDelay,
  };
}
