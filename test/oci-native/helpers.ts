// Shared by the oci-native tests: host processes found by a tag in their
// command line (never by name or user), and a line reader for the host-side
// helpers (the test payload's `subreaper` and `recvtty` verbs).
import { execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, constants as fsc, openSync, readFileSync, readdirSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Pids of host processes whose command line holds the tag. */
export function tagged(tag: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(tag)) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

export function children(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}

/** A FIFO in dir, opened O_RDWR as runc's exec.fifo would be: the gate. */
export function fifoGate(dir: string): { path: string; fd: number } {
  const path = join(dir, 'exec.fifo');
  execFileSync('mkfifo', ['-m', '0600', path]);
  return { path, fd: openSync(path, fsc.O_RDWR) };
}

/** `start`: one byte, without blocking (the init holds the FIFO open for reading). */
export function startGate(path: string): void {
  const w = openSync(path, fsc.O_WRONLY | fsc.O_NONBLOCK);
  writeSync(w, Buffer.from([0]));
  closeSync(w);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The lines a child prints on stdout, and a wait for one matching a pattern. */
export function lineReader(child: ChildProcess) {
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  let buf = '';
  child.stdout!.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i).replace(/\r$/, ''));
      buf = buf.slice(i + 1);
    }
    waiters.splice(0).forEach((w) => w());
  });
  const waitLine = async (re: RegExp, what: string, ms = 20_000): Promise<RegExpMatchArray> => {
    const deadline = Date.now() + ms;
    for (;;) {
      for (const l of lines) {
        const m = l.match(re);
        if (m) return m;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(lines)}`);
      await new Promise<void>((res) => {
        waiters.push(res);
        setTimeout(res, 200);
      });
    }
  };
  return { lines, waitLine };
}

/** Inode of a namespace file as the host sees it (/proc/PID/ns/X). */
export function nsInode(pid: number | 'self', ns: string): string {
  return `${ns}:[${statSync(`/proc/${pid}/ns/${ns}`).ino}]`;
}
