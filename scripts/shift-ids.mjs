// Shift the owners of a tree the way a rootless unpack for `--fakeroot`
// leaves them: id 0 -> the user's own id, id k > 0 -> range start + k - 1.
//   node shift-ids.mjs DIR UID GID SUBUID_START SUBGID_START
// chown clears set-id bits, so each file's mode is put back afterwards.
import { chmodSync, lchownSync, lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const [dir, uid, gid, sub, subg] = process.argv.slice(2);
const [u, g, su, sg] = [uid, gid, sub, subg].map(Number);
if (!dir || [u, g, su, sg].some((n) => !Number.isInteger(n) || n < 0)) {
  console.error('usage: shift-ids.mjs DIR UID GID SUBUID_START SUBGID_START');
  process.exit(2);
}
const shift = (id, own, start) => (id === 0 ? own : start + id - 1);
const walk = (p) => {
  const st = lstatSync(p);
  lchownSync(p, shift(st.uid, u, su), shift(st.gid, g, sg));
  if (!st.isSymbolicLink()) chmodSync(p, st.mode & 0o7777);
  if (st.isDirectory()) for (const e of readdirSync(p)) walk(join(p, e));
};
walk(dir);
