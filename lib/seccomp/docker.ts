// Docker's default profile, as Podman ships it (Debian package
// golang-github-containers-common: /usr/share/containers/seccomp.json), and
// any profile file in that format (archMap, includes/excludes), turned into
// a plain runtime-spec profile the way Docker and Podman do it: the
// architectures of the native one's archMap entry, and only the rules whose
// arches, capabilities and minimum kernel match this container.
import { release } from 'node:os';
import type { LinuxSeccomp, LinuxSyscall } from './types.js';
import { nativeArch } from './default.js';

export const DOCKER_DEFAULT_PATH = '/usr/share/containers/seccomp.json';

interface Filter {
  caps?: string[];
  arches?: string[];
  minKernel?: string;
}
interface DockerSyscall extends LinuxSyscall {
  includes?: Filter;
  excludes?: Filter;
  comment?: string;
}
interface DockerProfile extends Omit<LinuxSeccomp, 'syscalls'> {
  archMap?: { architecture: string; subArchitectures?: string[] }[];
  syscalls?: DockerSyscall[];
}

/** Whether a parsed profile uses Docker's extensions. */
export function isDockerFormat(p: unknown): boolean {
  if (typeof p !== 'object' || p === null) return false;
  const o = p as DockerProfile;
  return (
    Array.isArray(o.archMap) || (Array.isArray(o.syscalls) && o.syscalls.some((s) => s && (s.includes || s.excludes)))
  );
}

/** Go's GOARCH names, which includes.arches/excludes.arches use. */
function goArch(): string {
  return (
    (
      {
        x64: 'amd64',
        arm64: 'arm64',
        ia32: '386',
        arm: 'arm',
        ppc64: 'ppc64le',
        s390x: 's390x',
        riscv64: 'riscv64',
      } as Record<string, string>
    )[process.arch] ?? process.arch
  );
}

function kernelAtLeast(min: string): boolean {
  const have = release()
    .split(/[.-]/)
    .map((x) => parseInt(x, 10));
  const want = min.split('.').map((x) => parseInt(x, 10));
  for (let i = 0; i < want.length; i++) {
    if ((have[i] ?? 0) !== want[i]) return (have[i] ?? 0) > want[i];
  }
  return true;
}

/** A Docker-format profile as runtime-spec, for a container with `caps` in its bounding set. */
export function fromDockerFormat(p: DockerProfile, caps: string[]): LinuxSeccomp {
  const native = nativeArch();
  const arch = goArch();
  const entry = p.archMap?.find((a) => a.architecture === native);
  const architectures = p.archMap
    ? entry
      ? [entry.architecture, ...(entry.subArchitectures ?? [])]
      : [native]
    : p.architectures;
  const has = (c: string) => caps.includes(c);
  const syscalls: LinuxSyscall[] = [];
  for (const s of p.syscalls ?? []) {
    const inc = s.includes ?? {},
      exc = s.excludes ?? {};
    if (inc.arches?.length && !inc.arches.includes(arch)) continue;
    if (exc.arches?.includes(arch)) continue;
    if (inc.caps?.length && !inc.caps.every(has)) continue;
    if (exc.caps?.some(has)) continue;
    if (inc.minKernel && !kernelAtLeast(inc.minKernel)) continue;
    const out: LinuxSyscall = { names: s.names, action: s.action };
    if (s.errnoRet !== undefined) out.errnoRet = s.errnoRet;
    if (s.args?.length) out.args = s.args;
    syscalls.push(out);
  }
  const r: LinuxSeccomp = { defaultAction: p.defaultAction, syscalls };
  if (p.defaultErrnoRet !== undefined) r.defaultErrnoRet = p.defaultErrnoRet;
  if (architectures) r.architectures = architectures;
  if (p.flags) r.flags = p.flags;
  return r;
}
