// The numbers TS and native share, read from the C headers: a step, call, op
// kind or id mode renumbered (or inserted in the middle) on one side only
// fails here, not as a wrong error message in production.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MOUNT_CALLS, STEP_NAMES } from '../../lib/errors.js';
import { IDMAP, OP, RESOLVE } from '../../lib/plan/plan.js';
import { repoRoot } from '../helpers/env.js';

const protocol = readFileSync(join(repoRoot, 'native/protocol.h'), 'utf8');
const plan = readFileSync(join(repoRoot, 'native/plan.h'), 'utf8');

/** The enumerators of `enum NAME { ... }` with their values (implicit ones counted on). */
function enumerators(src: string, name: string): [string, number][] {
  const m = src.match(new RegExp(`enum ${name} \\{([^}]*)\\}`));
  if (!m) throw new Error(`enum ${name} not found`);
  const out: [string, number][] = [];
  let next = 0;
  for (const line of m[1].split('\n')) {
    const e = line
      .replace(/\/\/.*/, '')
      .trim()
      .match(/^([A-Z_][A-Z0-9_]*)\s*(?:=\s*(\d+))?\s*,?$/);
    if (!e) continue;
    const v = e[2] !== undefined ? Number(e[2]) : next;
    out.push([e[1], v]);
    next = v + 1;
  }
  return out;
}

// Each native step and the name lib/errors.ts gives it, in wire order.
const STEPS: [string, string][] = [
  ['STEP_CLONE', 'clone'],
  ['STEP_SIGNALS', 'reset-signals'],
  ['STEP_STDIO', 'stdio'],
  ['STEP_SETGROUPS_DENY', 'setgroups-deny'],
  ['STEP_UID_MAP', 'uid-map'],
  ['STEP_GID_MAP', 'gid-map'],
  ['STEP_WAIT_MAPS', 'wait-id-maps'],
  ['STEP_HOSTNAME', 'sethostname'],
  ['STEP_DOMAINNAME', 'setdomainname'],
  ['STEP_ROOT_PROPAGATION', 'root-propagation'],
  ['STEP_BIND_ROOTFS', 'bind-rootfs'],
  ['STEP_MOUNT', 'mount'],
  ['STEP_LOOPBACK', 'loopback-up'],
  ['STEP_PIVOT_ROOT', 'pivot-root'],
  ['STEP_ROOT_READONLY', 'root-readonly'],
  ['STEP_CHDIR', 'chdir'],
  ['STEP_RLIMIT', 'rlimit'],
  ['STEP_CAP_BOUNDING', 'drop-bounding-caps'],
  ['STEP_SETGROUPS', 'setgroups'],
  ['STEP_SETGID', 'setgid'],
  ['STEP_SETUID', 'setuid'],
  ['STEP_CAPSET', 'capset'],
  ['STEP_CAP_AMBIENT', 'ambient-caps'],
  ['STEP_NO_NEW_PRIVS', 'no-new-privs'],
  ['STEP_PARENT_DEATH', 'parent-death-signal'],
  ['STEP_CLOSE_FDS', 'close-fds'],
  ['STEP_EXEC_INIT', 'exec-init'],
  ['STEP_INIT_FORK', 'init-fork'],
  ['STEP_EXEC', 'exec'],
  ['STEP_ID_HELPER', 'id-map-helper'],
  ['STEP_OVERLAY_ROOT', 'overlay-root'],
  ['STEP_KEYRING', 'session-keyring'],
  ['STEP_ROOT_FD', 'root-fd'],
  ['STEP_SETSID', 'setsid'],
  ['STEP_TERMINAL', 'terminal'],
  ['STEP_SETUP_IDS', 'setup-ids'],
  ['STEP_ROOT_NODEV', 'root-nodev'],
  ['STEP_PROTOCOL', 'protocol'],
  ['STEP_SECCOMP', 'seccomp'],
  ['STEP_START_GATE', 'start-gate'],
  ['STEP_JOIN_NAMESPACES', 'join-namespaces'],
  ['STEP_SYSCTL', 'sysctl'],
  ['STEP_PROCESS_ATTRS', 'process-attrs'],
  ['STEP_HOOKS', 'hooks'],
];

t.test('every step of enum child_step has its name at the same number in STEP_NAMES', async (t) => {
  const native = enumerators(protocol, 'child_step').filter(([n]) => n !== 'STEP_COUNT');
  t.same(
    native.map(([n]) => n),
    STEPS.map(([n]) => n),
    'the enum, in order (append only)',
  );
  native.forEach(([, v], i) => t.equal(v, i, `${native[i][0]} = ${i}`));
  t.same(
    [...STEP_NAMES],
    STEPS.map(([, s]) => s),
    'STEP_NAMES, in the same order',
  );
  t.equal(enumerators(protocol, 'child_step').at(-1)![1], STEP_NAMES.length, 'STEP_COUNT');
});

t.test('mount calls', async (t) => {
  const native = enumerators(protocol, 'mount_call');
  t.equal(native.length, MOUNT_CALLS.length);
  native.forEach(([n, v], i) => t.equal(v, i, n));
  t.equal(MOUNT_CALLS[native.findIndex(([n]) => n === 'CALL_SPLIT_PATH')], 'split-path');
  t.equal(MOUNT_CALLS[native.findIndex(([n]) => n === 'CALL_RESOLVE')], 'openat2');
});

t.test('op kinds, id modes and resolve modes match native/plan.h', async (t) => {
  const pairs: [string, Record<string, number>, string][] = [
    ['op_kind', OP, 'OP_'],
    ['id_mode', IDMAP, 'IDMAP_'],
    ['resolve_mode', RESOLVE, 'RES_'],
  ];
  for (const [name, ts, prefix] of pairs) {
    const native = Object.fromEntries(enumerators(plan, name).map(([n, v]) => [n.slice(prefix.length), v]));
    t.same(native, { ...ts }, `enum ${name}`);
  }
});
