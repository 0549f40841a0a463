// Layer blobs in the cache are content-addressed and shared across tags and
// images (issue 12 item 11: three tags sharing a 156 MiB layer downloaded and
// stored it three times), and `cache clean --type blob|root` drops them
// separately. Through the built CLI against a real docker-registry, behind a
// counting HTTP proxy written here: what the registry was asked is counted,
// not inferred from our own logs.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { removeAll, repoRoot, run, scratch, skopeoEnv } from './fixtures/tools.js';
import { makeBusyboxRootfs } from '../../scripts/busybox-rootfs.mjs';

const CLI = path.join(repoRoot, 'dist', 'cli', 'main.js');
const BIG = 6 << 20; // the shared layer: incompressible, several MiB

let reg: TestRegistry;
let proxy: http.Server;
let proxyHost: string;
let work: string;
let home: string;
/** `METHOD PATH` of every request that reached the registry through the proxy. */
const requests: string[] = [];
const digests: { busybox: string; big: string; own: Record<string, string> } = { busybox: '', big: '', own: {} };

function blob(layout: string, data: Buffer): { digest: string; size: number } {
  const hex = createHash('sha256').update(data).digest('hex');
  fs.mkdirSync(path.join(layout, 'blobs', 'sha256'), { recursive: true });
  fs.writeFileSync(path.join(layout, 'blobs', 'sha256', hex), data);
  return { digest: `sha256:${hex}`, size: data.length };
}

function tarOf(dir: string, out: string): Buffer {
  const r = spawnSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', dir, '-cf', out, '.'], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`tar: ${r.stderr}`);
  return fs.readFileSync(out);
}

/** An OCI layout with tags a, b, c: busybox + one shared big layer + a small layer of their own. */
function buildLayout(): string {
  const layout = path.join(work, 'layout');
  fs.mkdirSync(layout, { recursive: true });
  fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const bb = path.join(work, 'busybox');
  makeBusyboxRootfs(bb);
  const busybox = blob(layout, tarOf(bb, path.join(work, 'l1.tar')));
  const bigDir = path.join(work, 'big');
  fs.mkdirSync(path.join(bigDir, 'shared'), { recursive: true });
  fs.writeFileSync(path.join(bigDir, 'shared', 'data'), randomBytes(BIG));
  const big = blob(layout, tarOf(bigDir, path.join(work, 'l2.tar')));
  const manifests = [];
  for (const tag of ['a', 'b', 'c']) {
    const own = path.join(work, `own-${tag}`);
    fs.mkdirSync(own);
    fs.writeFileSync(path.join(own, 'tag'), `${tag}\n`);
    const layer = blob(layout, tarOf(own, path.join(work, `l-${tag}.tar`)));
    const layers = [busybox, big, layer];
    const cfg = blob(
      layout,
      Buffer.from(
        JSON.stringify({
          architecture: process.arch === 'x64' ? 'amd64' : process.arch,
          os: 'linux',
          config: { Env: ['PATH=/bin'], Labels: { tag } },
          rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
        }),
      ),
    );
    const m = blob(
      layout,
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...cfg },
          layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l })),
        }),
      ),
    );
    manifests.push({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      ...m,
      annotations: { 'org.opencontainers.image.ref.name': tag },
    });
  }
  fs.writeFileSync(
    path.join(layout, 'index.json'),
    JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }),
  );
  return layout;
}

/** A plain HTTP proxy in front of the registry that records each request. */
async function startProxy(upstream: string): Promise<void> {
  const [host, port] = upstream.split(':');
  proxy = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const up = http.request(
      { host, port: Number(port), method: req.method, path: req.url, headers: req.headers },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  proxyHost = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
}

const blobGets = (digest: string): number => requests.filter((r) => r === `GET /v2/test/shared/blobs/${digest}`).length;

/** The built CLI, run asynchronously: the proxy answers from this process's event loop. */
async function cli(args: string[], cache: string): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, NODULARITY_CACHE: cache },
    cwd: '/',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 180_000,
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const code = await new Promise<number | null>((res) => child.once('close', (c) => res(c)));
  return { code, out, err };
}

