// A real distribution v2 registry (Debian's docker-registry) on 127.0.0.1,
// storage in a scratch dir, optionally behind htpasswd basic auth.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { removeAll, requireTool, run, scratch } from './tools.js';

export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  host: string;
  dir: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Start a registry; with `auth`, it demands those basic credentials (bcrypt htpasswd). */
export async function startRegistry(auth?: { username: string; password: string }): Promise<TestRegistry> {
  const bin = requireTool('docker-registry');
  const dir = scratch('registry');
  const port = await freePort();
  let authYaml = '';
  if (auth) {
    const htpasswd = path.join(dir, 'htpasswd');
    // -B: bcrypt, the only hash the registry accepts; -i: password on stdin.
    const line = run('htpasswd', ['-niB', auth.username], { input: auth.password + '\n' }).trim();
    fs.writeFileSync(htpasswd, line + '\n');
    authYaml = `auth:\n  htpasswd:\n    realm: nodularity-test\n    path: ${htpasswd}\n`;
  }
  const config = path.join(dir, 'config.yml');
  fs.writeFileSync(config, `version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: ${path.join(dir, 'data')}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port}
${authYaml}`);
  const log = fs.openSync(path.join(dir, 'registry.log'), 'w');
  const child: ChildProcess = spawn(bin, ['serve', config], { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  let exited: string | undefined;
  child.on('exit', (code, signal) => { exited = `exited ${code ?? signal}`; });
  const host = `127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited) throw new Error(`docker-registry ${exited}:\n${fs.readFileSync(path.join(dir, 'registry.log'), 'utf8')}`);
    try {
      const res = await fetch(`http://${host}/v2/`);
      await res.body?.cancel();
      if (res.status === 200 || res.status === 401) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`docker-registry did not answer on ${host} within 15 s:\n${fs.readFileSync(path.join(dir, 'registry.log'), 'utf8')}`);
    }
    await sleep(50);
  }
  return {
    host,
    dir,
    async stop() {
      if (!exited) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([gone, sleep(5000)]);
        if (!exited) child.kill('SIGKILL');
      }
      removeAll(dir);
    },
  };
}
