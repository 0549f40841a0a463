// `nodularity instance start|run|list|stop` and `exec instance://NAME`
// through the built CLI (issue 18): an instance outlives the CLI that started
// it, is listed (text, JSON, log paths), joined (same PID namespace: the
// service's process is visible; same /tmp), refused a second time under the
// same name or under a name with `../`, stopped with SIGKILL after --timeout
// when it ignores SIGTERM, and noticed and cleaned when its init is killed.
// A VO-box style service: busybox httpd on 127.0.0.1 from the startscript,
// reached from the host, stopped cleanly.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { testRootfs } from '../helpers/env.js';
import { requireBuiltCli } from '../hostile/fixtures.js';
import {
  freePort,
  icli,
  imageWithStartscript,
  mountsUnder,
  pidsTagged,
  recorded,
  running,
  storeBase,
  until,
  userStore,
} from './helpers.js';

t.before(() => requireBuiltCli());

interface Listed {
  instance: string;
  pid: number;
  img: string;
  ip: string;
  logErrPath: string;
  logOutPath: string;
}

function listJson(base: string): Listed[] {
  const r = icli(base, ['instance', 'list', '--json']);
  if (r.code !== 0) throw new Error(`instance list --json: ${r.err}`);
  return (JSON.parse(r.out) as { instances: Listed[] }).instances;
}

