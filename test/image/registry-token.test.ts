// Bearer-token auth against a real docker-registry configured with
// `auth: token:`: the registry sends a Bearer challenge, nodularity gets a
// token from the test's token server with basic credentials, and the
// registry verifies that token (signature against its rootcertbundle,
// issuer, audience, and the granted scope) before it serves anything.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { pullImage, ImageCache } from '../../lib/image/index.js';
import { buildFixtureImage, type FixtureImage } from './fixtures/images.js';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { startTokenServer, type TokenServer } from './fixtures/token-server.js';
import { describeTree, diffTrees } from './fixtures/tree.js';
import { removeAll, requireTool, scratch, skopeoEnv } from './fixtures/tools.js';

let fx: FixtureImage;
let tokens: TokenServer;
let registry: TestRegistry;
let work: string;
const pilot = { username: 'pilot', password: 'tok3n:pass with spaces' };
const reader = { username: 'reader', password: 'read-only' };

t.before(async () => {
  fx = await buildFixtureImage();
  work = scratch('token-auth');
  tokens = await startTokenServer(work, {
    [pilot.username]: { password: pilot.password, grants: { 'private/': ['pull', 'push'] } },
    [reader.username]: { password: reader.password, grants: { 'private/img': ['pull'] } },
  });
  registry = await startRegistry(undefined, tokens);
  // skopeo goes through the same token dance to push. Run asynchronously:
  // the token server lives on this process's event loop.
  for (const repo of ['private/img', 'private/other']) {
    await promisify(execFile)(
      requireTool('skopeo'),
      [
        'copy',
        '--quiet',
        '--dest-tls-verify=false',
        '--dest-creds',
        `${pilot.username}:${pilot.password}`,
        `oci:${fx.layout}:v1`,
        `docker://${registry.host}/${repo}:v1`,
      ],
      { env: skopeoEnv(path.join(work, 'home')) },
    ).catch((err: Error & { stderr?: string }) => {
      throw new Error(`skopeo push to ${registry.host}/${repo} failed: ${err.stderr ?? err.message}`);
    });
  }
});

t.teardown(async () => {
  await Promise.allSettled([registry?.stop(), tokens?.stop()]);
  if (fx) removeAll(fx.dir);
  if (work) removeAll(work);
});

t.test('the registry really demands a bearer token', async (t) => {
  const res = await fetch(`http://${registry.host}/v2/private/img/manifests/v1`);
  await res.body?.cancel();
  t.equal(res.status, 401);
  const challenge = res.headers.get('www-authenticate') ?? '';
  t.match(challenge, /^Bearer /);
  t.ok(challenge.includes(`realm="${tokens.realm}"`), 'realm is the test token server');
  t.ok(challenge.includes(`service="${tokens.service}"`));
  t.ok(challenge.includes('scope="repository:private/img:pull"'));
});

t.test('right credentials: token fetched with them, pull succeeds, same tree as the layout', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  const before = tokens.requests.length;
  const img = await pullImage(`docker://${registry.host}/private/img:v1`, {
    insecure: true,
    cacheDir,
    credentials: pilot,
    tlsCa: tokens.ca,
  });
  const asked = tokens.requests.slice(before);
  t.ok(asked.length >= 1, `${asked.length} token request(s)`);
  t.same(
    asked[0],
    { user: 'pilot', service: tokens.service, scopes: ['repository:private/img:pull'] },
    'basic credentials, service and pull scope from the challenge',
  );
  const local = await pullImage(`oci:${fx.layout}:v1`, { cacheDir: path.join(cacheDir, 'local') });
  t.same(diffTrees(describeTree(img.rootfs), describeTree(local.rootfs)), []);
  t.equal(img.manifestDigest, local.manifestDigest);
});

t.test('wrong password: AUTH error naming the repository, the token server and the user; nothing cached', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  const err = await pullImage(`docker://${registry.host}/private/img:v1`, {
    insecure: true,
    cacheDir,
    credentials: { username: 'pilot', password: 'wrong' },
    tlsCa: tokens.ca,
  }).then(
    () => undefined,
    (e: unknown) => e as Error & { reason?: string },
  );
  t.equal(err?.reason, 'AUTH');
  t.match(
    err?.message,
    new RegExp(
      `on ${registry.host.replace(/\./g, '\\.')}/private/img: credentials for user \`pilot\` refused by token server ${new URL(tokens.realm).origin.replace(/[./]/g, '\\$&')} \\(HTTP 401: UNAUTHORIZED: invalid username or password\\)`,
    ),
  );
  t.same(await new ImageCache(cacheDir).list(), []);
});

t.test('no credentials: the anonymous token grants nothing and the registry refuses it', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  const saved = { u: process.env.NODULARITY_DOCKER_USERNAME, p: process.env.NODULARITY_DOCKER_PASSWORD };
  delete process.env.NODULARITY_DOCKER_USERNAME;
  delete process.env.NODULARITY_DOCKER_PASSWORD;
  t.teardown(() => {
    if (saved.u !== undefined) process.env.NODULARITY_DOCKER_USERNAME = saved.u;
    if (saved.p !== undefined) process.env.NODULARITY_DOCKER_PASSWORD = saved.p;
  });
  const before = tokens.requests.length;
  await t.rejects(
    pullImage(`docker://${registry.host}/private/img:v1`, { insecure: true, cacheDir, tlsCa: tokens.ca }),
    { reason: 'AUTH', message: /private\/img: credentials refused \(401\); set NODULARITY_DOCKER_USERNAME\/PASSWORD/ },
  );
  t.equal(tokens.requests[before]?.user, '', 'asked for a token anonymously');
});

t.test('the scope is enforced: a user granted one repository cannot pull another', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  const img = await pullImage(`docker://${registry.host}/private/img:v1`, {
    insecure: true,
    cacheDir,
    credentials: reader,
    tlsCa: tokens.ca,
  });
  t.ok(fs.existsSync(path.join(img.rootfs, 'bin/busybox')));
  await t.rejects(
    pullImage(`docker://${registry.host}/private/other:v1`, {
      insecure: true,
      cacheDir,
      credentials: reader,
      tlsCa: tokens.ca,
    }),
    { reason: 'AUTH', message: /private\/other: credentials refused \(401\) for user `reader`/ },
  );
});

t.test('a token the registry cannot verify is refused (the signature is really checked)', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => {
    tokens.forgeSignatures = false;
    removeAll(cacheDir);
  });
  tokens.forgeSignatures = true;
  await t.rejects(
    pullImage(`docker://${registry.host}/private/img:v1`, {
      insecure: true,
      cacheDir,
      credentials: pilot,
      tlsCa: tokens.ca,
    }),
    { reason: 'AUTH', message: /private\/img: credentials refused \(401\) for user `pilot`/ },
  );
  tokens.forgeSignatures = false;
  const img = await pullImage(`docker://${registry.host}/private/img:v1`, {
    insecure: true,
    cacheDir,
    credentials: pilot,
    tlsCa: tokens.ca,
  });
  t.equal(img.cached, false, 'and the same pull works once tokens are signed by the trusted key');
});
