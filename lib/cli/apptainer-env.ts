// Apptainer's configuration through the environment: every flag of the
// action verbs also reads APPTAINER_<KEY> and SINGULARITY_<KEY>, with
// Apptainer's precedence (pkg/cmdline/flag.go, updateCmdFlagFromEnv): the
// command line, then APPTAINER_, then SINGULARITY_; among a flag's keys the
// first one set. Binds and mounts are the exception: the environment's are
// added to the command line's (EnvAppendValue), so a site's APPTAINER_BIND
// (/cvmfs, scratch) holds whatever -B a pilot gives.
import { SpecError } from '../errors.js';

type Kind =
  | 'append' // added to the command line's values (bind, mount)
  | 'list' // comma list, replaces the default
  | 'string'
  | 'bool'
  | 'negated'; // NO_X=true sets the attribute to false (commander's --no-x)

export interface EnvKnob {
  attr: string;
  keys: string[];
  kind: Kind;
  verbs?: string[];
}

/** Apptainer's keys (cmd/internal/cli/action_flags.go), for the flags nodularity has. */
export const ENV_KNOBS: EnvKnob[] = [
  { attr: 'bind', keys: ['BIND', 'BINDPATH'], kind: 'append' },
  { attr: 'mount', keys: ['MOUNT'], kind: 'append' },
  { attr: 'home', keys: ['HOME'], kind: 'string' },
  { attr: 'home', keys: ['NO_HOME'], kind: 'negated' },
  { attr: 'scratch', keys: ['SCRATCH', 'SCRATCHDIR'], kind: 'list' },
  { attr: 'workdir', keys: ['WORKDIR'], kind: 'string' },
  { attr: 'shell', keys: ['SHELL'], kind: 'string', verbs: ['shell'] },
  { attr: 'cwd', keys: ['CWD', 'TARGET_CWD'], kind: 'string' },
  { attr: 'pwd', keys: ['PWD', 'TARGET_PWD'], kind: 'string' },
  { attr: 'hostname', keys: ['HOSTNAME'], kind: 'string' },
  { attr: 'network', keys: ['NETWORK'], kind: 'string' },
  { attr: 'fakeroot', keys: ['FAKEROOT'], kind: 'bool' },
  { attr: 'cleanenv', keys: ['CLEANENV'], kind: 'bool' },
  { attr: 'contain', keys: ['CONTAIN'], kind: 'bool' },
  { attr: 'containall', keys: ['CONTAINALL'], kind: 'bool' },
  { attr: 'nv', keys: ['NV'], kind: 'bool' },
  { attr: 'rocm', keys: ['ROCM'], kind: 'bool' },
  { attr: 'writableTmpfs', keys: ['WRITABLE_TMPFS'], kind: 'bool' },
  { attr: 'writableTmpfsSize', keys: ['WRITABLE_TMPFS_SIZE'], kind: 'string' },
  { attr: 'noMount', keys: ['NO_MOUNT'], kind: 'list' },
  { attr: 'init', keys: ['NOSHIMINIT'], kind: 'negated' },
  { attr: 'pid', keys: ['PID', 'UNSHARE_PID'], kind: 'bool' },
  { attr: 'pid', keys: ['NO_PID'], kind: 'negated' },
  { attr: 'ipc', keys: ['IPC', 'UNSHARE_IPC'], kind: 'bool' },
  { attr: 'net', keys: ['NET', 'UNSHARE_NET'], kind: 'bool' },
  { attr: 'uts', keys: ['UTS', 'UNSHARE_UTS'], kind: 'bool' },
  { attr: 'userns', keys: ['USERNS', 'UNSHARE_USERNS'], kind: 'bool' },
  { attr: 'keepPrivs', keys: ['KEEP_PRIVS'], kind: 'bool' },
  { attr: 'addCaps', keys: ['ADD_CAPS'], kind: 'string' },
  { attr: 'dropCaps', keys: ['DROP_CAPS'], kind: 'string' },
  { attr: 'envFile', keys: ['ENV_FILE'], kind: 'string' },
  { attr: 'eval', keys: ['NO_EVAL'], kind: 'negated' },
  { attr: 'overlay', keys: ['OVERLAY', 'OVERLAYIMAGE'], kind: 'list' },
  { attr: 'https', keys: ['NOHTTPS', 'NO_HTTPS'], kind: 'negated' },
  { attr: 'authfile', keys: ['AUTH_FILE'], kind: 'string' },
  { attr: 'security', keys: ['SECURITY'], kind: 'list' },
  { attr: 'memory', keys: ['MEMORY'], kind: 'string' },
  { attr: 'memoryReservation', keys: ['MEMORY_RESERVATION'], kind: 'string' },
  { attr: 'memorySwap', keys: ['MEMORY_SWAP'], kind: 'string' },
  { attr: 'memorySwappiness', keys: ['MEMORY_SWAPPINESS'], kind: 'string' },
  { attr: 'oomKillDisable', keys: ['OOM_KILL_DISABLE'], kind: 'bool' },
  { attr: 'cpus', keys: ['CPUS'], kind: 'string' },
  { attr: 'cpuShares', keys: ['CPU_SHARES'], kind: 'string' },
  { attr: 'cpusetCpus', keys: ['CPUSET_CPUS'], kind: 'string' },
  { attr: 'cpusetMems', keys: ['CPUSET_MEMS'], kind: 'string' },
  { attr: 'pidsLimit', keys: ['PIDS_LIMIT'], kind: 'string' },
  { attr: 'blkioWeight', keys: ['BLKIO_WEIGHT'], kind: 'string' },
  { attr: 'applyCgroups', keys: ['APPLY_CGROUPS'], kind: 'string' },
];

