// cgroup v2 device rules decide what cgroup v1 decides (review finding 4).
// Two things written here from their sources, apart from lib/cgroups/bpf-devices.ts:
// - v1Model: the v1 devices controller (security/device_cgroup.c): "a" sets the
//   default and empties the exception list; any other rule adds its access to the
//   exception with exactly its (type, major, minor) when its verb is not the
//   default's (dev_exception_add), else takes its access off that exception
//   (dev_exception_rm). A check with default allow fails when any matching
//   exception shares a bit with the access (match_exception_partial); with default
//   deny it passes only when one matching exception holds all of it (match_exception).
// - run: an interpreter of the few eBPF instructions the program may use, over a
//   struct bpf_cgroup_dev_ctx; it throws on anything else.
// The table's decisions are written by hand and checked against the model, then the
// program is checked against the table, and against the model on random rule lists.
import t from 'tap';
import { deviceProgram, type DeviceRule } from '../../lib/cgroups/bpf-devices.js';

type Dev = 'b' | 'c';
const BITS: Record<string, number> = { m: 1, r: 2, w: 4 };
const bits = (s: string) => [...s].reduce((a, c) => a | BITS[c], 0);

function v1Model(rules: DeviceRule[]): (type: Dev, major: number, minor: number, access: string) => boolean {
  let allowAll = true;
  let ex: { type: Dev; major: string; minor: string; access: number }[] = [];
  for (const { allow, rule } of rules) {
    if (rule[0] === 'a') {
      allowAll = allow;
      ex = [];
      continue;
    }
    const [type, mm, acc] = rule.split(' ');
    const [major, minor] = mm.split(':');
    const same = ex.find((e) => e.type === type && e.major === major && e.minor === minor);
    if (allow !== allowAll) {
      if (same) same.access |= bits(acc);
      else ex.push({ type: type as Dev, major, minor, access: bits(acc) });
    } else if (same) {
      same.access &= ~bits(acc);
      if (!same.access) ex = ex.filter((e) => e !== same);
    }
  }
  return (type, major, minor, access) => {
    const a = bits(access);
    const matching = ex.filter(
      (e) =>
        e.type === type &&
        (e.major === '*' || Number(e.major) === major) &&
        (e.minor === '*' || Number(e.minor) === minor),
    );
    if (allowAll) return !matching.some((e) => (e.access & a) !== 0);
    return matching.some((e) => (a & ~e.access) === 0);
  };
}

/** Run PROG on the context (access << 16 | type, major, minor): the value it returns, 1 allow, 0 deny. */
function run(prog: Buffer, type: Dev, major: number, minor: number, access: string): number {
  const ctx = [(bits(access) << 16) | (type === 'b' ? 1 : 2), major, minor];
  const r = new Array<number>(11).fill(0);
  for (let pc = 0; pc < prog.length / 8; pc++) {
    const code = prog.readUInt8(pc * 8);
    const dst = prog.readUInt8(pc * 8 + 1) & 0xf;
    const src = prog.readUInt8(pc * 8 + 1) >> 4;
    const off = prog.readInt16LE(pc * 8 + 2);
    const imm = prog.readInt32LE(pc * 8 + 4) >>> 0;
    switch (code) {
      case 0x61: // ldx w: only from the context (r1), at its three fields
        if (src !== 1 || off % 4 || off < 0 || off > 8) throw new Error(`pc ${pc}: load ${src}+${off}`);
        r[dst] = ctx[off / 4];
        break;
      case 0x54:
        r[dst] = (r[dst] & imm) >>> 0;
        break;
      case 0x74:
        r[dst] = r[dst] >>> imm;
        break;
      case 0xbc:
        r[dst] = r[src];
        break;
      case 0xb4:
        r[dst] = imm;
        break;
      case 0x15:
      case 0x55:
      case 0x5d: {
        if (off < 0) throw new Error(`pc ${pc}: backward jump`);
        const b = code === 0x5d ? r[src] : imm;
        if (code === 0x15 ? r[dst] === b : r[dst] !== b) pc += off;
        break;
      }
      case 0x95:
        return r[0];
      default:
        throw new Error(`pc ${pc}: opcode 0x${code.toString(16)} not expected`);
    }
  }
  throw new Error('ran off the end');
}

