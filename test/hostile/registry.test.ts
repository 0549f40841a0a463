// Hostile registries (issue 11, items 8 and 9): credentials go only to the
// registry they are for, never over plain http to another origin, never
// along a redirect; what a registry sends is bounded in bytes and in time,
// and a failed pull leaves no socket open and nothing in the cache's tmp/.
// Each test checks the other side too: what the hostile servers received,
// how much they managed to send, and whether our sockets to them are closed.
import t, { type Test } from 'tap';
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { pullImage, ImageCache, ImageError } from '../../lib/image/index.js';
import { credentialsFor } from '../../lib/image/registry-auth.js';
import { startRegistry, type TestRegistry } from '../image/fixtures/registry.js';
import { removeAll, repoRoot, requireTool, scratch, skopeoEnv } from '../image/fixtures/tools.js';
import {
  serveImage,
  startServer,
  streamForever,
  tinyImage,
  writeLayout,
  type HostileServer,
  type TinyImage,
} from './fixtures/registry-server.js';

const SECRET = 'hunter2-do-not-leak';
const pilot = { username: 'pilot', password: SECRET };
const basicPilot = 'Basic ' + Buffer.from(`pilot:${SECRET}`).toString('base64');
const cli = path.join(repoRoot, 'dist', 'cli', 'main.js');

// Never let the tests see (or the library read) the real user's auth files.
const home = scratch('registry-home');
const envVars = [
  'DOCKER_CONFIG',
  'XDG_CONFIG_HOME',
  'XDG_RUNTIME_DIR',
  'REGISTRY_AUTH_FILE',
  'NODULARITY_DOCKER_USERNAME',
  'NODULARITY_DOCKER_PASSWORD',
  'NODULARITY_REGISTRY_TIMEOUT',
];
const savedEnv = Object.fromEntries(envVars.map((k) => [k, process.env[k]]));
process.env.DOCKER_CONFIG = path.join(home, 'docker');
process.env.XDG_CONFIG_HOME = path.join(home, 'config');
process.env.XDG_RUNTIME_DIR = path.join(home, 'run');
for (const k of [
  'REGISTRY_AUTH_FILE',
  'NODULARITY_DOCKER_USERNAME',
  'NODULARITY_DOCKER_PASSWORD',
  'NODULARITY_REGISTRY_TIMEOUT',
])
  delete process.env[k];
t.teardown(() => {
  for (const k of envVars) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
  removeAll(home);
});

let img: TinyImage;
t.before(async () => {
  img = await tinyImage();
});

