// Where a worker thread's module is. The library runs from dist/ (a worker
// is the compiled module beside its user); the tests run lib/*.ts through a
// TypeScript loader, and a worker is loaded by plain node, so from there the
// compiled module in dist/ is used, and refused if older than its source.
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The URL of worker module NAME (lib/image/NAME.ts), for a module in lib/image or dist/image at FROM. */
export function workerUrl(name: string, from: string): URL {
  if (from.endsWith('.js')) return new URL(`./${name}.js`, from);
  const source = fileURLToPath(new URL(`./${name}.ts`, from));
  const built = new URL(`../../dist/image/${name}.js`, from);
  const builtPath = fileURLToPath(built);
  if (!existsSync(builtPath) || statSync(builtPath).mtimeMs < statSync(source).mtimeMs)
    throw new Error(`${builtPath} is missing or older than ${source}: run \`npm run build\``);
  return built;
}
