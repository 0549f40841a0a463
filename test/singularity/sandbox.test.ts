// test-runner: serial — mounts squashfuse on the host and compares the whole host mount table
// An unpacked.cern.ch-style sandbox served read-only from squashfuse (a FUSE
// file system, as CernVM-FS is), its env scripts and runscript, and a /cvmfs
// stand-in whose second repository is mounted after the container started.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { exec, runImage, runscript, testImage } from '../../lib/index.js';
import { haveCommand, hostMounts, scratch } from '../helpers/env.js';
import { makeSandbox, sh } from './fixtures.js';

const tools = haveCommand('squashfuse') && haveCommand('mksquashfs') && haveCommand('fusermount3');

function squashfuse(t: Parameters<typeof scratch>[0], src: string, mnt: string): void {
  const img = `${mnt}.sqfs`;
  mkdirSync(dirname(mnt), { recursive: true });
  execFileSync('mksquashfs', [src, img, '-quiet', '-noappend', '-all-root']);
  mkdirSync(mnt, { recursive: true });
  const r = spawnSync('squashfuse', [img, mnt], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`squashfuse ${img} ${mnt}: ${r.stderr}`);
  t.teardown(() => {
    spawnSync('fusermount3', ['-u', mnt]);
  });
}

let sandbox: string;
let hostEnv: NodeJS.ProcessEnv;
let base: string;
t.before(() => {
  if (!tools) return;
  base = scratch(t, 'nodularity-cvmfs-');
  const src = makeSandbox(t, {
    env: {
      '01-base.sh': 'export IMAGE_BASE=base\nexport OVERRIDDEN=image\nexport ORDER=01\n',
      '90-environment.sh':
        'export ORDER="$ORDER 90"\nexport GLOB=*\nexport PATH="/opt/tool/bin:$PATH"\necho noise-on-stdout\n',
      README: 'not a script: ignored\n',
    },
    runscript: '#!/bin/sh\necho "runscript: $*"; echo "IMAGE_BASE=$IMAGE_BASE"\n',
    test: '#!/bin/sh\n[ "$IMAGE_BASE" = base ] && echo test-ok\n',
  });
  // Served read-only from squashfs through FUSE, as unpacked.cern.ch is.
  sandbox = join(base, 'unpacked', 'image');
  squashfuse(t, src, sandbox);
  hostEnv = { HOME: base, TERM: 'dumb', PATH: '/host/bin' };
});

t.test('the tools are installed', async (t) => {
  t.ok(tools, 'squashfuse, squashfs-tools and fuse3 are installed');
});

t.test('a read-only FUSE sandbox runs as it is, binds onto targets missing in it work', async (t) => {
  if (!tools) return;
  const job = scratch(t);
  writeFileSync(join(job, 'input'), 'payload input\n');
  const r = await sh(
    sandbox,
    'cat /srv/job/input; echo out > /srv/job/output; touch /usr/x 2>/dev/null || echo image-ro; grep -c "^overlay / overlay ro," /proc/mounts',
    { hostEnv, hostCwd: '/', binds: [`${job}:/srv/job`] },
  );
  t.equal(r.code, 0, r.err);
  t.same(r.out.trim().split('\n'), ['payload input', 'image-ro', '1']);
  t.equal(execFileSync('cat', [join(job, 'output')], { encoding: 'utf8' }), 'out\n');
});

