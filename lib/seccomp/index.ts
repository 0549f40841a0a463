// Seccomp for nodularity: the choice a caller makes (API `security.seccomp`,
// CLI `--security seccomp:...`) -> a runtime-spec linux.seccomp profile; and
// a spec's profile -> the compiled program the launch plan carries.
import { readFileSync } from 'node:fs';
import { SpecError } from '../errors.js';
import { compileSeccomp } from './compile.js';
import { builtIn, defaultSeccompProfile } from './default.js';
import { DOCKER_DEFAULT_PATH, fromDockerFormat, isDockerFormat } from './docker.js';
import { validateSeccomp } from './validate.js';
import type { LinuxSeccomp, SeccompChoice, SecurityOptions } from './types.js';

export type {
  LinuxSeccomp,
  LinuxSeccompArg,
  LinuxSyscall,
  SeccompAction,
  SeccompChoice,
  SeccompOperator,
  SecurityOptions,
} from './types.js';
export { defaultSeccompProfile, DEFAULT_BLOCKED, SAFE_PERSONALITIES } from './default.js';
export { DOCKER_DEFAULT_PATH } from './docker.js';
export { validateSeccomp, seccompProbe } from './validate.js';
export { onSeccompWarning } from './compile.js';

function readProfileFile(file: string, option: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new SpecError(option, `cannot read the seccomp profile ${file} (${code ?? (e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SpecError(option, `the seccomp profile ${file} is not valid JSON (${(e as Error).message})`);
  }
}

const dockerCache = new Map<string, LinuxSeccomp>();

/**
 * Resolve a seccomp choice to a profile (undefined: unconfined). `caps` is
 * the container's bounding set, for the Docker format's capability rules;
 * `option` names the option at fault in errors.
 */
export function resolveSeccomp(
  choice: SeccompChoice | undefined,
  caps: string[] = [],
  option = 'security.seccomp',
): LinuxSeccomp | undefined {
  if (choice === undefined || choice === 'default') return defaultSeccompProfile();
  if (choice === 'unconfined') return undefined;
  if (typeof choice === 'object' && choice !== null) {
    if (isDockerFormat(choice)) return fromDockerFormat(choice, caps);
    return choice;
  }
  if (typeof choice !== 'string' || choice === '')
    throw new SpecError(
      option,
      `must be 'default', 'docker-default', 'unconfined', a profile file or a profile object, not ${JSON.stringify(choice)}`,
    );
  if (choice === 'docker-default') {
    const key = caps.slice().sort().join(',');
    let p = dockerCache.get(key);
    if (!p) {
      let raw: unknown;
      try {
        raw = JSON.parse(readFileSync(DOCKER_DEFAULT_PATH, 'utf8'));
      } catch (e) {
        throw new SpecError(
          option,
          `docker-default needs ${DOCKER_DEFAULT_PATH} (Debian package golang-github-containers-common): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        );
      }
      p = fromDockerFormat(raw as never, caps);
      validateSeccomp(p, DOCKER_DEFAULT_PATH + '#');
      p = builtIn(p);
      dockerCache.set(key, p);
    }
    return p;
  }
  const raw = readProfileFile(choice, option);
  const p = isDockerFormat(raw) ? fromDockerFormat(raw as never, caps) : raw;
  // Pointers into the file itself, as a URI fragment: profile.json#/syscalls/2/action.
  validateSeccomp(p, `${choice}#`);
  return p;
}

/** The plan's part: the compiled program and flags, or nothing without linux.seccomp. */
export function seccompForPlan(
  profile: LinuxSeccomp | undefined,
  init: boolean,
): { seccompFilter?: Buffer; seccompFlags?: number } {
  if (!profile) return {};
  const c = compileSeccomp(profile, '/linux/seccomp');
  const refused = c.refusal[init ? 'init' : 'exec'];
  // A fresh error each time: the cached one's stack would point at its first launch.
  if (refused) throw new SpecError(refused.pointer, refused.message.slice(refused.pointer.length + 2));
  return { seccompFilter: c.filter, seccompFlags: c.flags };
}

/**
 * Apptainer's `--security` values (repeatable, comma lists allowed):
 * `seccomp:FILE` (also `seccomp:unconfined`, `seccomp:default`,
 * `seccomp:docker-default`); the last seccomp: wins. Apptainer's other kinds
 * (apparmor:, selinux:, uid:, gid:) are refused, naming the flag.
 */
export function parseSecurityFlags(values: string[], option = '--security'): SecurityOptions | undefined {
  let seccomp: SeccompChoice | undefined;
  for (const v of values
    .flatMap((x) => x.split(','))
    .map((x) => x.trim())
    .filter(Boolean)) {
    const colon = v.indexOf(':');
    const kind = colon < 0 ? v : v.slice(0, colon);
    const value = colon < 0 ? '' : v.slice(colon + 1);
    if (kind === 'seccomp') {
      if (!value)
        throw new SpecError(
          option,
          `${JSON.stringify(v)}: seccomp: needs a profile file, unconfined, default or docker-default`,
        );
      // A file is read and checked now, so that its errors name the flag.
      seccomp = value === 'unconfined' || value === 'default' ? value : resolveSeccomp(value, [], option);
    } else if (['apparmor', 'selinux', 'uid', 'gid'].includes(kind)) {
      throw new SpecError(
        option,
        `${JSON.stringify(v)}: ${kind}: is not supported by nodularity (only seccomp:FILE|unconfined|default|docker-default)`,
      );
    } else {
      throw new SpecError(
        option,
        `${JSON.stringify(v)} is not a security option (seccomp:FILE|unconfined|default|docker-default)`,
      );
    }
  }
  return seccomp === undefined ? undefined : { seccomp };
}
