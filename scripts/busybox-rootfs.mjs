// Assemble a small root filesystem from the host's static busybox, offline.
// Used by the demo, the tests and the benchmarks: no registry, no network.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, copyFileSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const BUSYBOX_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox'];

/** Path of a statically linked busybox, or an Error saying how to get one. */
export function findStaticBusybox() {
  for (const p of BUSYBOX_CANDIDATES) {
    if (!existsSync(p)) continue;
    const out = execFileSync('file', ['-L', p], { encoding: 'utf8' });
    if (/statically linked|static-pie/.test(out)) return p;
  }
  throw new Error('a statically linked busybox is needed to build the default image: apt-get install busybox-static');
}

/**
 * Create DIR as a rootfs: /bin/busybox with every applet linked at its usual
 * path, /etc/passwd and /etc/group, and empty mount points. Returns DIR.
 */
export function makeBusyboxRootfs(dir, { busybox = findStaticBusybox() } = {}) {
  for (const d of [
    'bin',
    'sbin',
    'usr/bin',
    'usr/sbin',
    'etc',
    'proc',
    'sys',
    'dev',
    'tmp',
    'root',
    'home',
    'var/tmp',
    'run',
    'mnt',
  ])
    mkdirSync(join(dir, d), { recursive: true });
  chmodSync(join(dir, 'tmp'), 0o1777);
  // mkdtemp makes 0700 dirs; every id inside must be able to reach /.
  chmodSync(dir, 0o755);
  copyFileSync(busybox, join(dir, 'bin/busybox'));
  chmodSync(join(dir, 'bin/busybox'), 0o755);
  const applets = execFileSync(busybox, ['--list-full'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const rel of applets) {
    const link = join(dir, rel);
    if (rel === 'bin/busybox' || existsSync(link)) continue;
    mkdirSync(dirname(link), { recursive: true });
    const depth = rel.split('/').length - 1;
    symlinkSync('../'.repeat(depth) + 'bin/busybox', link);
  }
  writeFileSync(
    join(dir, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  );
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  writeFileSync(join(dir, 'etc/hostname'), 'busybox\n');
  writeFileSync(join(dir, 'etc/os-release'), 'NAME="nodularity busybox"\nID=busybox\n');
  return dir;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: busybox-rootfs.mjs DIR');
    process.exit(2);
  }
  makeBusyboxRootfs(dir);
  console.log(dir);
}
