// One timed unpack in a fresh process: node bench/unpack/trial.mjs IMAGE_DIST LAYOUT DEST
// Prints JSON {ms, stats}. The parent times the whole process too.
const [dist, layout, dest] = process.argv.slice(2);
const { pullImage } = await import(new URL(`file://${dist}/image/index.js`).href);
const t0 = performance.now();
const img = await pullImage(`oci:${layout}:bench`, { dest });
process.stdout.write(JSON.stringify({ ms: performance.now() - t0, stats: img.stats }) + '\n');