const A = (allow: boolean) => ({ allow, rule: 'a' });
const allow = (rule: string) => ({ allow: true, rule });
const deny = (rule: string) => ({ allow: false, rule });
type Ask = [Dev, number, number, string, boolean];
const TABLE: [string, DeviceRule[], Ask[]][] = [
  [
    'no rules: v1 allows all',
    [],
    [
      ['c', 1, 3, 'rwm', true],
      ['b', 8, 0, 'r', true],
    ],
  ],
  [
    'allow all but writing c 1:3: a request with w in it is denied (O_RDWR too)',
    [A(true), deny('c 1:3 w')],
    [
      ['c', 1, 3, 'r', true],
      ['c', 1, 3, 'w', false],
      ['c', 1, 3, 'rw', false],
      ['c', 1, 3, 'm', true],
      ['c', 1, 5, 'rw', true],
    ],
  ],
  [
    'deny all, allow c 1:3 rw, then deny c 1:3 w: read is left',
    [A(false), allow('c 1:3 rw'), deny('c 1:3 w')],
    [
      ['c', 1, 3, 'r', true],
      ['c', 1, 3, 'rw', false],
      ['c', 1, 3, 'w', false],
      ['c', 1, 5, 'r', false],
    ],
  ],
  [
    'deny all: two allow exceptions for c 1:3 merge into one',
    [A(false), allow('c 1:3 r'), allow('c 1:3 w')],
    [
      ['c', 1, 3, 'rw', true],
      ['c', 1, 3, 'm', false],
    ],
  ],
  [
    'deny all: rw must be held by one exception, not by two that match',
    [A(false), allow('c 1:* r'), allow('c *:3 w')],
    [
      ['c', 1, 3, 'r', true],
      ['c', 1, 3, 'w', true],
      ['c', 1, 3, 'rw', false],
      ['c', 2, 3, 'r', false],
    ],
  ],
  [
    'deny all: a deny does not split a wildcard allow (v1 keeps c 1:3 writable)',
    [A(false), allow('c 1:* rw'), deny('c 1:3 w')],
    [
      ['c', 1, 3, 'rw', true],
      ['c', 1, 3, 'm', false],
    ],
  ],
  [
    'allow all: an allow does not split a wildcard deny',
    [A(true), deny('c 1:* w'), allow('c 1:3 w')],
    [
      ['c', 1, 3, 'w', false],
      ['c', 1, 3, 'r', true],
    ],
  ],
  [
    'allow all: allow c 1:3 w takes w off the deny c 1:3 rw, r stays denied',
    [A(true), deny('c 1:3 rw'), allow('c 1:3 w')],
    [
      ['c', 1, 3, 'w', true],
      ['c', 1, 3, 'r', false],
      ['c', 1, 3, 'rw', false],
    ],
  ],
  [
    'an "a" rule forgets what came before',
    [allow('c 1:3 rw'), A(false), allow('c 1:5 rwm'), deny('c 1:5 w')],
    [
      ['c', 1, 3, 'r', false],
      ['c', 1, 5, 'rm', true],
      ['c', 1, 5, 'w', false],
      ['c', 1, 5, 'rw', false],
    ],
  ],
  ['allow all, deny c 1:3 w, then deny all', [A(true), deny('c 1:3 w'), A(false)], [['c', 1, 5, 'r', false]]],
  [
    'types are apart: b 8:* rwm denied, c 8:1 allowed; m of any block node allowed',
    [A(true), deny('b 8:* rwm')],
    [
      ['b', 8, 1, 'r', false],
      ['b', 8, 1, 'm', false],
      ['c', 8, 1, 'r', true],
    ],
  ],
  [
    'deny all, b *:* m: mknod of block nodes only',
    [A(false), allow('b *:* m')],
    [
      ['b', 8, 0, 'm', true],
      ['c', 8, 0, 'm', false],
      ['b', 8, 0, 'rm', false],
    ],
  ],
];

t.test('hand-written decisions: the v1 model agrees, and so does the program', async (t) => {
  for (const [name, rules, asks] of TABLE) {
    const model = v1Model(rules);
    const prog = deviceProgram(rules);
    for (const [type, major, minor, access, want] of asks) {
      const what = `${name}: ${type} ${major}:${minor} ${access}`;
      t.equal(model(type, major, minor, access), want, `model: ${what}`);
      t.equal(run(prog, type, major, minor, access) === 1, want, `program: ${what}`);
    }
  }
});

t.test('random rule lists: the program decides what v1 decides, for every request', async (t) => {
  // A small universe, so that keys collide often; a fixed seed, so that a failure repeats.
  let seed = 0x5eed;
  const rnd = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const nums = ['1', '2', '*'];
  const accs = ['r', 'w', 'm', 'rw', 'rm', 'wm', 'rwm'];
  const asks = accs.flatMap((a) =>
    (['b', 'c'] as Dev[]).flatMap((ty) => [1, 2, 3].flatMap((ma) => [1, 2, 3].map((mi) => [ty, ma, mi, a] as const))),
  );
  let checked = 0;
  const bad: string[] = [];
  for (let i = 0; i < 3000 && bad.length < 5; i++) {
    const rules: DeviceRule[] = [];
    for (let k = rnd(7); k > 0; k--) {
      if (rnd(6) === 0) rules.push(A(rnd(2) === 0));
      else
        rules.push({
          allow: rnd(2) === 0,
          rule: `${'bc'[rnd(2)]} ${nums[rnd(3)]}:${nums[rnd(3)]} ${accs[rnd(accs.length)]}`,
        });
    }
    const model = v1Model(rules);
    const prog = deviceProgram(rules);
    for (const [ty, ma, mi, a] of asks) {
      checked++;
      if (model(ty, ma, mi, a) !== (run(prog, ty, ma, mi, a) === 1))
        bad.push(`${JSON.stringify(rules)}: ${ty} ${ma}:${mi} ${a}`);
    }
  }
  t.same(bad, [], `${checked} decisions compared`);
});