/** Set env vars for one test. */
function withEnv(t: Test, vars: Record<string, string>): void {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  t.teardown(() => {
    for (const [k, v] of Object.entries(before)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

/** A hostile server stopped (its sockets destroyed) when the test ends. */
async function server(t: Test, handler: Parameters<typeof startServer>[0]): Promise<HostileServer> {
  const s = await startServer(handler);
  t.teardown(() => s.stop());
  return s;
}

/** A fresh cache dir removed when the test ends. */
function cacheDir(t: Test): string {
  const dir = scratch('registry-cache');
  t.teardown(() => removeAll(dir));
  return dir;
}

/** Names left in the cache's tmp/ (none expected after any pull, failed or not). */
function tmpLeft(cache: string): string[] {
  try {
    return fs.readdirSync(path.join(cache, 'tmp'));
  } catch {
    return [];
  }
}

/** Fail instead of hanging: today's main never returns from some of these. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([p, guard]);
  } finally {
    clearTimeout(timer);
  }
}

async function rejection(p: Promise<unknown>): Promise<ImageError> {
  const err = await within(
    p.then(
      () => undefined,
      (e: unknown) => e,
    ),
    30_000,
    'pull',
  );
  if (!(err instanceof ImageError))
    throw new Error(`expected an ImageError, got ${err instanceof Error ? err.stack : String(err)}`);
  return err;
}

/** Every Authorization header any of the servers received that carries the secret. */
function leaks(...servers: HostileServer[]): string[] {
  return servers.flatMap((s) =>
    s.seen
      .filter(
        (r) =>
          r.authorization &&
          (r.authorization === basicPilot ||
            Buffer.from(r.authorization.replace(/^\S+\s+/, ''), 'base64')
              .toString('utf8')
              .includes(SECRET)),
      )
      .map((r) => `${s.origin}${r.path}: ${r.authorization}`),
  );
}

/** Run the built CLI (asynchronously: the hostile servers live on this process's event loop); killed if still running after 60 s. */
async function runCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stderr: string; stdout: string }> {
  if (!fs.existsSync(cli)) throw new Error(`${cli} is missing: run \`npm run build\``);
  const child = spawn(process.execPath, ['--', cli, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const done = new Promise<{ code: number | null; stderr: string; stdout: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  try {
    return await within(done, 60_000, `nodularity ${args.join(' ')}`);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------- item 8

t.test('credentials given for another registry never reach a hostile one', async (t) => {
  const evil = await server(t, (_req, res) => {
    res.writeHead(401, { 'www-authenticate': 'Basic realm="give me your password"' });
    res.end();
  });
  // The same user's credentials for registry.example.org, in every place we read.
  const entry = { auth: Buffer.from(`pilot:${SECRET}`).toString('base64') };
  const authFile = path.join(home, 'auth-other.json');
  fs.writeFileSync(
    authFile,
    JSON.stringify({
      auths: { 'registry.example.org': entry, 'https://registry.example.org/v1/': entry, [`127.0.0.1:1/test`]: entry },
    }),
  );
  fs.mkdirSync(process.env.DOCKER_CONFIG!, { recursive: true });
  fs.writeFileSync(
    path.join(process.env.DOCKER_CONFIG!, 'config.json'),
    JSON.stringify({ auths: { 'registry.example.org': entry } }),
  );
  t.teardown(() => fs.rmSync(path.join(process.env.DOCKER_CONFIG!, 'config.json'), { force: true }));
  const cache = cacheDir(t);
  const err = await rejection(
    pullImage(`docker://${evil.host}/test/img:v1`, {
      insecure: true,
      cacheDir: cache,
      authFile,
      credentials: { ...pilot, registry: 'registry.example.org' },
      attempts: 1,
    }),
  );
  t.equal(err.reason, 'AUTH');
  t.match(err.message, /requires a login; set NODULARITY_DOCKER_USERNAME\/PASSWORD or pass credentials/);
  t.ok(evil.seen.length >= 1, 'the hostile registry was asked');
  t.same(
    evil.seen.filter((r) => r.authorization !== undefined),
    [],
    'no Authorization header at all reached it',
  );
  t.same(tmpLeft(cache), []);
  t.ok(await evil.allClosed(2000), 'no connection left open');
});

t.test('credentials for the registry are not sent to a plain-http token realm on another origin', async (t) => {
  const realm = await server(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"token":"anonymous-token"}');
  });
  const evil = await server(t, (req, res) => {
    res.writeHead(401, {
      'www-authenticate': `Bearer realm="${realm.origin}/token",service="evil",scope="repository:test/img:pull"`,
    });
    res.end();
  });
  withEnv(t, { NODULARITY_DOCKER_USERNAME: 'pilot', NODULARITY_DOCKER_PASSWORD: SECRET });
  const cache = cacheDir(t);
  const err = await rejection(
    pullImage(`docker://${evil.host}/test/img:v1`, { insecure: true, cacheDir: cache, attempts: 1 }),
  );
  t.equal(err.reason, 'AUTH');
  t.ok(
    err.message.includes(
      `credentials for ${evil.host} were not sent to token server ${realm.origin}: plain http on another origin`,
    ),
    err.message,
  );
  t.ok(realm.seen.length >= 1, 'the realm was asked (anonymously)');
  t.same(
    realm.seen.map((r) => r.authorization),
    realm.seen.map(() => undefined),
    'the realm got no Authorization header',
  );
  t.same(leaks(realm, evil), [], 'the password reached neither server');
  t.same(
    evil.seen.filter((r) => r.authorization && r.authorization !== 'Bearer anonymous-token'),
    [],
    'the registry got only the anonymous token',
  );
  t.ok((await realm.allClosed(2000)) && (await evil.allClosed(2000)), 'no connection left open');
});

t.test('the Authorization header never follows a redirect to another origin', async (t) => {
  let storageAnswer: 'blob' | 'login' = 'blob';
  const storage = await server(t, (_req, res) => {
    if (storageAnswer === 'login') {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="storage"' });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-length': img.layer.length });
    res.end(img.layer);
  });
  const registry = await server(t, (req, res) => {
    if (req.headers.authorization !== basicPilot) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="registry"' });
      res.end();
      return;
    }
    if (req.url === `/v2/test/img/blobs/${img.layerDigest}`) {
      // Blob storage elsewhere, with a presigned URL, as S3-backed registries do.
      res.writeHead(307, { location: `${storage.origin}/bucket/${img.layerDigest.slice(7)}?X-Amz-Signature=deadbeef` });
      res.end();
      return;
    }
    if (!serveImage(img, req, res)) {
      res.writeHead(404);
      res.end();
    }
  });
  const cache = cacheDir(t);
  const pulled = await within(
    pullImage(`docker://${registry.host}/test/img:v1`, { insecure: true, cacheDir: cache, credentials: pilot }),
    30_000,
    'pull',
  );
  t.equal(
    fs.readFileSync(path.join(pulled.rootfs, 'hello.txt'), 'utf8'),
    'hello from a tiny image\n',
    'pulled through the redirect',
  );
  t.ok(
    registry.seen.some((r) => r.authorization === basicPilot),
    'the registry itself got the credentials it asked for',
  );
  t.ok(storage.seen.length >= 1, 'the blob came from the storage origin');
  t.same(
    storage.seen.map((r) => r.authorization),
    storage.seen.map(() => undefined),
    'the storage origin got no Authorization header',
  );
  t.ok(
    (await registry.allClosed(2000)) && (await storage.allClosed(2000)),
    'a successful pull leaves no connection open either',
  );

  // Storage that asks for a login is not answered with the registry's credentials.
  storageAnswer = 'login';
  const cache2 = cacheDir(t);
  const err = await rejection(
    pullImage(`docker://${registry.host}/test/img:v1`, {
      insecure: true,
      cacheDir: cache2,
      credentials: pilot,
      attempts: 1,
    }),
  );
  t.equal(err.reason, 'AUTH');
  t.ok(
    err.message.includes(
      `${storage.origin} (redirected to from the registry) asks for a login; credentials for ${registry.host} are never sent to another origin`,
    ),
    err.message,
  );
  t.same(leaks(storage), [], 'storage never saw the password');
  t.same(
    storage.seen.filter((r) => r.authorization !== undefined),
    [],
    'nor any Authorization header',
  );
  t.same(tmpLeft(cache2), []);
});

t.test(
  'a real registry with htpasswd: credentials by host from an auth file, option or env; never those of another host',
  async (t) => {
    const creds = { username: 'pilot', password: 'p@ss: with spaces' };
    const registry: TestRegistry = await startRegistry(creds);
    t.teardown(() => registry.stop());
    const work = scratch('registry-push');
    t.teardown(() => removeAll(work));
    writeLayout(img, path.join(work, 'layout'));
    await promisify(execFile)(
      requireTool('skopeo'),
      [
        'copy',
        '--quiet',
        '--dest-tls-verify=false',
        '--dest-creds',
        `${creds.username}:${creds.password}`,
        `oci:${path.join(work, 'layout')}:v1`,
        `docker://${registry.host}/test/img:v1`,
      ],
      { env: skopeoEnv(path.join(work, 'home')) },
    );
    const src = `docker://${registry.host}/test/img:v1`;
    const auth = (u: string, p: string): { auth: string } => ({ auth: Buffer.from(`${u}:${p}`).toString('base64') });

    // Entries for other hosts (another port of the same address included) are not used.
    const otherFile = path.join(work, 'other.json');
    const otherPort = `127.0.0.1:${Number(registry.host.split(':')[1]) + 1}`;
    fs.writeFileSync(
      otherFile,
      JSON.stringify({
        auths: { [otherPort]: auth(creds.username, creds.password), '127.0.0.1': auth(creds.username, creds.password) },
      }),
    );
    await t.rejects(pullImage(src, { insecure: true, cacheDir: cacheDir(t), authFile: otherFile, attempts: 1 }), {
      reason: 'AUTH',
      message: /requires a login/,
    });
    await t.rejects(
      pullImage(src, {
        insecure: true,
        cacheDir: cacheDir(t),
        credentials: { ...creds, registry: otherPort },
        attempts: 1,
      }),
      { reason: 'AUTH', message: /requires a login/ },
    );

    // The host's own entry: by $REGISTRY_AUTH_FILE, by the option, by $DOCKER_CONFIG (legacy URL key), repository-scoped.
    const ownFile = path.join(work, 'auth.json');
    fs.writeFileSync(
      ownFile,
      JSON.stringify({
        auths: { [otherPort]: auth('pilot', 'wrong'), [registry.host]: auth(creds.username, creds.password) },
      }),
    );
    withEnv(t, { REGISTRY_AUTH_FILE: ownFile });
    t.equal((await pullImage(src, { insecure: true, cacheDir: cacheDir(t) })).cached, false, 'REGISTRY_AUTH_FILE');
    delete process.env.REGISTRY_AUTH_FILE;
    t.equal(
      (await pullImage(src, { insecure: true, cacheDir: cacheDir(t), authFile: ownFile })).cached,
      false,
      'authFile option',
    );
    const dockerDir = path.join(work, 'docker');
    fs.mkdirSync(dockerDir);
    fs.writeFileSync(
      path.join(dockerDir, 'config.json'),
      JSON.stringify({ auths: { [`https://${registry.host}/v1/`]: auth(creds.username, creds.password) } }),
    );
    withEnv(t, { DOCKER_CONFIG: dockerDir });
    t.equal(
      (await pullImage(src, { insecure: true, cacheDir: cacheDir(t) })).cached,
      false,
      'DOCKER_CONFIG/config.json',
    );
    fs.writeFileSync(
      path.join(dockerDir, 'config.json'),
      JSON.stringify({
        auths: {
          [registry.host]: auth('pilot', 'wrong'),
          [`${registry.host}/test/img`]: auth(creds.username, creds.password),
        },
      }),
    );
    t.equal(
      (await pullImage(src, { insecure: true, cacheDir: cacheDir(t) })).cached,
      false,
      'the repository-scoped entry wins over the host entry',
    );
    process.env.DOCKER_CONFIG = path.join(home, 'docker');
    // Env credentials mean the registry pulled from.
    withEnv(t, { NODULARITY_DOCKER_USERNAME: creds.username, NODULARITY_DOCKER_PASSWORD: creds.password });
    t.equal(
      (await pullImage(src, { insecure: true, cacheDir: cacheDir(t) })).cached,
      false,
      'NODULARITY_DOCKER_USERNAME/PASSWORD',
    );
  },
);

t.test(
  'auth files: looked up by host (Docker Hub by any of its names), most specific key first; a broken one only fails pulls that need it',
  async (t) => {
    const dir = scratch('registry-authfiles');
    t.teardown(() => removeAll(dir));
    const b64 = (s: string): string => Buffer.from(s).toString('base64');
    const file = path.join(dir, 'config.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: b64('hub:hubpass') },
          'quay.io/team': { auth: b64('team:teampass') },
          'quay.io': { auth: b64('quay:quaypass') },
          'registry.example.org': { identitytoken: 'only a token' },
        },
      }),
    );
    t.match(
      credentialsFor('registry-1.docker.io', 'library/busybox', { authFile: file }),
      { username: 'hub', password: 'hubpass' },
      'Docker Hub through its legacy v1 URL key',
    );
    t.match(
      credentialsFor('quay.io', 'team/app', { authFile: file }),
      { username: 'team', password: 'teampass' },
      'namespace key beats host key',
    );
    t.match(credentialsFor('quay.io', 'other/app', { authFile: file }), { username: 'quay', password: 'quaypass' });
    t.equal(
      credentialsFor('quay.io.evil.example', 'team/app', { authFile: file }),
      undefined,
      'no prefix matching on host names',
    );
    t.equal(
      credentialsFor('registry.example.org', 'x', { authFile: file }),
      undefined,
      'an entry without a password is not used',
    );
    t.equal(
      credentialsFor('evil.example', 'x', { authFile: file, credentials: { ...pilot, registry: 'quay.io' } })?.username,
      undefined,
      'option credentials named for another host are not used',
    );
    t.equal(
      credentialsFor('quay.io', 'x', { authFile: file, credentials: { ...pilot, registry: 'quay.io' } })?.username,
      'pilot',
      'and are for theirs',
    );

    // A broken auth file: an error naming it, but only when a registry asks for a login.
    const broken = path.join(dir, 'broken.json');
    fs.writeFileSync(broken, '{ not json');
    t.throws(() => credentialsFor('quay.io', 'x', { authFile: broken }), {
      reason: 'AUTH',
      message: new RegExp(`^auth file ${broken.replace(/[.]/g, '\\.')}: invalid JSON`),
    });
    const open = await server(t, (req, res) => {
      if (!serveImage(img, req, res)) {
        res.writeHead(404);
        res.end();
      }
    });
    const pulled = await within(
      pullImage(`docker://${open.host}/test/img:v1`, { insecure: true, cacheDir: cacheDir(t), authFile: broken }),
      30_000,
      'pull',
    );
    t.equal(pulled.cached, false, 'an anonymous pull never reads the auth file');
  },
);

// ---------------------------------------------------------------- item 9

t.test('an endless manifest: refused at 4 MiB, naming the URL; memory bounded; socket closed', async (t) => {
  const evil = await server(t, (req, res, s) => {
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
    streamForever(res, s, Buffer.alloc(64 << 10, 0x20));
  });
  const cache = cacheDir(t);
  const start = process.memoryUsage.rss();
  let peak = start;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 20);
  const err = await rejection(pullImage(`docker://${evil.host}/test/img:v1`, { insecure: true, cacheDir: cache }));
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage.rss());
  t.equal(err.reason, 'BAD_MANIFEST');
  t.equal(
    err.message,
    `manifest v1 on ${evil.host}/test/img: the response from ${evil.origin}/v2/test/img/manifests/v1 is larger than the 4 MiB limit on manifests`,
  );
  t.ok(peak - start < 200 << 20, `RSS grew by ${((peak - start) / (1 << 20)).toFixed(1)} MiB (< 200 MiB)`);
  t.ok(
    evil.bytesSent < 64 << 20,
    `the server got ${(evil.bytesSent / (1 << 20)).toFixed(1)} MiB out before we hung up`,
  );
  t.ok(await evil.allClosed(2000), 'no connection left open');
  t.same(tmpLeft(cache), []);
});

