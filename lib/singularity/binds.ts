// Apptainer's bind syntax: `-B src[:dst[:opts]]` (comma lists, repeatable)
// and `--mount type=bind,src=...,dst=...[,ro]`, parsed into one shape.
import { resolve } from 'node:path';
import { SpecError } from '../errors.js';

export interface BindSpec {
  source: string;
  /** Container path; default: the same as source. */
  destination?: string;
  readonly?: boolean;
}

const BIND_OPTIONS = new Set(['ro', 'rw']);

/**
 * Parse one `-B` value: `src[:dst[:ro|rw]]`, several separated by commas.
 * `option` names the flag for messages (`--bind`, `binds[2]`). With `cwd`, a
 * relative source is taken from there (as Apptainer does); without, refused.
 */
export function parseBindList(value: string, option = '--bind', cwd?: string): BindSpec[] {
  return value
    .split(',')
    .filter((s) => s !== '')
    .map((one) => {
      const parts = one.split(':');
      if (parts.length > 3) throw new SpecError(option, `${JSON.stringify(one)}: expected src[:dst[:ro|rw]]`);
      const [given, destination, opts] = parts;
      if (!given.startsWith('/') && cwd === undefined)
        throw new SpecError(option, `${JSON.stringify(one)}: the source must be an absolute path`);
      if (given === '') throw new SpecError(option, `${JSON.stringify(one)}: the source is empty`);
      const source = given.startsWith('/') ? given : resolve(cwd!, given);
      // A relative source with no destination appears at its absolute path.
      if (destination !== undefined && destination !== '' && !destination.startsWith('/'))
        throw new SpecError(option, `${JSON.stringify(one)}: the destination must be an absolute path`);
      const b: BindSpec = { source, destination: destination || source };
      if (opts !== undefined) {
        for (const o of opts.split(';').filter(Boolean))
          if (!BIND_OPTIONS.has(o))
            throw new SpecError(option, `${JSON.stringify(one)}: unknown bind option ${JSON.stringify(o)} (ro or rw)`);
        b.readonly = opts.split(';').includes('ro');
      }
      return b;
    });
}

/**
 * Parse one `--mount` value, Docker/Apptainer style:
 * `type=bind,source=/a,destination=/b[,ro|readonly]` (src/dst accepted).
 */
export function parseMountSpec(value: string, option = '--mount'): BindSpec {
  const fields = new Map<string, string | true>();
  for (const kv of value.split(',').filter(Boolean)) {
    const eq = kv.indexOf('=');
    if (eq < 0) fields.set(kv, true);
    else fields.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  const type = fields.get('type');
  if (type !== 'bind') throw new SpecError(option, `${JSON.stringify(value)}: only type=bind is supported`);
  const source = fields.get('source') ?? fields.get('src');
  const destination = fields.get('destination') ?? fields.get('dst') ?? fields.get('target');
  if (typeof source !== 'string' || !source.startsWith('/'))
    throw new SpecError(option, `${JSON.stringify(value)}: needs source=/absolute/path`);
  if (typeof destination !== 'string' || !destination.startsWith('/'))
    throw new SpecError(option, `${JSON.stringify(value)}: needs destination=/absolute/path`);
  for (const k of fields.keys())
    if (!['type', 'source', 'src', 'destination', 'dst', 'target', 'ro', 'readonly', 'rw'].includes(k))
      throw new SpecError(option, `${JSON.stringify(value)}: unknown field ${JSON.stringify(k)}`);
  const ro = fields.get('ro') ?? fields.get('readonly');
  return { source, destination, readonly: ro === true || ro === 'true' };
}

/** Binds given to the API: strings as for -B, or objects. */
export function normalizeBinds(binds: (string | BindSpec)[] | undefined, cwd?: string): BindSpec[] {
  return (binds ?? []).flatMap((b, i) => {
    if (typeof b === 'string') return parseBindList(b, `binds[${i}]`, cwd);
    if (!b || typeof b.source !== 'string' || !b.source.startsWith('/'))
      throw new SpecError(`binds[${i}].source`, 'must be an absolute path');
    if (b.destination !== undefined && !b.destination.startsWith('/'))
      throw new SpecError(`binds[${i}].destination`, 'must be an absolute path');
    return [{ source: b.source, destination: b.destination ?? b.source, readonly: !!b.readonly }];
  });
}
