// OCI bundles on disk: a directory with config.json and (usually) rootfs/.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { SpecError } from '../errors.js';
import type { Spec } from './spec.js';
import { validateSpec } from './validate.js';

export interface Bundle {
  dir: string;
  spec: Spec;
}

/** Read and check DIR/config.json. root.path stays relative to the bundle (pass `bundleDir: dir` to spawn). */
export async function loadBundle(dir: string): Promise<Bundle> {
  const abs = resolve(dir);
  const file = join(abs, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new SpecError('', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code}`);
  }
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (e) {
    throw new SpecError('', `${file} is not valid JSON: ${(e as Error).message}`);
  }
  validateSpec(spec);
  return { dir: abs, spec };
}