t.test('a server that accepts and never answers: timeout naming the URL, retried, then given up', async (t) => {
  const evil = await server(t, () => {
    /* never answer */
  });
  const cache = cacheDir(t);
  const err = await rejection(
    pullImage(`docker://${evil.host}/test/img:v1`, {
      insecure: true,
      cacheDir: cache,
      timeoutMs: 300,
      attempts: 2,
      backoffMs: 10,
    }),
  );
  t.equal(err.reason, 'REGISTRY');
  t.equal(
    err.message,
    `manifest v1 on ${evil.host}/test/img: no response from ${evil.origin}/v2/test/img/manifests/v1 within 0.3 s; gave up after 2 attempts`,
  );
  t.equal(evil.seen.length, 2, 'one request per attempt');
  t.ok(await evil.allClosed(2000), 'both connections closed');
  t.same(tmpLeft(cache), []);
});

t.test('a body that stops halfway: idle timeout naming the URL', async (t) => {
  const evil = await server(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': 1000 });
    res.write('{"schemaVersion":');
  });
  const err = await rejection(
    pullImage(`docker://${evil.host}/test/img:v1`, {
      insecure: true,
      cacheDir: cacheDir(t),
      timeoutMs: 300,
      attempts: 1,
    }),
  );
  t.equal(err.reason, 'REGISTRY');
  t.equal(
    err.message,
    `manifest v1 on ${evil.host}/test/img: ${evil.origin}/v2/test/img/manifests/v1 sent nothing for 0.3 s in the middle of the body; gave up after 1 attempt`,
  );
  t.ok(await evil.allClosed(2000), 'connection closed');
});

