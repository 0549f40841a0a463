// Device rules for cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program, as runc
// (libcontainer/cgroups/devices/devicefilter.go) and crun assemble one by
// hand. The rules are the v1 devices controller's ("a", "c 1:3 rwm", in
// order, written to devices.allow or devices.deny), and the program decides
// what the v1 controller decides for the same list (security/device_cgroup.c).
// So the list is first reduced to v1's state, as runc's devices emulator does:
// a default and a set of exceptions keyed by (type, major, minor). An "a" rule
// sets the default and clears the exceptions. Any other rule whose verb is the
// default's (allow while allowing, deny while denying) takes its access bits
// off the exception with exactly that key; the other verb adds them to it. A
// wildcard exception is never split: "c 1:* rw" then "deny c 1:3 w" under a
// deny default leaves c 1:3 writable, on v1 and here alike (runc refuses that
// list instead). Then, as v1 checks an access:
//   default allow: denied when any exception matches the device and shares any
//     access bit with the request (O_RDWR asks rw: a "w" exception denies it);
//   default deny: allowed only when one exception matches the device and
//     holds every access bit asked for.
// The order of the exceptions does not matter.
//
// The context (struct bpf_cgroup_dev_ctx): u32 access_type = (access << 16)
// | type, u32 major, u32 minor; access bits mknod 1, read 2, write 4; type
// block 1, char 2. native/bpf_devices.cc loads and attaches the bytes.

export interface DeviceRule {
  allow: boolean;
  /** v1 rule text: "a", or "c|b MAJOR|*:MINOR|* ACCESS". */
  rule: string;
}

const ACCESS: Record<string, number> = { m: 1, r: 2, w: 4 };
const TYPE: Record<string, number> = { b: 1, c: 2 };

interface Parsed {
  allow: boolean;
  type: number | null;
  major: number | null;
  minor: number | null;
  access: number;
}

function parse(r: DeviceRule): Parsed {
  // The v1 controller reads any rule that starts with "a" as "a": all devices, all access.
  if (/^a( |$)/.test(r.rule)) return { allow: r.allow, type: null, major: null, minor: null, access: 7 };
  const m = /^([bc]) (\*|\d+):(\*|\d+) ([rwm]{1,3})$/.exec(r.rule);
  if (!m) throw new Error(`not a device rule: ${JSON.stringify(r.rule)}`);
  const num = (s: string) => (s === '*' ? null : Number(s));
  return {
    allow: r.allow,
    type: TYPE[m[1]],
    major: num(m[2]),
    minor: num(m[3]),
    access: [...m[4]].reduce((a, c) => a | ACCESS[c], 0),
  };
}

/** One struct bpf_insn: code, dst and src registers, 16-bit offset, 32-bit immediate. */
function insn(code: number, dst: number, src: number, off: number, imm: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(code, 0);
  b.writeUInt8(((src & 0xf) << 4) | (dst & 0xf), 1);
  b.writeInt16LE(off, 2);
  b.writeInt32LE(imm, 4);
  return b;
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_W = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND32_K = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_X = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const MOV32_K = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const JNE_K = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const JEQ_K = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const EXIT = 0x95; // BPF_JMP | BPF_EXIT

/**
 * The rules' meaning, as the v1 controller keeps it: a default and the
 * exceptions to it (each one's allow is the opposite of the default), one
 * per (type, major, minor), in the order first made.
 */
export function effectiveRules(rules: DeviceRule[]): { defaultAllow: boolean; exceptions: Parsed[] } {
  let defaultAllow = true; // a new v1 cgroup allows everything
  let exceptions: Parsed[] = [];
  for (const r of rules) {
    const p = parse(r);
    if (p.type === null) {
      defaultAllow = p.allow;
      exceptions = [];
      continue;
    }
    const i = exceptions.findIndex((e) => e.type === p.type && e.major === p.major && e.minor === p.minor);
    if (p.allow === defaultAllow) {
      // dev_exception_rm: only the exception with exactly this key loses the bits.
      if (i < 0) continue;
      const access = exceptions[i].access & ~p.access;
      if (access) exceptions[i] = { ...exceptions[i], access };
      else exceptions.splice(i, 1);
    } else if (i < 0) exceptions.push({ ...p, allow: !defaultAllow });
    else exceptions[i] = { ...exceptions[i], access: exceptions[i].access | p.access }; // dev_exception_add
  }
  return { defaultAllow, exceptions };
}

/** The program for RULES, as struct bpf_insn[] bytes. */
export function deviceProgram(rules: DeviceRule[]): Buffer {
  const { defaultAllow, exceptions } = effectiveRules(rules);
  const out: Buffer[] = [
    insn(LDX_W, 2, 1, 0, 0), // r2 = access_type
    insn(AND32_K, 2, 0, 0, 0xffff), // r2 = type
    insn(LDX_W, 3, 1, 0, 0),
    insn(RSH32_K, 3, 0, 0, 16), // r3 = access
    insn(LDX_W, 4, 1, 4, 0), // r4 = major
    insn(LDX_W, 5, 1, 8, 0), // r5 = minor
  ];
  for (const p of exceptions) {
    // Each test jumps past the rest of this block when it does not match.
    const tests: [number, number, number, number][] = []; // code, dst, src, imm
    if (p.type !== null) tests.push([JNE_K, 2, 0, p.type]);
    if (p.access !== 7) {
      tests.push([MOV32_X, 1, 3, 0]); // r1 = access asked for
      tests.push([AND32_K, 1, 0, p.access]); // r1 = the part of it the exception names
      if (defaultAllow)
        tests.push([JEQ_K, 1, 0, 0]); // a deny exception: no bit of the request in it
      else tests.push([JNE_X, 1, 3, 0]); // an allow exception: the request has a bit outside it
    }
    if (p.major !== null) tests.push([JNE_K, 4, 0, p.major]);
    if (p.minor !== null) tests.push([JNE_K, 5, 0, p.minor]);
    const len = tests.length + 2;
    tests.forEach(([code, dst, src, imm], i) => {
      const jump = code === JNE_K || code === JNE_X || code === JEQ_K;
      out.push(insn(code, dst, src, jump ? len - i - 1 : 0, imm));
    });
    out.push(insn(MOV32_K, 0, 0, 0, p.allow ? 1 : 0), insn(EXIT, 0, 0, 0, 0));
  }
  out.push(insn(MOV32_K, 0, 0, 0, defaultAllow ? 1 : 0), insn(EXIT, 0, 0, 0, 0));
  return Buffer.concat(out);
}
