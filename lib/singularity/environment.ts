// The payload's environment, built as Apptainer builds it. Lowest to highest:
//   1. the host environment (unless cleanenv: then LANG=C), never PATH or
//      LD_LIBRARY_PATH, nor the host's own APPTAINER_*/SINGULARITY_* (the
//      CLI's settings, not the payload's);
//   2. the container's defaults (PATH, HOME, APPTAINER_CONTAINER, ...);
//   3. an OCI image's config Env;
//   4. the image's /.singularity.d/env/*.sh, evaluated in the container
//      (environment-scripts.ts) with 1-3 as their input;
//   5. SINGULARITYENV_X, then APPTAINERENV_X from the host environment
//      (and their PREPEND_PATH / APPEND_PATH / PATH forms);
//   6. --env-file, then --env.
import { readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import { SpecError } from '../errors.js';
import { DEFAULT_PATH } from '../oci/defaults.js';

export type EnvMap = Map<string, string>;

export const CONTAINER_PATH = DEFAULT_PATH;

/** Passed from the host even with cleanenv (Apptainer's list). */
const ALWAYS_PASSED = [
  'TERM',
  'http_proxy',
  'HTTP_PROXY',
  'https_proxy',
  'HTTPS_PROXY',
  'no_proxy',
  'NO_PROXY',
  'all_proxy',
  'ALL_PROXY',
  'ftp_proxy',
  'FTP_PROXY',
];

/** Variables a shell keeps for itself. */
export const SHELL_VARIABLES = ['PWD', 'OLDPWD', 'SHLVL', '_'];

/** Never taken from the host: the container has its own. */
const NEVER_PASSED = new Set(['PATH', 'LD_LIBRARY_PATH', 'PS1', 'HOME', ...SHELL_VARIABLES]);
/** Lowest precedence first: APPTAINERENV_X wins over SINGULARITYENV_X. */
const PREFIXES = ['SINGULARITYENV_', 'APPTAINERENV_'] as const;
/** The CLI's own settings (APPTAINER_BIND ...): read by the CLI, never passed in. */
const SETTING_PREFIXES = ['APPTAINER_', 'SINGULARITY_'] as const;
/**
 * Names APPTAINERENV_/SINGULARITYENV_ may not set (Apptainer's
 * alwaysOmitKeys that are not overridable): refused with Apptainer's warning.
 */
const PROTECTED = new Set(['HOME', 'APPTAINER_SHELL', 'APPTAINER_APPNAME', 'SINGULARITY_SHELL', 'SINGULARITY_APPNAME']);

export function envFromList(list: string[]): EnvMap {
  const m: EnvMap = new Map();
  for (const kv of list) {
    const eq = kv.indexOf('=');
    if (eq > 0) m.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  return m;
}

export function envToList(m: EnvMap): string[] {
  return [...m].map(([k, v]) => `${k}=${v}`);
}

/** Layer 1: what the host passes. */
export function hostLayer(host: NodeJS.ProcessEnv, cleanenv: boolean): EnvMap {
  const m: EnvMap = new Map();
  for (const [k, v] of Object.entries(host)) {
    if (v === undefined || NEVER_PASSED.has(k) || [...PREFIXES, ...SETTING_PREFIXES].some((p) => k.startsWith(p)))
      continue;
    if (cleanenv && !ALWAYS_PASSED.includes(k)) continue;
    m.set(k, v);
  }
  // As Apptainer: a clean environment has the C locale (APPTAINERENV_LANG may change it).
  if (cleanenv) m.set('LANG', 'C');
  return m;
}

/**
 * What Apptainer says about the host's APPTAINERENV_/SINGULARITYENV_
 * variables: a protected name refused, a SINGULARITYENV_X that differs from
 * its APPTAINERENV_X twin (the latter wins).
 */
export function prefixedWarnings(host: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const prefix of [...PREFIXES].reverse()) {
    for (const [k, v] of Object.entries(host)) {
      if (v === undefined || !k.startsWith(prefix)) continue;
      const name = k.slice(prefix.length);
      if (PROTECTED.has(name)) out.push(`Overriding ${name} environment variable with ${k} is not permitted`);
      else if (
        prefix === 'SINGULARITYENV_' &&
        host[`APPTAINERENV_${name}`] !== undefined &&
        host[`APPTAINERENV_${name}`] !== v
      )
        out.push(
          `Skipping environment variable [${k}=${v}], ${name} is already overridden with different value [${host[`APPTAINERENV_${name}`]}]`,
        );
    }
  }
  return out;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Layer 5: SINGULARITYENV_X / APPTAINERENV_X, the latter winning. */
export function prefixedLayer(host: NodeJS.ProcessEnv): { vars: EnvMap; prependPath?: string; appendPath?: string } {
  const vars: EnvMap = new Map();
  let prependPath: string | undefined, appendPath: string | undefined;
  for (const prefix of PREFIXES) {
    for (const [k, v] of Object.entries(host)) {
      if (v === undefined || !k.startsWith(prefix)) continue;
      const name = k.slice(prefix.length);
      if (!NAME.test(name) || PROTECTED.has(name)) continue;
      if (name === 'PREPEND_PATH') prependPath = v;
      else if (name === 'APPEND_PATH') appendPath = v;
      else vars.set(name, v);
    }
  }
  return { vars, prependPath, appendPath };
}

/** Layer 6a: an --env-file (KEY=VALUE lines, `export` and quotes allowed, # comments). */
export function readEnvFile(path: string, option = '--env-file'): EnvMap {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SpecError(option, `cannot read ${path}: ${(e as NodeJS.ErrnoException).code}`);
  }
  // parseEnv (dotenv syntax) does not know the shell's `export ` prefix.
  const parsed = parseEnv(text.replace(/^[ \t]*export[ \t]+/gm, '')) as Record<string, string>;
  const m: EnvMap = new Map();
  for (const [k, v] of Object.entries(parsed)) {
    if (!NAME.test(k)) throw new SpecError(option, `${path}: ${JSON.stringify(k)} is not a variable name`);
    m.set(k, v);
  }
  return m;
}

/** Layer 6b: --env values, `KEY=VALUE` strings (comma lists as Apptainer) or an object. */
export function envOption(env: Record<string, string> | string[] | undefined, option = '--env'): EnvMap {
  const m: EnvMap = new Map();
  if (env === undefined) return m;
  if (Array.isArray(env)) {
    for (const item of env) {
      const eq = item.indexOf('=');
      const k = eq < 0 ? item : item.slice(0, eq);
      if (eq < 0 || !NAME.test(k)) throw new SpecError(option, `${JSON.stringify(item)}: expected NAME=VALUE`);
      m.set(k, item.slice(eq + 1));
    }
  } else {
    for (const [k, v] of Object.entries(env)) {
      if (!NAME.test(k)) throw new SpecError(option, `${JSON.stringify(k)} is not a variable name`);
      m.set(k, String(v));
    }
  }
  return m;
}

/** Apply user layers 5 and 6 on top of the image's environment. */
export function applyUserLayers(base: EnvMap, host: NodeJS.ProcessEnv, envFile: EnvMap, env: EnvMap): EnvMap {
  const out = new Map(base);
  const pre = prefixedLayer(host);
  for (const [k, v] of pre.vars) out.set(k, v);
  for (const [k, v] of envFile) out.set(k, v);
  for (const [k, v] of env) out.set(k, v);
  const path = out.get('PATH') ?? CONTAINER_PATH;
  if (pre.prependPath || pre.appendPath)
    out.set('PATH', [pre.prependPath, path, pre.appendPath].filter(Boolean).join(':'));
  return out;
}
