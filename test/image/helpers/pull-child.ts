// Run one pull in its own process (for the concurrency and kill tests).
// argv: SOURCE CACHE_DIR [insecure]; prints JSON lines: progress events,
// then {result} or {error}.
import { pullImage } from '../../../lib/image/index.js';

const [source, cacheDir, insecure] = process.argv.slice(2);
let lastUnpack = 0;
try {
  const img = await pullImage(source!, {
    cacheDir: cacheDir!,
    insecure: insecure === 'insecure',
    onProgress: (e) => {
      if (e.type === 'unpack') {
        // One line per MiB is enough for the parent to know we are mid-unpack.
        if (e.bytes - lastUnpack < 1 << 20) return;
        lastUnpack = e.bytes;
      }
      if (e.type === 'download') return;
      process.stdout.write(JSON.stringify({ progress: e.type, index: 'index' in e ? e.index : undefined }) + '\n');
    },
  });
  process.stdout.write(JSON.stringify({ result: { rootfs: img.rootfs, cached: img.cached, manifestDigest: img.manifestDigest } }) + '\n');
} catch (err) {
  process.stdout.write(JSON.stringify({ error: String((err as Error).stack ?? err) }) + '\n');
  process.exitCode = 1;
}