t.test('NODULARITY_REGISTRY_TIMEOUT sets the timeout; a bad value is refused naming it', async (t) => {
  const evil = await server(t, () => {
    /* never answer */
  });
  withEnv(t, { NODULARITY_REGISTRY_TIMEOUT: '0.2' });
  const err = await rejection(
    pullImage(`docker://${evil.host}/test/img:v1`, { insecure: true, cacheDir: cacheDir(t), attempts: 1 }),
  );
  t.match(err.message, /no response from .* within 0\.2 s; gave up after 1 attempt$/);
  process.env.NODULARITY_REGISTRY_TIMEOUT = 'soon';
  await t.rejects(pullImage(`docker://${evil.host}/test/img:v1`, { insecure: true, cacheDir: cacheDir(t) }), {
    message: 'NODULARITY_REGISTRY_TIMEOUT `soon`: must be a positive number of seconds',
  });
});

t.test('a blob streaming past its declared size: SIZE_MISMATCH naming the URL, nothing kept', async (t) => {
  let mode: 'endless' | 'announced' = 'endless';
  const evil = await server(t, (req, res, s) => {
    if (req.url === `/v2/test/img/blobs/${img.layerDigest}`) {
      if (mode === 'announced') {
        res.writeHead(200, { 'content-length': img.layer.length + 1000 });
        res.end(Buffer.concat([img.layer, Buffer.alloc(1000)]));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream' }); // chunked, no length
      res.write(img.layer);
      streamForever(res, s, Buffer.alloc(64 << 10, 1));
      return;
    }
    if (!serveImage(img, req, res)) {
      res.writeHead(404);
      res.end();
    }
  });
  const cache = cacheDir(t);
  const blobUrl = `${evil.origin}/v2/test/img/blobs/${img.layerDigest}`;
  const err = await rejection(pullImage(`docker://${evil.host}/test/img:v1`, { insecure: true, cacheDir: cache }));
  t.equal(err.reason, 'SIZE_MISMATCH');
  t.equal(err.digest, img.layerDigest);
  t.equal(
    err.message,
    `layer ${img.layerDigest} on ${evil.host}/test/img: ${blobUrl} sent more than the ${img.layer.length} bytes the descriptor declares`,
  );
  t.ok(
    evil.bytesSent < 16 << 20,
    `the server got ${(evil.bytesSent / (1 << 20)).toFixed(1)} MiB out before we hung up`,
  );
  t.ok(await evil.allClosed(2000), 'no connection left open');
  t.same(tmpLeft(cache), [], 'no partial blob in tmp/');
  t.equal(await new ImageCache(cache).hasBlob(img.layerDigest), false, 'no blob cached');

  mode = 'announced';
  const err2 = await rejection(pullImage(`docker://${evil.host}/test/img:v1`, { insecure: true, cacheDir: cache }));
  t.equal(err2.reason, 'SIZE_MISMATCH');
  t.equal(
    err2.message,
    `layer ${img.layerDigest} on ${evil.host}/test/img: ${blobUrl} announces ${img.layer.length + 1000} bytes, the descriptor declares ${img.layer.length}`,
  );
  t.same(tmpLeft(cache), []);
});

t.test('a blob that stops after its declared bytes without ending: timeout, retried, nothing kept', async (t) => {
  const evil = await server(t, (req, res) => {
    if (req.url === `/v2/test/img/blobs/${img.layerDigest}`) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(img.layer); // and never end
      return;
    }
    if (!serveImage(img, req, res)) {
      res.writeHead(404);
      res.end();
    }
  });
  const cache = cacheDir(t);
  const err = await rejection(
    pullImage(`docker://${evil.host}/test/img:v1`, {
      insecure: true,
      cacheDir: cache,
      timeoutMs: 300,
      attempts: 2,
      backoffMs: 10,
    }),
  );
  t.equal(err.reason, 'REGISTRY');
  t.equal(
    err.message,
    `layer ${img.layerDigest} on ${evil.host}/test/img: ${evil.origin}/v2/test/img/blobs/${img.layerDigest} sent nothing for 0.3 s in the middle of the body; gave up after 2 attempts`,
  );
  t.equal(evil.seen.filter((r) => r.path.includes(img.layerDigest)).length, 2, 'the blob was tried twice');
  t.ok(await evil.allClosed(2000), 'no connection left open');
  t.same(tmpLeft(cache), []);
});

