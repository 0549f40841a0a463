#!/usr/bin/env node
// A/B of the event-loop hold of spawn() across builds, in one process:
//
//   node bench/hold-ab.mjs ROOTFS NAME=CHECKOUT [NAME=CHECKOUT ...]   (N=600 launches each)
//
// Each CHECKOUT is a built tree (its dist/index.js and build/Release). Per
// build: spawn() of createSpec's default container (default seccomp profile,
// /bin/true), and a prepared container's spawn() when the build has
// prepare(); launches alternate between all of them, the order reversed every
// round. Prints the p50 and p99 of the spawn() call itself (hrtime around the
// call: how long the launch held the event loop) and the p50 of spawn ->
// exit. The first 20 rounds are warm-up.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [rootfs, ...builds] = process.argv.slice(2);
if (!rootfs || !builds.length || builds.some((b) => !b.includes('='))) {
  console.error(
    'usage: node bench/hold-ab.mjs ROOTFS NAME=CHECKOUT [NAME=CHECKOUT ...]  (env N: launches, default 600)',
  );
  process.exit(2);
}
const N = Number(process.env.N ?? 600);
const WARMUP = 20;
const q = (a, p) => {
  const v = [...a].sort((x, y) => x - y);
  return v[Math.min(v.length - 1, Math.floor(p * v.length))];
};

const drivers = [];
for (const b of builds) {
  const [name, dir] = b.split('=');
  const entry = join(resolve(dir), 'dist', 'index.js');
  if (!existsSync(entry)) {
    console.error(`${name}: ${entry} does not exist (build that checkout first)`);
    process.exit(2);
  }
  const m = await import(pathToFileURL(entry).href);
  const spec = m.createSpec({ rootfs: resolve(rootfs), args: ['/bin/true'] });
  drivers.push({ name: `${name} spawn()`, go: () => m.spawn(spec, { stdio: 'ignore' }), hold: [], total: [] });
  if (typeof m.prepare === 'function') {
    const tpl = m.prepare(spec);
    drivers.push({ name: `${name} prepared`, go: () => tpl.spawn({ stdio: 'ignore' }), hold: [], total: [] });
  }
}
for (let i = 0; i < N + WARMUP; i++) {
  for (const d of i % 2 ? drivers : [...drivers].reverse()) {
    const t0 = process.hrtime.bigint();
    const c = d.go();
    const t1 = process.hrtime.bigint();
    const r = await c.exited;
    const t2 = process.hrtime.bigint();
    if (r.exitCode !== 0) throw new Error(`${d.name}: exit ${r.exitCode}`);
    if (i < WARMUP) continue;
    d.hold.push(Number(t1 - t0) / 1e6);
    d.total.push(Number(t2 - t0) / 1e6);
  }
}
console.log(`${N} launches each, alternating; ms`);
for (const d of drivers)
  console.log(
    `${d.name.padEnd(28)} hold p50 ${q(d.hold, 0.5).toFixed(3)}  p99 ${q(d.hold, 0.99).toFixed(3)}  spawn->exit p50 ${q(d.total, 0.5).toFixed(3)}`,
  );
