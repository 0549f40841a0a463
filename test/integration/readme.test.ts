// README's code examples run as written: each ```ts block is run with plain
// node against the package by name (node_modules/nodularity -> this
// checkout, through the exports map), with only the host paths it names
// (/images/el9/rootfs, /cvmfs, ./bundle, $jobDir) pointed at test fixtures.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSpec } from '../../lib/index.js';
import { repoRoot, scratch, testRootfs } from '../helpers/env.js';

const blocks = [...readFileSync(join(repoRoot, 'README.md'), 'utf8').matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map(
  (m) => m[1],
);

t.test('README has its two examples', async (t) => {
  t.equal(blocks.length, 2);
});

function project(t: Parameters<typeof scratch>[0]): string {
  const dir = scratch(t, 'nodularity-readme-');
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(repoRoot, join(dir, 'node_modules', 'nodularity'));
  return dir;
}

function runModule(dir: string, code: string) {
  const file = join(dir, 'example.mjs');
  writeFileSync(file, code);
  return spawnSync(process.execPath, [file], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
}

t.test('the API example: spawn, run and a bundle', async (t) => {
  const dir = project(t);
  const cvmfs = join(dir, 'cvmfs');
  mkdirSync(cvmfs);
  mkdirSync(join(dir, 'bundle'));
  symlinkSync(testRootfs(), join(dir, 'bundle', 'rootfs'));
  const b = createSpec({ rootfs: 'rootfs', args: ['/bin/sh', '-c', 'echo bundle ran'] });
  writeFileSync(join(dir, 'bundle', 'config.json'), JSON.stringify(b));
  const code =
    blocks[0]
      .replace("'/images/el9/rootfs'", JSON.stringify(testRootfs()))
      .replace("source: '/cvmfs'", `source: ${JSON.stringify(cvmfs)}`) +
    '\nconsole.log(JSON.stringify({ exitCode, signal, r: r.exitCode, out: r.stdout.toString() }));\n';
  const res = runModule(dir, code);
  t.equal(res.status, 0, res.stderr);
  const lines = res.stdout.trim().split('\n');
  t.match(lines[0], /^\d+ in job-1$/, 'the spawned container printed its uid and hostname');
  t.equal(lines[1], 'bundle ran', 'the bundle ran with its own config');
  const last = JSON.parse(lines[lines.length - 1]);
  t.equal(last.exitCode, 0);
  t.equal(last.signal, null);
  t.equal(last.r, 0);
  t.match(last.out, /^\d+ in job-1\n$/);
});

t.test('the Apptainer example: exec with binds, containall, pwd, env', async (t) => {
  const dir = project(t);
  const image = join(dir, 'centos7');
  execFileSync('cp', ['-a', testRootfs(), image]);
  const cvmfs = join(dir, 'cvmfs');
  mkdirSync(cvmfs);
  const jobDir = join(dir, 'job');
  mkdirSync(jobDir);
  writeFileSync(join(jobDir, 'run.sh'), '#!/bin/sh\necho "job $JOB_ID in $(pwd) with $1"\n');
  chmodSync(join(jobDir, 'run.sh'), 0o755);
  const code =
    `const jobDir = ${JSON.stringify(jobDir)};\n` +
    blocks[1]
      .replace("'/cvmfs/unpacked.cern.ch/registry.hub.docker.com/library/centos:7'", JSON.stringify(image))
      .replace("binds: ['/cvmfs',", `binds: [${JSON.stringify(cvmfs)},`) +
    '\nlet out = ""; c.stdout.on("data", (d) => (out += d));\nawait new Promise((r) => c.once("close", r));\nconsole.log(JSON.stringify({ exitCode, out, maxRSS: rusage.maxRSS }));\n';
  const res = runModule(dir, code);
  t.equal(res.status, 0, res.stderr);
  const last = JSON.parse(res.stdout.trim().split('\n').pop()!);
  t.equal(last.exitCode, 0);
  t.equal(last.out, 'job 42 in /srv with x\n');
  t.ok(last.maxRSS > 0);
});
