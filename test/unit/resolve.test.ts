// resolve.ts corner cases the planner depends on.
import t from 'tap';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { resolveInRoot } from '../../lib/plan/resolve.js';
import { scratch } from '../helpers/env.js';

t.test('`..` after a missing component is not dropped (the kernel would say ENOENT)', async (t) => {
  const root = scratch(t);
  mkdirSync(join(root, 'x'));
  symlinkSync('missing/../x', join(root, 'via-missing'));
  t.throws(() => resolveInRoot(root, '/missing/../x'), { code: 'ENOENT' }, 'not /missing/x, not /x');
  t.throws(() => resolveInRoot(root, '/via-missing'), { code: 'ENOENT' }, 'the same through a symlink');
  t.equal(resolveInRoot(root, '/x/../x').containerPath, '/x', '`..` over existing components is fine');
});
