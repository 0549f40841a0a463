// The built CLI as users run it: from a pipe, from a real terminal (a pty
// made by util-linux `script`), and signalled as a terminal or a batch system
// would (issue 12 items 1, 7, 8).
import t from 'tap';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { haveCommand, repoRoot, scratch, testRootfs } from '../helpers/env.js';

const CLI = join(repoRoot, 'dist', 'cli', 'main.js');
const node = process.execPath;
const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Run a shell pipeline; its stdout and status. */
function shell(cmd: string, timeout = 60_000) {
  const r = spawnSync('/bin/sh', ['-c', cmd], { encoding: 'utf8', timeout });
  return { out: r.stdout, err: r.stderr, status: r.status };
}

/**
 * Run `cmd` at a real terminal: `script` gives it a pty and relays what we
 * write, with pauses, as typed keys. Returns what the terminal showed and the
 * command's exit status.
 */
async function atTerminal(cmd: string, keys: [ready: RegExp | (() => boolean), text: string][], timeout = 60_000) {
  t.ok(haveCommand('script'), 'util-linux script is installed');
  // script runs cmd with $SHELL: pin it to /bin/sh so a developer's bash
  // and CI's unset SHELL give the same test.
  const p = spawn('script', ['-qefc', cmd, '/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, SHELL: '/bin/sh' },
  });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (out += d));
  const timer = setTimeout(() => p.kill('SIGKILL'), timeout);
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  let seen = 0;
  for (const [re, text] of keys) {
    // Type only once the payload showed it is ready: keys typed earlier would
    // meet the host terminal before the CLI made it raw.
    if (re instanceof RegExp) await waitFor(() => out.slice(seen), re);
    else for (let i = 0; i < 600 && !re(); i++) await new Promise((r) => setTimeout(r, 50));
    seen = out.length;
    p.stdin.write(text);
  }
  const status = await exited;
  clearTimeout(timer);
  return { out, status };
}

/** Wait until `out()` matches, polling; the matched text or what there was. */
async function waitFor(out: () => string, re: RegExp, ms = 30_000): Promise<string> {
  for (let i = 0; i < ms / 50 && !re.test(out()); i++) await new Promise((r) => setTimeout(r, 50));
  return out();
}

t.test('stdin and stdout stay blocking for the payload: nothing is lost through pipes (item 1)', async (t) => {
  const img = testRootfs();
  const late = shell(`(sleep 1; echo data) | ${node} ${CLI} exec ${img} cat`);
  t.equal(late.status, 0, late.err);
  t.equal(late.out, 'data\n', 'cat read stdin that arrived late (no EAGAIN)');
  const big = shell(`${node} ${CLI} exec ${img} head -c 20000000 /dev/zero | (sleep 2; wc -c)`);
  t.equal(big.status, 0, big.err);
  t.equal(big.out.trim(), '20000000', 'a slow reader got every byte');
  // A Python pilot reading the CLI's output through a pipe.
  const py = shell(
    `python3 -c ${sq(`import subprocess,sys; r = subprocess.run([${JSON.stringify(node)}, ${JSON.stringify(CLI)}, 'exec', ${JSON.stringify(img)}, 'seq', '200000'], stdout=subprocess.PIPE); print(r.returncode, len(r.stdout.splitlines()))`)}`,
  );
  t.equal(py.out.trim(), '0 200000', py.err);
});

t.test('shell at a real terminal: its own tty, job control, the exit status (item 8)', async (t) => {
  const r = await atTerminal(`${node} ${CLI} shell ${testRootfs()}`, [
    [
      /Apptainer> /,
      'tty; for f in 0 1 2; do [ -t $f ] && echo "fd$f=tty"; done; echo "pgrp=$(cut -d" " -f5 /proc/self/stat) tpgid=$(cut -d" " -f8 /proc/self/stat)"\n',
    ],
    [/tpgid=\d+/, 'exit 4\n'],
  ]);
  t.equal(r.status, 4, 'exit 4 comes back as 4');
  t.match(r.out, /\/dev\/pts\/\d+\r\n/, "tty names the container's terminal");
  t.notMatch(r.out, /not a tty|NDELAY/);
  t.match(
    r.out,
    /fd0=tty\r\nfd1=tty\r\nfd2=tty\r\n/,
    'stdin, stdout and stderr are all the terminal (bash is interactive only if stderr is too)',
  );
  const m = /pgrp=(\d+) tpgid=(\d+)/.exec(r.out);
  t.ok(m, 'the shell reported its process group');
  t.match(m?.[1], m?.[2], "the shell is its terminal's foreground process group (job control)");
});

/** A copy of the test rootfs (it has /payload) where the output file of the redirected case can live. */
function counterImage(t: Parameters<typeof scratch>[0]): string {
  const img = join(scratch(t, 'nodularity-term-'), 'img');
  execFileSync('cp', ['-a', testRootfs(), img]);
  return img;
}

// `/payload countsig N S` counts deliveries of signal N for S seconds, after
// printing "ready" (a C handler: deliveries milliseconds apart count apart).
t.test('Ctrl-C at a terminal reaches the payload exactly once (item 7)', async (t) => {
  const img = counterImage(t);
  // With a terminal of its own (all three streams at the terminal).
  const term = await atTerminal(`${node} ${CLI} exec ${img} /payload countsig 2 4`, [[/ready/, '\x03']]);
  t.match(term.out, /(?<![0-9])2=1(?![0-9])/, `one SIGINT with a container terminal: ${JSON.stringify(term.out)}`);
  // Without one (output redirected): the host terminal's SIGINT goes to the
  // CLI's process group only (the container has a session of its own) and the
  // CLI forwards it. (Not `| cat`: the terminal's SIGINT would kill cat, the
  // foreground job's other member.)
  const file = join(img, 'out.txt');
  writeFileSync(file, '');
  // `exec`: the CLI replaces script's shell, so no shell shares the
  // foreground process group (dash, CI's /bin/sh, dies of the same Ctrl-C;
  // bash waits for its child); the file is read here, not by a shell.
  const plain = await atTerminal(`exec ${node} ${CLI} exec ${img} /payload countsig 2 4 > ${file}`, [
    [() => readFileSync(file, 'utf8').includes('ready'), '\x03'],
  ]);
  const got = readFileSync(file, 'utf8');
  t.equal(plain.status, 0, `the CLI exits with the payload's status: ${JSON.stringify(plain.out)}`);
  t.match(got, /(?<![0-9])2=1(?![0-9])/, `one SIGINT through the CLI: ${JSON.stringify(got)}`);
});

t.test("a signal to the CLI's process group (batch systems) reaches the payload exactly once (item 7)", async (t) => {
  const p = spawn(node, [CLI, 'exec', testRootfs(), '/payload', 'countsig', '15', '3'], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  await waitFor(() => out, /ready/);
  process.kill(-p.pid!, 'SIGTERM'); // the whole process group, as Slurm and HTCondor signal a job
  const code = await new Promise((r) => p.once('exit', r));
  t.equal(code, 0);
  t.match(out, /(?<![0-9])15=1(?![0-9])/, out);
  // Sanity: a process group is what the CLI leads (so the test means something).
  t.ok(execFileSync('ps', ['-o', 'pgid=', '-p', String(process.pid)], { encoding: 'utf8' }).trim() !== String(p.pid));
});
