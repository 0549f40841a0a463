// nodularity's default seccomp profile: everything allowed but a short list
// of syscalls a payload has no business with and that are common kernel
// attack surface (EPERM, as if the capability were missing; ENOSYS for the
// keyring calls), personality(2)
// limited to its harmless values, and only the native ABI (a syscall through
// another one, int 0x80 or x32 on x86_64, kills the process). docs/seccomp.md
// gives the reason for each entry; keep the two in step.
//
// An allow-list (Docker's) would be tighter, but it is what breaks nested
// containers and new syscalls; this list keeps `unshare -Urm`, Apptainer and
// nodularity itself working inside.
import { builtInProfiles } from './validate.js';
import type { LinuxSeccomp, LinuxSeccompArg, LinuxSyscall } from './types.js';

/** [syscalls, reason, errno (default EPERM)]. */
export const DEFAULT_BLOCKED: readonly (readonly [readonly string[], string, number?])[] = [
  [['kexec_load', 'kexec_file_load'], 'replace the running kernel'],
  [['init_module', 'finit_module', 'delete_module'], 'load or unload kernel code'],
  [['bpf'], 'eBPF programs: the verifier and JIT are a steady source of kernel exploits'],
  [['perf_event_open'], 'performance counters: a large driver surface and a source of kernel address leaks'],
  [['userfaultfd'], 'lets a process stall a kernel fault at will, the classic way to win kernel races'],
  [
    ['io_uring_setup', 'io_uring_enter', 'io_uring_register'],
    'io_uring: a second syscall interface with a long record of privilege escalations (disabled by ChromeOS, Android and Google production)',
  ],
  [['open_by_handle_at'], 'opens files by handle, outside the container\'s mount tree ("shocker" breakout)'],
  // ENOSYS, as Docker's profile answers: a kernel without keys. runc, crun
  // and nodularity itself join a session keyring when they start a
  // container and go on without one on ENOSYS, not on EPERM: a nested
  // runtime keeps working.
  [
    ['keyctl', 'add_key', 'request_key'],
    "the kernel keyring is not namespaced; the container already has its own session keyring, joined before the filter. ENOSYS (a kernel without keys), not EPERM, as Docker's profile answers: runtimes nested inside (runc, crun, nodularity) join a session keyring when they start a container and carry on without one on ENOSYS, but fail on EPERM",
    38,
  ],
  [['iopl', 'ioperm'], 'raw I/O port access'],
  [['swapon', 'swapoff'], "the host's swap"],
  [['reboot'], 'reboot or halt (in a PID namespace it would only kill the container, but no payload needs it)'],
  [['acct'], "process accounting to a file of the caller's choosing"],
  [
    ['settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex'],
    'the clock is not namespaced (this also refuses the read-only adjtimex/ntp_gettime queries)',
  ],
  [['quotactl', 'quotactl_fd'], 'disk quotas of host file systems'],
  [['lookup_dcookie'], 'an obsolete profiling interface that leaks kernel information'],
  [['uselib'], 'the obsolete a.out library loader'],
  [['nfsservctl'], 'the removed kernel NFS server interface'],
  [['vm86', 'vm86old'], 'virtual 8086 mode (i386 only: also blocked by the ABI check)'],
];

/** personality(2) values allowed: PER_LINUX, PER_LINUX32, UNAME26, both, and the 0xffffffff query. */
export const SAFE_PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

/**
 * personality(2) with anything but SAFE_PERSONALITIES gets EPERM.
 * libseccomp cannot AND two tests of one argument, so the complement is a
 * union of single masked tests ("bit b set and bit c clear"), few because
 * each costs filter instructions (load time in every launch):
 *  - the 30 bits B other than 3 and 17 in a cycle, b -> next(b): refuse
 *    "b set, next(b) clear". None of these holds for a safe value (they
 *    have no B bit set, or, 0xffffffff, all). A value they all miss has its
 *    B bits closed under next(): none (then it is 0, 8, 0x20000 or 0x20008,
 *    safe) or all of them;
 *  - of those all-B values, 0xffffffff is safe and the other three have bit
 *    3 or bit 17 clear: refuse "31 set, 3 clear" and "31 set, 17 clear";
 *  - above 32 bits (the kernel takes an unsigned int): refuse "> 0xffffffff".
 * A test checks this against the set itself.
 */
export function personalityRules(): LinuxSyscall[] {
  const rule = (arg: LinuxSeccompArg): LinuxSyscall => ({
    names: ['personality'],
    action: 'SCMP_ACT_ERRNO',
    errnoRet: 1,
    args: [arg],
  });
  const masked = (set: number, clear: number) =>
    rule({ index: 0, value: 2 ** set + 2 ** clear, valueTwo: 2 ** set, op: 'SCMP_CMP_MASKED_EQ' });
  const cycle = [...Array(32).keys()].filter((b) => b !== 3 && b !== 17);
  return [
    rule({ index: 0, value: 0xffffffff, op: 'SCMP_CMP_GT' }),
    ...cycle.map((b, i) => masked(b, cycle[(i + 1) % cycle.length])),
    masked(31, 3),
    masked(31, 17),
  ];
}

/** The SCMP_ARCH_* name of the architecture Node runs on. */
export function nativeArch(): string {
  const m: Record<string, string> = {
    x64: 'SCMP_ARCH_X86_64',
    arm64: 'SCMP_ARCH_AARCH64',
    ia32: 'SCMP_ARCH_X86',
    arm: 'SCMP_ARCH_ARM',
    ppc64: 'SCMP_ARCH_PPC64LE',
    s390x: 'SCMP_ARCH_S390X',
    riscv64: 'SCMP_ARCH_RISCV64',
    loong64: 'SCMP_ARCH_LOONGARCH64',
  };
  const a = m[process.arch];
  if (!a) throw new Error(`no seccomp architecture known for ${process.arch}`);
  return a;
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** Mark a profile as built in: frozen, validated and compiled once. */
export function builtIn(p: LinuxSeccomp): LinuxSeccomp {
  deepFreeze(p);
  builtInProfiles.add(p);
  return p;
}

const cache = new Map<string, LinuxSeccomp>();

/**
 * The default profile. `architectures` adds ABIs besides the native one
 * (e.g. ['SCMP_ARCH_X86'] to run i386 binaries on x86_64) with the same rules.
 */
export function defaultSeccompProfile(architectures: string[] = []): LinuxSeccomp {
  const arches = [nativeArch(), ...architectures.filter((a) => a !== nativeArch())];
  const key = arches.join(',');
  let p = cache.get(key);
  if (!p) {
    p = builtIn({
      defaultAction: 'SCMP_ACT_ALLOW',
      architectures: arches,
      syscalls: [
        ...[...new Set(DEFAULT_BLOCKED.map(([, , e]) => e ?? 1))].map((errnoRet): LinuxSyscall => ({
          names: DEFAULT_BLOCKED.filter(([, , e]) => (e ?? 1) === errnoRet).flatMap(([names]) => names),
          action: 'SCMP_ACT_ERRNO',
          errnoRet,
        })),
        ...personalityRules(),
      ],
    });
    cache.set(key, p);
  }
  return p;
}