t.test('env scripts: in lexical order, no glob expansion, image PATH kept, prefixes and --env win', async (t) => {
  if (!tools) return;
  const cwd = scratch(t);
  writeFileSync(join(cwd, 'a-file-that-a-glob-would-find'), '');
  const r = await sh(sandbox, 'echo "$ORDER|$GLOB|$IMAGE_BASE|$OVERRIDDEN|$FROM_ENV|$PATH"', {
    hostEnv: { ...hostEnv, APPTAINERENV_OVERRIDDEN: 'apptainerenv' },
    hostCwd: cwd,
    env: ['FROM_ENV=env'],
  });
  t.equal(r.code, 0, r.err);
  t.equal(
    r.out.trim(),
    '01 90|*|base|apptainerenv|env|/opt/tool/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    "scripts sourced in order, * left alone, the scripts' stdout is not the payload's",
  );
  const e = await sh(sandbox, 'echo $OVERRIDDEN', { hostEnv, hostCwd: cwd, env: { OVERRIDDEN: 'env-wins' } });
  t.equal(e.out.trim(), 'env-wins');
});

t.test('env scripts are bounded in time and their failure is reported', async (t) => {
  if (!tools) return;
  const slow = makeSandbox(t, { env: { '50-slow.sh': 'sleep 30\n' } });
  const mounts = hostMounts();
  await t.rejects(
    exec(slow, ['true'], { hostEnv, hostCwd: '/', envScriptTimeout: 300 }),
    /\.singularity\.d\/env: the environment scripts did not finish within 0\.3 s/,
  );
  const bad = makeSandbox(t, { env: { '50-bad.sh': 'echo broken >&2; exit 3\n' } });
  await t.rejects(
    exec(bad, ['true'], { hostEnv, hostCwd: '/' }),
    /the environment scripts failed with status 3:\nbroken/,
  );
  t.equal(hostMounts(), mounts);
});

t.test('run uses the runscript; test runs the test script', async (t) => {
  if (!tools) return;
  t.equal(runImage, runscript, 'runImage: the deprecated name of runscript');
  const c = await runscript(sandbox, ['a', 'b c'], { hostEnv, hostCwd: '/', stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  c.stdout!.on('data', (d) => (out += d));
  t.equal((await c.exited).exitCode, 0);
  await new Promise((r) => setImmediate(r));
  t.equal(out, 'runscript: a b c\nIMAGE_BASE=base\n');
  const tc = await testImage(sandbox, { hostEnv, hostCwd: '/', stdio: ['ignore', 'pipe', 'inherit'] });
  let tout = '';
  tc!.stdout!.on('data', (d) => (tout += d));
  t.equal((await tc!.exited).exitCode, 0);
  t.equal(tout, 'test-ok\n');
  t.equal(await testImage(makeSandbox(t), { hostEnv }), null, 'no test script: nothing to run');
});

t.test('/cvmfs stand-in: repositories bound recursively, one mounted after the start shows inside', async (t) => {
  if (!tools) return;
  const cvmfs = join(base, 'cvmfs');
  const repoSrc = (name: string) => {
    const d = join(base, 'src', name);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'marker'), `${name}\n`);
    return d;
  };
  squashfuse(t, repoSrc('first.example.org'), join(cvmfs, 'first.example.org'));
  mkdirSync(join(cvmfs, 'late.example.org'));
  const c = await exec(
    sandbox,
    [
      '/bin/sh',
      '-c',
      'cat /cvmfs/first.example.org/marker; for i in $(seq 100); do [ -e /cvmfs/late.example.org/marker ] && exec cat /cvmfs/late.example.org/marker; sleep 0.1; done; echo timeout',
    ],
    { hostEnv, hostCwd: '/', binds: [`${cvmfs}:/cvmfs`], containall: true, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  c.stdout!.on('data', (d) => (out += d));
  await c.spawned;
  squashfuse(t, repoSrc('late.example.org'), join(cvmfs, 'late.example.org'));
  t.equal((await c.exited).exitCode, 0);
  await new Promise((r) => setImmediate(r));
  t.equal(out, 'first.example.org\nlate.example.org\n');
  await t.rejects(
    exec(sandbox, ['true'], { hostEnv, binds: [`${cvmfs}/missing.example.org:/cvmfs/missing.example.org`] }),
    /--bind: bind source .*missing\.example\.org does not exist \(ENOENT\)/,
  );
});
