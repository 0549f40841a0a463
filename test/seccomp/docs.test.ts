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
  const documented = new Set(rows.flatMap((r) => [...r.split('|')[1].matchAll(/`([a-z_][a-z0-9_]*)`/g)].map((m) => m[1])));
  const listed = DEFAULT_BLOCKED.flatMap(([names]) => names);
  for (const n of listed) t.ok(documented.has(n), `${n} is documented`);
  for (const n of documented) t.ok(n === 'personality' || listed.includes(n), `${n} is in the profile`);
  const p = defaultSeccompProfile();
  const groups = p.syscalls!.filter((s) => s.names[0] !== 'personality');
  t.same(groups.flatMap((s) => s.names).sort(), [...listed].sort(), 'the profile refuses exactly the listed calls (and personality)');
  t.ok(p.syscalls!.slice(groups.length).every((s) => s.names.length === 1 && s.names[0] === 'personality'));
  for (const [names, , errno] of DEFAULT_BLOCKED) {
    const row = rows.find((r) => r.includes(`\`${names[0]}\``))!;
    t.match(row.split('|')[2], errno === 38 ? /ENOSYS/ : /EPERM/, `${names[0]}: the errno is documented`);
  }
  const personalityRow = rows.find((r) => r.startsWith('| `personality`'))!;
  for (const v of SAFE_PERSONALITIES) t.match(personalityRow, `\`0x${v.toString(16)}\``.replace('`0x0`', '`0`'), `safe value ${v} documented`);
});