t.test('endless token and error bodies are cut short too', async (t) => {
  const realm = await server(t, (_req, res, s) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    streamForever(res, s, Buffer.alloc(64 << 10, 0x20));
  });
  const evil = await server(t, (req, res, s) => {
    if (req.url?.startsWith('/v2/test/img/')) {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm.origin}/token",service="evil"` });
      res.end();
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    streamForever(res, s, Buffer.alloc(64 << 10, 0x20));
  });
  const err = await rejection(
    pullImage(`docker://${evil.host}/test/img:v1`, { insecure: true, cacheDir: cacheDir(t) }),
  );
  t.equal(err.reason, 'AUTH');
  t.equal(
    err.message,
    `manifest v1 on ${evil.host}/test/img: the response from ${realm.origin}/token is larger than the 1 MiB limit on token server answers`,
  );
  const err2 = await rejection(
    pullImage(`docker://${evil.host}/other/img:v1`, { insecure: true, cacheDir: cacheDir(t) }),
  );
  t.equal(err2.reason, 'NOT_FOUND');
  t.ok(realm.bytesSent + evil.bytesSent < 64 << 20, 'both servers were cut off early');
  t.ok((await realm.allClosed(2000)) && (await evil.allClosed(2000)), 'no connection left open');
});

// ---------------------------------------------------------------- the CLI

