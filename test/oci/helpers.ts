// Fixtures for the OCI runtime's tests: the installed `nodularity-oci` (bin/
// nodularity-oci on dist/, as containerd and Podman run it), bundles on the
// busybox test rootfs, and a way to run the CLI and collect what it says.
import { spawn, type SpawnOptions } from 'node:child_process';
import {
  closeSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSpec, type Spec } from '../../lib/index.js';
import { requireFreshDist } from '../helpers/cli.js';
import { repoRoot, testRootfs } from '../helpers/env.js';

export const OCI_BIN = join(repoRoot, 'bin', 'nodularity-oci');

/** Our environment without tap's hooks (NODE_OPTIONS loads its process-info recorder into every node). */
export const cleanEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !k.startsWith('TAP')),
);

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
}

/** Run a command to its end, collecting stdout and stderr (stdin closed). */
export function runCmd(argv: string[], opts: SpawnOptions & { timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0]!, argv.slice(1), { env: cleanEnv, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let out = '',
      err = '';
    p.stdout?.on('data', (d) => (out += d));
    p.stderr?.on('data', (d) => (err += d));
    // A safety net against a hung verb, not a timing assertion.
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, err });
    });
  });
}

/** `nodularity-oci --root ROOT ARGS...` */
export function oci(root: string, ...args: string[]): Promise<Result> {
  requireFreshDist();
  return runCmd([OCI_BIN, '--root', root, ...args]);
}

/** A bundle in DIR: the test rootfs copied to DIR/rootfs, config.json from createSpec with `over` merged. */
export function makeBundle(dir: string, args: string[], over: Partial<Spec> & Record<string, unknown> = {}): string {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  cpSync(testRootfs(), join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  const spec = { ...createSpec({ rootfs: 'rootfs', args }), ...over };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec, null, 2), { mode: 0o644 });
  return dir;
}

/** Host pids whose command line contains TAG (the way tests find what a container left). */
export function pidsTagged(tag: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'latin1').includes(tag)) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

export async function until(what: string, ms: number, test: () => boolean | Promise<boolean>): Promise<void> {
  const end = Date.now() + ms;
  while (!(await test())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A verb that leaves a process behind holding its stdio (create, exec -d, run
 * -d): stdout and stderr go to a file, as conmon and the runtime-tools suite
 * give them, and only the verb's own exit is awaited (a pipe would stay open
 * as long as the container).
 */
export async function ociDetached(root: string, ...args: string[]): Promise<Result> {
  requireFreshDist();
  const dir = mkdtempSync(join(tmpdir(), 'nodularity-oci-stdio-'));
  const file = join(dir, 'stdio');
  const fd = openSync(file, 'w+');
  try {
    const p = spawn(OCI_BIN, ['--root', root, ...args], { env: cleanEnv, stdio: ['ignore', fd, fd] });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) =>
      p.once('exit', (c, s) => r([c, s])),
    );
    return { code, signal, out: '', err: readFileSync(file, 'utf8') };
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}
