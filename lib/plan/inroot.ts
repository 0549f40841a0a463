// Reading a file of an image from the host side (its /etc/passwd, /etc/group)
// the way the child resolves mount targets: openat2(RESOLVE_IN_ROOT) from the
// image root, so a symlink or `..` in the image never reaches a host file;
// resolved O_PATH and checked before it is opened for reading, so a device
// node or FIFO in the image is never opened on the host; only regular files, and
// never more than a cap, so /dev/zero or a huge file cannot exhaust memory.
import { closeSync, fstatSync, readSync } from 'node:fs';
import { ContainerError } from '../errors.js';
import { loadBinding } from '../native.js';

export class InRootReadError extends Error {
  constructor(
    readonly path: string,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'InRootReadError';
  }
}

/** The contents of `path` inside `root`, or throws InRootReadError (code ENOENT when absent). */
export function readFileInRoot(root: string, path: string, maxBytes = 16 << 20): Buffer {
  let fd: number;
  try {
    fd = loadBinding().openInRoot(root, path);
  } catch (e) {
    // A ContainerError (step open-in-root) from the addon; anything else
    // (the addon failed to load) is not ours to rename.
    if (!(e instanceof ContainerError) || e.code === undefined) throw e;
    const code = e.code;
    // The addon refuses anything but a regular file before opening it for
    // reading (a device node would otherwise be opened on the host): EINVAL.
    if (code === 'EINVAL' || code === 'EISDIR')
      throw new InRootReadError(path, 'EINVAL', `${path} in the image ${root} is not a regular file`);
    throw new InRootReadError(path, code, `${path} in the image ${root}: cannot open (${code})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new InRootReadError(path, 'EINVAL', `${path} in the image ${root} is not a regular file`);
    if (st.size > maxBytes)
      throw new InRootReadError(path, 'EFBIG', `${path} in the image ${root} is larger than ${maxBytes} bytes`);
    const buf = Buffer.alloc(Math.min(st.size + 1, maxBytes + 1));
    let got = 0;
    for (;;) {
      if (got === buf.length)
        throw new InRootReadError(path, 'EFBIG', `${path} in the image ${root} grew past ${maxBytes} bytes while read`);
      const n = readSync(fd, buf, got, buf.length - got, null);
      if (n === 0) break;
      got += n;
      if (got > maxBytes)
        throw new InRootReadError(path, 'EFBIG', `${path} in the image ${root} is larger than ${maxBytes} bytes`);
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}