/** The CLI failed the way a pilot's log wants it to: exit 255, one line, no stack. */
function oneLineFailure(t: Test, r: { code: number | null; stderr: string }, message: RegExp): void {
  t.equal(r.code, 255, 'exit 255');
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  t.equal(lines.length, 1, `one line on stderr: ${JSON.stringify(r.stderr)}`);
  t.match(lines[0], message);
  t.notMatch(r.stderr, /^\s+at /m, 'no stack trace');
}

t.test('CLI: a registry that never answers', async (t) => {
  const evil = await server(t, () => {
    /* never answer */
  });
  const cache = cacheDir(t);
  const r = await runCli(['pull', '--insecure', '--cache', cache, `docker://${evil.host}/test/img:v1`], {
    NODULARITY_REGISTRY_TIMEOUT: '0.3',
  });
  oneLineFailure(
    t,
    r,
    new RegExp(
      `^nodularity: manifest v1 on ${evil.host}/test/img: no response from ${evil.origin}/v2/test/img/manifests/v1 within 0\\.3 s; gave up after 4 attempts$`,
    ),
  );
  t.equal(evil.seen.length, 4, 'four attempts (the default)');
  t.ok(await evil.allClosed(2000), 'no connection left open');
  t.same(tmpLeft(cache), []);
});

