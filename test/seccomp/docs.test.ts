// docs/seccomp.md gives the reason for each entry of the default profile:
// it must name every system call the profile refuses, and only those.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_BLOCKED, defaultSeccompProfile } from '../../lib/index.js';
import { SAFE_PERSONALITIES } from '../../lib/seccomp/default.js';
import { repoRoot } from '../helpers/env.js';

t.test('the default profile table in docs/seccomp.md matches DEFAULT_BLOCKED', async (t) => {
  const doc = readFileSync(join(repoRoot, 'docs', 'seccomp.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## The default profile'), doc.indexOf('**Foreign ABIs.**'));
  const rows = section.split('\n').filter((l) => l.startsWith('| `'));
  const documented = new Set(
    rows.flatMap((r) => [...r.split('|')[1].matchAll(/`([a-z_][a-z0-9_]*)`/g)].map((m) => m[1])),
  );
  const listed = DEFAULT_BLOCKED.flatMap(([names]) => names);
  for (const n of listed) t.ok(documented.has(n), `${n} is documented`);
  for (const n of documented) t.ok(n === 'personality' || listed.includes(n), `${n} is in the profile`);
  const p = defaultSeccompProfile();
  const groups = p.syscalls!.filter((s) => s.names[0] !== 'personality');
  t.same(
    groups.flatMap((s) => s.names).sort(),
    [...listed].sort(),
    'the profile refuses exactly the listed calls (and personality)',
  );
  t.ok(p.syscalls!.slice(groups.length).every((s) => s.names.length === 1 && s.names[0] === 'personality'));
  for (const [names, , errno] of DEFAULT_BLOCKED) {
    const row = rows.find((r) => r.includes(`\`${names[0]}\``))!;
    t.match(row.split('|')[2], errno === 38 ? /ENOSYS/ : /EPERM/, `${names[0]}: the errno is documented`);
  }
  const personalityRow = rows.find((r) => r.startsWith('| `personality`'))!;
  for (const v of SAFE_PERSONALITIES)
    t.match(personalityRow, `\`0x${v.toString(16)}\``.replace('`0x0`', '`0`'), `safe value ${v} documented`);
});

t.test('the personality rules refuse exactly the values that are not safe', async (t) => {
  const { personalityRules } = await import('../../lib/seccomp/default.js');
  const rules = personalityRules();
  const refused = (x: bigint) =>
    rules.some((r) => {
      const a = r.args![0];
      if (a.op === 'SCMP_CMP_GT') return x > BigInt(a.value);
      return (x & BigInt(a.value)) === BigInt(a.valueTwo!);
    });
  const safe = new Set(SAFE_PERSONALITIES.map(BigInt));
  const values: bigint[] = [0n, 0xffffffffn, 0x100000000n, 0xffffffffffffffffn];
  // Every value with one or two bits set or clear, plus random ones.
  for (let i = 0; i < 32; i++) {
    for (let j = i; j < 32; j++) {
      const m = (1n << BigInt(i)) | (1n << BigInt(j));
      values.push(m, 0xffffffffn ^ m, m | 0x20008n, (0xffffffffn ^ m) | 0x20008n, m & ~0x20008n);
    }
  }
  let seed = 12345;
  for (let k = 0; k < 20000; k++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    values.push(BigInt(seed), BigInt(seed) & 0x20008n, BigInt(seed) | 0xfffdfff7n);
  }
  let wrong = 0;
  for (const x of values) if (refused(x) === safe.has(x)) wrong++;
  t.equal(wrong, 0, `refused <=> not safe, over ${values.length} values`);
  for (const x of safe) t.notOk(refused(x), `0x${x.toString(16)} passes`);
  t.ok(rules.length <= 33, `${rules.length} rules`);
});
