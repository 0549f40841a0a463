// exec() against prepareExec().run() on one image, in one process, the two
// loops taking turns in blocks: how much a pilot saves by preparing an image
// it launches many short payloads from. Ratios in one run; no targets.
//   node bench/prepare-exec.mjs IMAGE_DIR [LAUNCHES=200] [BLOCK=20]
// (build first: npm run build). The image should have what pilots' images
// have, e.g. a /.singularity.d/env script: exec() evaluates it in a container
// of its own at every launch, prepareExec() once.
import { exec, prepareExec } from '../dist/index.js';

const [image, n = '200', block = '20'] = process.argv.slice(2);
if (!image) {
  console.error('usage: node bench/prepare-exec.mjs IMAGE_DIR [LAUNCHES] [BLOCK]');
  process.exit(2);
}
const stdio = ['ignore', 'ignore', 'ignore'];
const N = Number(n);
const B = Number(block);
const p = await prepareExec(image, ['/bin/true'], { stdio });
const time = { exec: 0, prepared: 0 };
for (let done = 0; done < N; done += B) {
  let t = performance.now();
  for (let i = 0; i < B; i++) await (await exec(image, ['/bin/true'], { stdio })).exited;
  time.exec += performance.now() - t;
  t = performance.now();
  for (let i = 0; i < B; i++) await p.run({ env: { JOB: String(done + i) } });
  time.prepared += performance.now() - t;
}
p.close();
const per = (ms) => (ms / N).toFixed(2);
console.log(`exec():               ${per(time.exec)} ms per launch`);
console.log(`prepareExec().run():  ${per(time.prepared)} ms per launch`);
console.log(`ratio: ${(time.exec / time.prepared).toFixed(2)}x (${N} launches each, blocks of ${B}, ${image})`);