interface Listed {
  type: string;
  digest?: string;
  manifestDigest?: string;
  rootfs?: string;
  bytes: number;
}
const listed = async (cache: string): Promise<Listed[]> => {
  const r = await cli(['cache', 'list', '--json'], cache);
  if (r.code !== 0) throw new Error(`cache list: ${r.err}`);
  return JSON.parse(r.out) as Listed[];
};
const blobFiles = (cache: string): string[] => {
  const d = path.join(cache, 'blobs', 'sha256');
  return fs.existsSync(d) ? fs.readdirSync(d) : [];
};

t.before(async () => {
  work = scratch('blobs');
  home = scratch('skopeo-home');
  const layout = buildLayout();
  reg = await startRegistry();
  for (const tag of ['a', 'b', 'c']) {
    run(
      'skopeo',
      ['copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:${tag}`, `docker://${reg.host}/test/shared:${tag}`],
      { env: skopeoEnv(home) },
    );
  }
  await startProxy(reg.host);
  // skopeo compresses the layers on the way to the registry: take the digests the registry serves.
  for (const tag of ['a', 'b', 'c']) {
    const res = await fetch(`http://${reg.host}/v2/test/shared/manifests/${tag}`, {
      headers: {
        accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json',
      },
    });
    const m = (await res.json()) as { layers: { digest: string }[] };
    if (m.layers.length !== 3) throw new Error(`tag ${tag}: ${m.layers.length} layers`);
    digests.busybox = m.layers[0]!.digest;
    digests.big = m.layers[1]!.digest;
    digests.own[tag] = m.layers[2]!.digest;
  }
});

t.teardown(async () => {
  proxy?.close();
  proxy?.closeAllConnections();
  await reg?.stop();
  if (work) removeAll(work);
  if (home) removeAll(home);
});

t.test(
  'three tags sharing a layer: it is fetched and stored once; clean --type blob|root drop each alone',
  async (t) => {
    const cache = scratch('cache');
    t.teardown(() => removeAll(cache));
    const ref = (tag: string) => `docker://${proxyHost}/test/shared:${tag}`;
    for (const tag of ['a', 'b', 'c']) {
      const r = await cli(['pull', '-q', '--insecure', ref(tag)], cache);
      t.equal(r.code, 0, `pull ${tag}: ${r.err}`);
    }
    t.equal(blobGets(digests.big), 1, `the shared ${BIG >> 20} MiB layer was fetched once for three tags`);
    t.equal(blobGets(digests.busybox), 1, 'so was the busybox layer');
    for (const tag of ['a', 'b', 'c']) t.equal(blobGets(digests.own[tag]!), 1, `tag ${tag}'s own layer, once`);

    const all = await listed(cache);
    t.equal(all.filter((e) => e.type === 'root').length, 3, 'three roots');
    t.same(
      all
        .filter((e) => e.type === 'blob')
        .map((e) => e.digest)
        .sort(),
      [digests.busybox, digests.big, ...Object.values(digests.own)].sort(),
      'each layer blob listed once',
    );
    t.equal(
      all.find((e) => e.digest === digests.big)?.bytes,
      fs.statSync(path.join(cache, 'blobs', 'sha256', digests.big.slice(7))).size,
    );
    t.ok(all.find((e) => e.digest === digests.big)!.bytes > BIG, 'stored at its size, once');
    const text = await cli(['cache', 'list'], cache);
    t.equal(
      text.out.split('\n').filter((l) => l.startsWith(digests.big)).length,
      1,
      'the text list shows the shared blob once',
    );
    t.match(text.out, new RegExp(`^${digests.big}\\s+6\\.0 MiB\\s+\\S+\\s+\\(blob\\)$`, 'm'));
    const onlyBlobs = await cli(['cache', 'list', '-T', 'blob', '--json'], cache);
    t.same(
      (JSON.parse(onlyBlobs.out) as Listed[]).map((e) => e.type),
      Array(5).fill('blob'),
      '--type blob lists only blobs',
    );

    // Blobs go, roots stay and still run; running a cached root asks for no blob.
    const before = requests.length;
    const cb = await cli(['cache', 'clean', '--type', 'blob'], cache);
    t.equal(cb.code, 0, cb.err);
    t.match(cb.out, /^removed 0 image\(s\), freed ([6-9]|\d\d)\.\d MiB, including 5 blob\(s\)\n$/);
    t.same(blobFiles(cache), [], 'no blobs left');
    t.equal((await listed(cache)).filter((e) => e.type === 'root').length, 3, 'the roots are all still there');
    const ran = await cli(['exec', '--insecure', ref('b'), '/bin/sh', '-c', 'cat /tag; wc -c < /shared/data'], cache);
    t.equal(ran.code, 0, ran.err);
    t.equal(ran.out, `b\n${BIG}\n`, 'a root runs without its blobs');
    const layerDigests = [digests.busybox, digests.big, ...Object.values(digests.own)];
    t.same(
      requests.slice(before).filter((r) => layerDigests.some((d) => r.endsWith(d))),
      [],
      'no layer asked for to run it',
    );

    // Roots go, blobs stay: a pull after --type root unpacks from them.
    t.equal((await cli(['cache', 'clean', '--type', 'root'], cache)).code, 0);
    t.equal((await cli(['pull', '-q', '--insecure', ref('a')], cache)).code, 0);
    t.equal(blobGets(digests.big), 2, 'after blobs were cleaned, the shared layer is fetched again (once)');
    const cr = await cli(['cache', 'clean', '-T', 'root'], cache);
    t.equal(cr.code, 0, cr.err);
    t.match(cr.out, /^removed 1 image\(s\), freed/);
    t.equal((await listed(cache)).filter((e) => e.type === 'root').length, 0, 'no roots left');
    t.equal(blobFiles(cache).length, 3, "tag a's three blobs are kept");
    const pb = await cli(['pull', '-q', '--insecure', ref('c')], cache);
    t.equal(pb.code, 0, pb.err);
    t.equal(blobGets(digests.big), 2, 'the shared layer came from the cache, not the registry');
    t.equal(blobGets(digests.own.c!), 2, "only c's own layer was fetched again");
    t.ok(
      fs.existsSync(path.join((await cli(['pull', '-q', '--insecure', ref('c')], cache)).out.trim(), 'shared', 'data')),
    );
  },
);

t.test(
  'a cached blob is verified when reused: a corrupt one fails the pull, is dropped, and is fetched again',
  async (t) => {
    const cache = scratch('cache');
    t.teardown(() => removeAll(cache));
    const ref = (tag: string) => `docker://${proxyHost}/test/shared:${tag}`;
    const gets = blobGets(digests.big);
    t.equal((await cli(['pull', '-q', '--insecure', ref('a')], cache)).code, 0);
    t.equal(blobGets(digests.big), gets + 1);
    // Same size, one byte changed in the middle of the random data.
    const file = path.join(cache, 'blobs', 'sha256', digests.big.slice(7));
    const fd = fs.openSync(file, 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, 1 << 20);
    b[0] = b[0]! ^ 0xff;
    fs.writeSync(fd, b, 0, 1, 1 << 20);
    fs.closeSync(fd);
    const bad = await cli(['pull', '-q', '--insecure', ref('b')], cache);
    t.equal(bad.code, 255, 'the corrupt cached layer is not unpacked');
    t.match(bad.err, new RegExp(`^nodularity: .*${digests.big}`));
    t.notMatch(bad.err, /^\s+at /m);
    t.notOk(fs.existsSync(file), 'the corrupt blob was dropped');
    t.equal((await listed(cache)).filter((e) => e.type === 'root').length, 1, 'no root made from it');
    const good = await cli(['pull', '-q', '--insecure', ref('b')], cache);
    t.equal(good.code, 0, good.err);
    t.equal(blobGets(digests.big), gets + 2, 'fetched again, once');
  },
);
