// Running the real tools the image tests compare against. A missing tool is
// a test failure with the package to install, never a skip.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Debian package that provides each tool, for the error message. */
const PACKAGES: Record<string, string> = {
  umoci: 'umoci',
  skopeo: 'skopeo',
  'docker-registry': 'docker-registry',
  htpasswd: 'apache2-utils',
  busybox: 'busybox-static',
  mknod: 'coreutils',
};

/** Absolute path of a tool, or throw naming the package that provides it. */
export function requireTool(name: string): string {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  throw new Error(`required tool \`${name}\` is not installed: apt-get install ${PACKAGES[name] ?? name}`);
}

/** Run a tool; on failure throw with its command line and stderr. */
export function run(tool: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): string {
  const bin = requireTool(tool);
  const r = spawnSync(bin, args, { encoding: 'utf8', cwd: options.cwd ?? os.tmpdir(), env: options.env ?? process.env, input: options.input, maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} exited ${r.status ?? r.signal}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

export const isRoot = process.getuid?.() === 0;

/** A private scratch directory, removed by the returned cleanup (chmod-ing read-only dirs first). */
export function scratch(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `nodularity-${prefix}-`));
}

/** rm -rf that also copes with read-only directories left by unprivileged unpacks. */
export function removeAll(dir: string): void {
  try {
    fs.rmSync(dir, { recursive: true, force: true });
  } catch {
    execFileSync('chmod', ['-R', 'u+rwX', dir], { stdio: 'ignore' });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Environment for skopeo: its own temp and auth files, never the caller's. */
export function skopeoEnv(home: string): NodeJS.ProcessEnv {
  fs.mkdirSync(path.join(home, 'tmp'), { recursive: true });
  return { ...process.env, HOME: home, TMPDIR: path.join(home, 'tmp'), XDG_RUNTIME_DIR: path.join(home, 'tmp'), REGISTRY_AUTH_FILE: path.join(home, 'auth.json') };
}

/** The repository root (test/image/helpers/ is three levels down). */
export const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');