/** Go's strconv.ParseBool, as Apptainer reads a boolean variable. */
function parseBool(name: string, v: string): boolean {
  if (/^(1|t|true)$/i.test(v)) return true;
  if (/^(0|f|false)$/i.test(v)) return false;
  throw new SpecError(name, `${JSON.stringify(v)} is not a boolean (1, t, true or 0, f, false)`);
}

export interface EnvApplied {
  warnings: string[];
  infos: string[];
}

/**
 * Fill `flags` from the environment where the command line left them, in
 * place. `fromCli(attr)` says whether the command line set that attribute.
 */
export function applyEnvKnobs(
  verb: string,
  flags: Record<string, unknown>,
  fromCli: (attr: string) => boolean,
  env: NodeJS.ProcessEnv = process.env,
): EnvApplied {
  const out: EnvApplied = { warnings: [], infos: [] };
  const setByEnv = new Set<string>();
  for (const prefix of ['APPTAINER_', 'SINGULARITY_']) {
    for (const knob of ENV_KNOBS) {
      if (knob.verbs && !knob.verbs.includes(verb)) continue;
      for (const key of knob.keys) {
        const name = prefix + key;
        const raw = env[name];
        if (raw === undefined) continue;
        if (prefix === 'SINGULARITY_') {
          const preferred = env[`APPTAINER_${key}`];
          if (preferred !== undefined) {
            if (preferred !== raw)
              out.warnings.push(`${name} and APPTAINER_${key} have different values, using the latter`);
            continue;
          }
          out.infos.push(`Environment variable ${name} is set, but APPTAINER_${key} is preferred`);
        }
        const v = raw.trim();
        if (v === '') continue;
        if (knob.kind === 'append') {
          flags[knob.attr] = [...((flags[knob.attr] as string[] | undefined) ?? []), raw];
          continue;
        }
        if (fromCli(knob.attr) || setByEnv.has(knob.attr)) continue;
        switch (knob.kind) {
          case 'list':
            flags[knob.attr] = v
              .split(',')
              .map((x) => x.trim())
              .filter(Boolean);
            break;
          case 'string':
            flags[knob.attr] = v;
            break;
          case 'bool':
            flags[knob.attr] = parseBool(name, v);
            break;
          case 'negated':
            if (parseBool(name, v)) flags[knob.attr] = false;
            else continue;
            break;
        }
        setByEnv.add(knob.attr);
      }
    }
  }
  return out;
}
