// A one-node Slurm cluster for a test, all in one temp dir: munged with a
// fresh key and its own socket, slurmctld and slurmd on free localhost ports,
// no cgroup plugins (proctrack/linuxproc, task/none), SlurmUser root. Every
// daemon runs in the foreground as our child under `setpriv --pdeathsig KILL`,
// so none outlives this process even if it is killed; `stop()` ends them and
// any slurmstepd or job process left (found by our SLURM_CONF in its environ).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  existsSync,
  openSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const SLURM_BINARIES = ['munged', 'mungekey', 'slurmctld', 'slurmd', 'slurmstepd', 'srun', 'sinfo', 'setpriv'];

/** Free TCP ports on 127.0.0.1 (bound together, then released). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((res, rej) => {
          const s = createServer();
          s.once('error', rej);
          s.listen(0, '127.0.0.1', () => res(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

async function until(what: string, ms: number, test: () => boolean, log: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) throw new Error(`${what} not ready after ${ms / 1000} s\n${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function tail(file: string, lines = 25): string {
  try {
    return `--- ${file} (end) ---\n${readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')}`;
  } catch {
    return `--- ${file}: absent ---`;
  }
}

function ppidOf(pid: number): number {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

/** Pids of processes whose environment holds `KEY=VALUE` exactly. */
function processesWithEnv(entry: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/environ`, 'latin1').split('\0').includes(entry)) out.push(Number(d));
    } catch {
      /* gone, or a kernel thread */
    }
  }
  return out;
}

export interface Cluster {
  dir: string;
  conf: string;
  /** Environment for srun/sinfo. */
  env: NodeJS.ProcessEnv;
  /** Stop every daemon (once; later calls get the same result); returns the pids killed after the daemons were gone (should be none). */
  stop(): Promise<number[]>;
}

/** Start munged, slurmctld, slurmd in DIR (which must be reachable by the job's user) with oci.conf text. */
export async function startCluster(dir: string, ociConf: string): Promise<Cluster> {
  const [ctldPort, slurmdPort] = await freePorts(2);
  for (const d of ['munge', 'run', 'state', 'spool', 'log']) mkdirSync(join(dir, d));
  chmodSync(join(dir, 'munge'), 0o700); // the key
  chmodSync(join(dir, 'run'), 0o755); // munged wants its socket directory searchable by all
  const socket = join(dir, 'run', 'munge.socket');
  const conf = join(dir, 'slurm.conf');
  writeFileSync(
    conf,
    [
      'ClusterName=nodularity',
      'SlurmctldHost=localhost(127.0.0.1)',
      `SlurmctldPort=${ctldPort}`,
      `SlurmdPort=${slurmdPort}`,
      'SlurmUser=root',
      'SlurmdUser=root',
      'AuthType=auth/munge',
      'CredType=cred/munge',
      `AuthInfo=socket=${socket}`,
      `StateSaveLocation=${join(dir, 'state')}`,
      `SlurmdSpoolDir=${join(dir, 'spool')}`,
      `SlurmctldPidFile=${join(dir, 'slurmctld.pid')}`,
      `SlurmdPidFile=${join(dir, 'slurmd.pid')}`,
      `SlurmctldLogFile=${join(dir, 'log', 'slurmctld.log')}`,
      `SlurmdLogFile=${join(dir, 'log', 'slurmd.log')}`,
      'SlurmdDebug=debug2',
      'MailProg=/bin/true',
      // cgroups here are a v1 hybrid that Slurm cannot own: no cgroup plugin at all.
      'ProctrackType=proctrack/linuxproc',
      'TaskPlugin=task/none',
      'JobAcctGatherType=jobacct_gather/none',
      'AccountingStorageType=accounting_storage/none',
      'JobCompType=jobcomp/none',
      'SwitchType=switch/none',
      'MpiDefault=none',
      'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_Core',
      'ReturnToService=2',
      'NodeName=n1 NodeAddr=127.0.0.1 CPUs=1 State=UNKNOWN',
      'PartitionName=debug Nodes=n1 Default=YES MaxTime=INFINITE State=UP',
      '',
    ].join('\n'),
  );
  writeFileSync(join(dir, 'cgroup.conf'), 'CgroupPlugin=autodetect\n');
  writeFileSync(join(dir, 'oci.conf'), ociConf);
  execFileSync('mungekey', ['--create', `--keyfile=${join(dir, 'munge', 'munge.key')}`]);

  // Not tap's NODE_OPTIONS: srun would hand it to every job, and the daemons to every step.
  const env: NodeJS.ProcessEnv = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS')),
    SLURM_CONF: conf,
  };
  const children: { name: string; proc: ChildProcess; log: string }[] = [];
  const daemon = (name: string, argv: string[]) => {
    const log = join(dir, 'log', `${name}.out`);
    const fd = openSync(log, 'a');
    const proc = spawn('setpriv', ['--pdeathsig', 'KILL', ...argv], { env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    children.push({ name, proc, log });
    return proc;
  };
  let stopped: Promise<number[]> | undefined;
  const stop = () => (stopped ??= stopAll());
  const stopAll = async (): Promise<number[]> => {
    // Steps end on their own after srun returned (slurmstepd still runs RunTimeQuery/Delete and
    // removes its spool dir): give them a while before calling what is left a stray.
    const daemons = new Set(children.map((c) => c.proc.pid));
    const steps = () =>
      processesWithEnv(`SLURM_CONF=${conf}`).filter(
        (p) => !daemons.has(p) && !children.some((c) => c.proc.pid === ppidOf(p)),
      );
    for (let i = 0; i < 200 && steps().length; i++) await new Promise((r) => setTimeout(r, 100));
    for (const c of [...children].reverse()) {
      if (c.proc.exitCode !== null || c.proc.signalCode !== null) continue;
      const gone = new Promise((r) => c.proc.once('exit', r));
      c.proc.kill('SIGTERM');
      const t = setTimeout(() => c.proc.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(t);
    }
    // slurmstepd daemonizes away from slurmd: anything still carrying our SLURM_CONF is a stray.
    const strays = processesWithEnv(`SLURM_CONF=${conf}`);
    for (const pid of strays) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    return strays;
  };
  const cluster: Cluster = { dir, conf, env, stop };
  try {
    daemon('munged', [
      'munged',
      '-F',
      `--socket=${socket}`,
      `--key-file=${join(dir, 'munge', 'munge.key')}`,
      `--pid-file=${join(dir, 'run', 'munged.pid')}`,
      `--log-file=${join(dir, 'log', 'munged.log')}`,
      `--seed-file=${join(dir, 'munge', 'seed')}`,
    ]);
    await until(
      'munged',
      10_000,
      () => existsSync(socket),
      () => tail(join(dir, 'log', 'munged.out')),
    );
    daemon('slurmctld', ['slurmctld', '-D', '-i', '-f', conf]);
    daemon('slurmd', ['slurmd', '-D', '-f', conf, '-N', 'n1']);
    await until(
      'node n1 idle',
      30_000,
      () => {
        try {
          return (
            execFileSync('sinfo', ['-h', '-n', 'n1', '-o', '%T'], {
              env,
              encoding: 'utf8',
              stdio: ['ignore', 'pipe', 'ignore'],
            }).trim() === 'idle'
          );
        } catch {
          return false;
        }
      },
      () => [tail(join(dir, 'log', 'slurmctld.log')), tail(join(dir, 'log', 'slurmd.log'))].join('\n'),
    );
    for (const c of children) {
      if (c.proc.exitCode !== null) throw new Error(`${c.name} exited with ${c.proc.exitCode}`);
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return cluster;
}

/** The end of the daemons' logs, for failure messages. */
export function clusterLogs(c: Cluster): string {
  return ['munged.out', 'slurmctld.log', 'slurmd.log'].map((f) => tail(join(c.dir, 'log', f), 40)).join('\n');
}