t.test('CLI: an endless manifest', async (t) => {
  const evil = await server(t, (_req, res, s) => {
    res.writeHead(200);
    streamForever(res, s, Buffer.alloc(64 << 10, 0x20));
  });
  const cache = cacheDir(t);
  const r = await runCli(['pull', '--insecure', '--cache', cache, `docker://${evil.host}/test/img:v1`]);
  oneLineFailure(
    t,
    r,
    new RegExp(
      `^nodularity: manifest v1 on ${evil.host}/test/img: the response from ${evil.origin}/v2/test/img/manifests/v1 is larger than the 4 MiB limit on manifests$`,
    ),
  );
  t.ok(evil.bytesSent < 64 << 20, `the server got ${(evil.bytesSent / (1 << 20)).toFixed(1)} MiB out`);
  t.ok(await evil.allClosed(2000), 'no connection left open');
  t.same(tmpLeft(cache), []);
});

t.test('CLI: env credentials are not sent to a plain-http realm on another origin', async (t) => {
  const realm = await server(t, (_req, res) => {
    res.writeHead(200);
    res.end('{"token":"anonymous-token"}');
  });
  const evil = await server(t, (_req, res) => {
    res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm.origin}/token",service="evil"` });
    res.end();
  });
  const cache = cacheDir(t);
  const r = await runCli(['pull', '--insecure', '--cache', cache, `docker://${evil.host}/test/img:v1`], {
    NODULARITY_DOCKER_USERNAME: 'pilot',
    NODULARITY_DOCKER_PASSWORD: SECRET,
  });
  oneLineFailure(
    t,
    r,
    /credentials refused \(401\); credentials for \S+ were not sent to token server http:\/\/127\.0\.0\.1:\d+: plain http on another origin than the registry$/,
  );
  t.ok(realm.seen.length >= 1);
  t.same(leaks(realm, evil), [], 'the password reached neither server');
  t.same(
    realm.seen.filter((q) => q.authorization !== undefined),
    [],
    'the realm got no Authorization header',
  );
  t.same(tmpLeft(cache), []);
});

t.test('CLI: a small image through a redirect pulls with credentials (the working path)', async (t) => {
  const storage = await server(t, (_req, res) => {
    res.writeHead(200, { 'content-length': img.layer.length });
    res.end(img.layer);
  });
  const registry = await server(t, (req, res) => {
    if (req.headers.authorization !== basicPilot) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="registry"' });
      res.end();
      return;
    }
    if (req.url === `/v2/test/img/blobs/${img.layerDigest}`) {
      res.writeHead(302, { location: `${storage.origin}/b` });
      res.end();
      return;
    }
    if (!serveImage(img, req, res)) {
      res.writeHead(404);
      res.end();
    }
  });
  const cache = cacheDir(t);
  const r = await runCli(['pull', '-q', '--insecure', '--cache', cache, `docker://${registry.host}/test/img:v1`], {
    NODULARITY_DOCKER_USERNAME: 'pilot',
    NODULARITY_DOCKER_PASSWORD: SECRET,
  });
  t.equal(r.code, 0, r.stderr);
  t.same(
    storage.seen.map((q) => q.authorization),
    [undefined],
    'storage got the request, without credentials',
  );
  t.same(tmpLeft(cache), []);
});