function httpGet(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/index.html', timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

t.test('start, list, join, refuse the name twice, stop', async (t) => {
  const base = storeBase(t);
  const rootfs = testRootfs();
  t.teardown(() => void icli(base, ['instance', 'stop', '--all', '--force']));
  const pidFile = join(base, '..', 'one.pid');
  const s = icli(base, ['instance', 'start', '--contain', '--pid-file', pidFile, rootfs, 'one']);
  t.equal(s.code, 0, `instance start (stderr: ${s.err})`);
  t.match(s.err, /^INFO: +instance started successfully$/m);
  // The CLI has exited: the instance is still there.
  const [one] = listJson(base);
  t.equal(one?.instance, 'one');
  t.ok(one && running(one.pid), 'the init runs after the CLI exited');
  t.equal(one?.img, rootfs);
  t.equal(readFileSync(pidFile, 'utf8'), `${one!.pid}\n`, '--pid-file');
  t.equal(one?.logOutPath, join(userStore(base), 'logs', 'one.out'));
  t.ok(existsSync(one!.logErrPath), 'log file made');

  const text = icli(base, ['instance', 'list']);
  t.equal(text.code, 0);
  t.match(text.out, /^INSTANCE NAME +PID +IP +IMAGE\n/);
  t.match(text.out, new RegExp(`^one +${one!.pid} +${rootfs.replace(/[/.]/g, '\\$&')}$`, 'm'));
  const logs = icli(base, ['instance', 'list', '--logs']);
  t.match(logs.out, /^INSTANCE NAME +PID +LOGS\n/);
  t.ok(logs.out.includes(one!.logErrPath) && logs.out.includes(one!.logOutPath), 'log paths listed');

  // With --contain the instance has a /tmp of its own: one exec writes there,
  // the next reads it (same mount namespace), and the host's /tmp has no such file.
  const tag = `inst-tag-${process.pid}`;
  const w = icli(base, ['exec', 'instance://one', '/bin/sh', '-c', `echo ${tag} > /tmp/${tag}`]);
  t.equal(w.code, 0, w.err);
  const r = icli(base, ['exec', 'instance://one', '/bin/sh', '-c', `cat /tmp/${tag}; ps -o pid,args`]);
  t.equal(r.code, 0, r.err);
  t.match(r.out, new RegExp(`^${tag}$`, 'm'), 'same /tmp');
  t.notOk(existsSync(`/tmp/${tag}`), "not the host's /tmp");
  t.match(r.out, /^\s*1 .*nodularity-init/m, "the instance's init is PID 1 in the exec's view (same pid namespace)");

  const again = icli(base, ['instance', 'start', rootfs, 'one']);
  t.equal(again.code, 255);
  t.match(again.err, /^nodularity: instance name: an instance one already exists\n$/);
  const bad = icli(base, ['instance', 'start', rootfs, '../evil']);
  t.equal(bad.code, 255);
  t.match(bad.err, /invalid instance name "\.\.\/evil"/);
  t.notMatch(bad.err, /\n\s+at /);
  t.notOk(existsSync(join(userStore(base), '..', 'evil')), 'nothing made beside the store');
  const long = icli(base, ['instance', 'start', rootfs, 'x'.repeat(129)]);
  t.match(long.err, /at most 128/);

  const stop = icli(base, ['instance', 'stop', 'one']);
  t.equal(stop.code, 0, stop.err);
  t.match(stop.err, new RegExp(`Stopping one instance of .* \\(PID=${one!.pid}\\)`));
  t.notOk(running(one!.pid), 'stop returns when the init is gone');
  t.same(recorded(base), [], 'no record left');
  t.same(listJson(base), []);
  const none = icli(base, ['instance', 'stop', 'one']);
  t.equal(none.code, 255);
  t.match(none.err, /no instance found with name one/);
  t.match(icli(base, ['instance', 'stop']).err, /give an instance name or --all/);
});

t.test('a VO-box service: httpd on 127.0.0.1 from the startscript, reached from the host', async (t) => {
  const base = storeBase(t);
  const port = await freePort();
  const image = imageWithStartscript(
    t,
    `echo "starting httpd on $1"\nexec httpd -f -p 127.0.0.1:$1 -h /www`,
    'VO-box says hello\n',
  );
  t.teardown(() => void icli(base, ['instance', 'stop', '--all', '--force']));
  const s = icli(base, ['instance', 'start', image, 'vobox', String(port)]);
  t.equal(s.code, 0, s.err);
  t.ok(
    await until(() => {
      try {
        return readFileSync(join(userStore(base), 'logs', 'vobox.out'), 'utf8').includes('starting httpd');
      } catch {
        return false;
      }
    }),
    "the startscript's stdout is in the instance's log",
  );
  let body = '';
  for (let i = 0; i < 100 && !body; i++) {
    body = await httpGet(port).catch(() => '');
    if (!body) await new Promise((r) => setTimeout(r, 50));
  }
  t.equal(body, 'VO-box says hello\n', 'served from the instance to the host');
  const ps = icli(base, ['exec', 'instance://vobox', 'ps', '-o', 'pid,args']);
  t.match(ps.out, /httpd -f -p 127\.0\.0\.1/, "the service's process is visible to exec");
  const [v] = listJson(base);
  const stop = icli(base, ['instance', 'stop', 'vobox']);
  t.equal(stop.code, 0, stop.err);
  t.notOk(running(v!.pid));
  await t.rejects(httpGet(port), 'the port is closed after stop');
  t.same(recorded(base), []);
});

t.test('stop --timeout: a service that ignores SIGTERM ends with SIGKILL', async (t) => {
  const base = storeBase(t);
  const tag = `ignore-term-${process.pid}`;
  const image = imageWithStartscript(t, `trap '' TERM\nwhile :; do sleep 1; done # ${tag}`);
  t.teardown(() => void icli(base, ['instance', 'stop', '--all', '--force']));
  const s = icli(base, ['instance', 'start', image, 'stubborn']);
  t.equal(s.code, 0, s.err);
  const [st] = listJson(base);
  const t0 = Date.now();
  const stop = icli(base, ['instance', 'stop', '--timeout', '1', 'stubborn']);
  const took = Date.now() - t0;
  t.equal(stop.code, 0, stop.err);
  t.match(stop.err, /stubborn did not stop within 1 s: killed \(SIGKILL\)/);
  t.ok(took >= 1000 && took < 8000, `took ${took} ms (1 s of grace, then SIGKILL)`);
  t.notOk(running(st!.pid));
  t.same(pidsTagged(tag), [], 'no process of the instance left');
  t.same(recorded(base), []);
  const bad = icli(base, ['instance', 'stop', '--timeout', 'soon', 'x']);
  t.match(bad.err, /--timeout: must be a number of seconds/);
});

t.test('a killed init is noticed: not listed, cleaned, the name free again', async (t) => {
  const base = storeBase(t);
  const rootfs = testRootfs();
  t.teardown(() => void icli(base, ['instance', 'stop', '--all', '--force']));
  t.equal(icli(base, ['instance', 'start', rootfs, 'victim']).code, 0);
  const [v] = listJson(base);
  process.kill(v!.pid, 'SIGKILL');
  t.ok(await until(() => !running(v!.pid)), 'init killed');
  t.same(listJson(base), [], 'a dead instance is not listed');
  t.same(recorded(base), [], 'and its record was removed by list');
  const j = icli(base, ['exec', 'instance://victim', 'true']);
  t.equal(j.code, 255);
  t.match(j.err, /no instance victim is running/);
  t.equal(icli(base, ['instance', 'start', rootfs, 'victim']).code, 0, 'the name can be used again');
  // A record from an earlier boot (a reboot kept the home directory): stale, whatever its pid.
  const [again] = listJson(base);
  const state = join(userStore(base), 'victim', 'state.json');
  const rec = JSON.parse(readFileSync(state, 'utf8')) as { bootId: string };
  t.ok(running(again!.pid));
  const { writeFileSync } = await import('node:fs');
  writeFileSync(state, JSON.stringify({ ...rec, bootId: '00000000-0000-0000-0000-000000000000' }), { mode: 0o600 });
  t.same(listJson(base), [], 'a record of another boot is not listed');
  t.equal(icli(base, ['instance', 'start', rootfs, 'victim']).code, 0, 'nor does it block a new start');
  // the first one (still running: it was only forgotten) is ours to end
  process.kill(again!.pid, 'SIGKILL');
  t.equal(icli(base, ['instance', 'stop', 'victim']).code, 0);
  t.same(mountsUnder(base), [], 'no mount on the host names the store');
  // stop --all: every instance of the user
  t.equal(icli(base, ['instance', 'start', rootfs, 'all-1']).code, 0);
  t.equal(icli(base, ['instance', 'start', rootfs, 'all-2']).code, 0);
  const both = listJson(base);
  t.equal(both.length, 2);
  const all = icli(base, ['instance', 'stop', '--all']);
  t.equal(all.code, 0, all.err);
  t.match(all.err, /Stopping all-1 instance/);
  t.match(all.err, /Stopping all-2 instance/);
  t.same(
    both.filter((x) => running(x.pid)),
    [],
  );
  t.same(recorded(base), []);
});

t.test('instance run: the runscript is the instance; run|test instance://NAME join it', async (t) => {
  const base = storeBase(t);
  const image = imageWithStartscript(t, 'exit 9');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(
    join(image, '.singularity.d', 'runscript'),
    '#!/bin/sh\necho "runscript $*"\n[ "$1" = a ] && exec sleep 300\nexit 0\n',
    {
      mode: 0o755,
    },
  );
  writeFileSync(
    join(image, '.singularity.d', 'test'),
    '#!/bin/sh\necho "test in pidns $(readlink /proc/self/ns/pid)"\n',
    {
      mode: 0o755,
    },
  );
  t.teardown(() => void icli(base, ['instance', 'stop', '--all', '--force']));
  const s = icli(base, ['instance', 'run', image, 'svc', 'a', 'b']);
  t.equal(s.code, 0, s.err);
  const log = join(userStore(base), 'logs', 'svc.out');
  t.ok(
    await until(() => existsSync(log) && readFileSync(log, 'utf8').includes('runscript a b')),
    'runscript ran with its args',
  );
  const [svc] = listJson(base);
  t.ok(svc && running(svc.pid));
  const run = icli(base, ['run', 'instance://svc', 'again']);
  t.equal(run.code, 0, run.err);
  t.equal(run.out, 'runscript again\n', 'run instance:// runs the runscript in the instance');
  const test = icli(base, ['test', 'instance://svc']);
  t.equal(test.code, 0, test.err);
  const pidns = (pid: number) => execFileSync('readlink', [`/proc/${pid}/ns/pid`], { encoding: 'utf8' }).trim();
  t.equal(
    test.out,
    `test in pidns ${pidns(svc!.pid)}\n`,
    "test instance:// runs the test script in the instance's pid namespace",
  );
  t.not(pidns(svc!.pid), pidns(process.pid));
  t.equal(icli(base, ['instance', 'stop', 'svc']).code, 0);
  t.notOk(running(svc!.pid));
});
