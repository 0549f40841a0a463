// Issue 13's "done when": a pilot wrapper written for Apptainer runs
// unchanged with nodularity installed as `apptainer` (a symlink on PATH).
// The site sets APPTAINER_BIND (a CernVM-FS stand-in at /cvmfs); the pilot
// checks `apptainer --version`, runs a job in HTCondor's argument form, a
// payload that installs a package as --fakeroot in a Debian image, and ends
// in `apptainer shell` at a terminal, which the test types into.
import t from 'tap';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { haveCommand, scratch } from '../helpers/env.js';
import { installAs, jobEnv } from './apptainer-cli.js';
import { debianImage, fakerootIdEnv, makeDeb, treeState } from './debian.js';
import { makeSandbox } from './fixtures.js';

// Written for Apptainer: nothing in it knows about nodularity.
const PILOT = `#!/bin/sh
set -e
case "$(apptainer --version)" in
  "apptainer version "[0-9]*) echo "pilot: $(apptainer --version)" ;;
  *) echo "pilot: no apptainer"; exit 1 ;;
esac
# The payload job, in HTCondor's argument form.
apptainer -s exec -S /tmp -S /var/tmp -W "$JOB_DIR" --pwd "$JOB_DIR" -B "$SLOT_DIR" --home "$JOB_DIR" -C \\
  "$JOB_IMAGE" "$JOB_DIR/condor_exec.exe" arg1 --flag
echo "pilot: job done, output $(cat "$JOB_DIR/out.txt")"
# A payload that installs what it needs as fakeroot.
apptainer exec --fakeroot --writable-tmpfs -C -B "$PKG_DIR:/pkgs" "$DEBIAN_IMAGE" \\
  sh -c 'dpkg -i /pkgs/nodularity-hello.deb >/dev/null 2>&1 && nodularity-hello && echo "fakeroot job sees $(cat /cvmfs/repo/README)"'
# Hand over to whoever watches, in the payload's image.
exec apptainer shell "$DEBIAN_IMAGE"
`;

t.test('a pilot written for Apptainer runs unchanged with nodularity as apptainer', async (t) => {
  t.ok(haveCommand('script'), 'util-linux script is installed');
  const cli = installAs(t, 'apptainer');
  const debian = debianImage();
  const before = treeState(debian);
  const base = scratch(t, 'nodularity-pilot-');
  chmodSync(base, 0o755);
  const cvmfs = join(base, 'cvmfs');
  mkdirSync(join(cvmfs, 'repo'), { recursive: true });
  writeFileSync(join(cvmfs, 'repo', 'README'), 'site-data');
  // The slot directly under /tmp, as the CLI test of HTCondor's form has it:
  // a bind two levels below the fresh /tmp of -C is refused by the planner's
  // executable check today (reported, lib/plan is not this test's subject).
  const slot = base;
  const jobDir = join(slot, 'execute', 'dir_7');
  mkdirSync(jobDir, { recursive: true });
  writeFileSync(
    join(jobDir, 'condor_exec.exe'),
    '#!/bin/sh\necho "job: $* in $(pwd) home=$HOME cvmfs=$(cat /cvmfs/repo/README) id=$JOB_ID"; echo result > out.txt\n',
  );
  chmodSync(join(jobDir, 'condor_exec.exe'), 0o755);
  const pkgs = join(base, 'pkgs');
  mkdirSync(pkgs);
  makeDeb(pkgs, 'nodularity-hello');
  writeFileSync(join(base, 'pilot.sh'), PILOT);
  const env = jobEnv({
    ...fakerootIdEnv(base),
    PATH: `${dirname(cli)}:${process.env.PATH}`,
    APPTAINER_BIND: `${cvmfs}:/cvmfs`, // the site's
    APPTAINERENV_JOB_ID: '7.0', // HTCondor's
    JOB_DIR: jobDir,
    SLOT_DIR: slot,
    JOB_IMAGE: makeSandbox(t),
    PKG_DIR: pkgs,
    DEBIAN_IMAGE: debian,
    SHELL: '/bin/sh',
  });
  const p = spawn('script', ['-qefc', `sh ${join(base, 'pilot.sh')}`, '/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env,
  });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
  for (let i = 0; i < 2400 && !/Apptainer> /.test(out); i++) await new Promise((r) => setTimeout(r, 50));
  p.stdin.write('echo "in $APPTAINER_COMMAND as $(id -u) cvmfs=$(cat /cvmfs/repo/README)"; tty; exit 5\n');
  const status = await exited;
  clearTimeout(timer);
  // As the terminal showed it, less bash's and the relay's control sequences.
  const text = out.replace(/\r/g, '').replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
  t.equal(status, 5, `the shell's exit status is the pilot's: ${text}`);
  t.match(text, /^pilot: apptainer version \d+\.\d+\.\d+\+nodularity/m);
  t.match(
    text,
    new RegExp(`^job: arg1 --flag in ${jobDir} home=${jobDir} cvmfs=site-data id=7\\.0$`, 'm'),
    "the HTCondor job, with the site's bind",
  );
  t.match(text, /^pilot: job done, output result$/m);
  t.equal(readFileSync(join(jobDir, 'out.txt'), 'utf8'), 'result\n');
  t.match(text, /^nodularity-hello installed\nfakeroot job sees site-data$/m, 'the fakeroot package install');
  t.match(
    text,
    new RegExp(`^in shell as ${process.geteuid!()} cvmfs=site-data$`, 'm'),
    "the shell, with the site's bind",
  );
  t.match(text, /^\/dev\/pts\/\d+$/m, 'at a terminal of its own');
  t.notMatch(text, /FATAL|nodularity:/, 'no failure on the way');
  t.equal(treeState(debian), before, 'the Debian image is unchanged');
});
