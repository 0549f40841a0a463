// The package as a user imports it: by name, through package.json's
// `exports`, from the built dist/ (no TypeScript loader), in a project of its
// own whose node_modules/nodularity is this checkout. Every import in
// README's code blocks must resolve there, with its types.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { repoRoot, scratch } from '../helpers/env.js';

const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'));

/** `import { a, b } from 'nodularity[/sub]'` in README's ```ts/js blocks: specifier -> names. */
function readmeImports(): Map<string, Set<string>> {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const out = new Map<string, Set<string>>();
  for (const block of readme.matchAll(/```(?:ts|typescript|js|javascript|mjs)\n([\s\S]*?)```/g)) {
    for (const m of block[1].matchAll(/import\s+(type\s+)?\{([^}]*)\}\s+from\s+'(nodularity(?:\/[^']*)?)'/g)) {
      const names = out.get(m[3]) ?? new Set<string>();
      for (const n of m[2]
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean))
        names.add(`${m[1] ? 'type ' : ''}${n}`);
      out.set(m[3], names);
    }
  }
  return out;
}

/** A project with node_modules/nodularity -> this checkout (as `npm link` makes it). */
function userProject(t: Parameters<typeof scratch>[0]): string {
  const dir = scratch(t, 'nodularity-user-');
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(repoRoot, join(dir, 'node_modules', 'nodularity'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'user', private: true, type: 'module' }));
  return dir;
}

/** Run an ES module with plain node (no loader hooks) in DIR. */
function node(dir: string, file: string, source: string) {
  writeFileSync(join(dir, file), source);
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // tap's TypeScript loader: a user has none
  return spawnSync(process.execPath, [file], { cwd: dir, env, encoding: 'utf8' });
}

t.test('the build is there (npm run build)', async (t) => {
  for (const f of [
    'dist/index.js',
    'dist/index.d.ts',
    'dist/image/index.js',
    'dist/image/index.d.ts',
    'dist/internal.js',
    'dist/internal.d.ts',
    'dist/cli/main.js',
    pkg.bin.nodularity,
  ])
    t.ok(existsSync(join(repoRoot, f)), f);
});

t.test('every import in README code blocks, and the image API, resolve from the package name', async (t) => {
  const imports = readmeImports();
  t.ok(
    (imports.get('nodularity')?.size ?? 0) >= 8,
    `README imports from 'nodularity': ${[...(imports.get('nodularity') ?? [])].join(', ')}`,
  );
  // Named in README's prose and in the issue: the image API at the root too.
  const root = imports.get('nodularity') ?? new Set<string>();
  for (const n of [
    'pullImage',
    'inspectImage',
    'ImageError',
    'ImageCache',
    'createSpec',
    'spawn',
    'run',
    'exec',
    'ContainerError',
    'SpecError',
  ])
    root.add(n);
  imports.set('nodularity', root);
  const dir = userProject(t);
  const values = [...imports].map(([spec, names]) => [spec, [...names].filter((n) => !n.startsWith('type '))] as const);
  const r = node(
    dir,
    'check.mjs',
    [
      ...values.map(([spec], i) => `import * as m${i} from ${JSON.stringify(spec)};`),
      `const missing = [];`,
      ...values.map(
        ([spec, names], i) =>
          `for (const n of ${JSON.stringify(names)}) if (m${i}[n] === undefined) missing.push(${JSON.stringify(spec)} + ': ' + n);`,
      ),
      `console.log(JSON.stringify({ missing, rootKeys: Object.keys(m0).length }));`,
    ].join('\n'),
  );
  t.equal(r.status, 0, `plain node imports them (stderr: ${r.stderr.trim().split('\n').slice(0, 5).join(' | ')})`);
  const res = r.status === 0 ? JSON.parse(r.stdout) : { missing: ['(did not run)'] };
  t.same(res.missing, [], 'no name missing');

  // Types through the "types" condition, as a TypeScript user resolves them
  // (moduleResolution nodenext); values and types in README, plus the result types.
  const typeNames = [...new Set([...root].map((n) => n.replace(/^type /, '')))];
  writeFileSync(
    join(dir, 'check.ts'),
    [
      `import { ${typeNames.join(', ')} } from 'nodularity';`,
      `import type { ExitResult, RunResult, SpawnOptions, Rusage, PullOptions, PulledImage, ExecOptions, ImageContainer } from 'nodularity';`,
      `import { pullImage as p2, unpackLayers } from 'nodularity/image';`,
      `const o: SpawnOptions = { timeout: 1000, killSignal: 'SIGTERM', forceKillAfterDelay: 5000 };`,
      `const f = (r: ExitResult): [boolean, number | null, boolean] => [r.timedOut, r.rusage.maxRSS, r.initDied];`,
      `void [${typeNames.join(', ')}, p2, unpackLayers, o, f];`,
      `export type T = [RunResult, Rusage, PullOptions, PulledImage, ExecOptions, ImageContainer];`,
    ].join('\n'),
  );
  const tsc = createRequire(join(repoRoot, 'package.json')).resolve('typescript/bin/tsc');
  let out = '';
  try {
    execFileSync(
      process.execPath,
      [
        tsc,
        '--noEmit',
        '--strict',
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
        '--target',
        'es2022',
        '--skipLibCheck',
        '--types',
        'node',
        '--typeRoots',
        join(repoRoot, 'node_modules', '@types'),
        'check.ts',
      ],
      { cwd: dir, encoding: 'utf8' },
    );
  } catch (e) {
    out = String((e as { stdout?: string }).stdout ?? e);
  }
  t.equal(out, '', 'tsc finds the declarations through exports');
});

t.test('only the public entry points are exported; the bin still runs', async (t) => {
  const dir = userProject(t);
  const deep = node(dir, 'deep.mjs', `import 'nodularity/dist/container.js';`);
  t.not(deep.status, 0);
  t.match(deep.stderr, /ERR_PACKAGE_PATH_NOT_EXPORTED/, 'internals are not importable by name');
  // The launch stages: behind the documented subpath, not in the curated root.
  const stages = node(
    dir,
    'stages.mjs',
    [
      `import * as root from 'nodularity';`,
      `import * as internal from 'nodularity/internal';`,
      `console.log(JSON.stringify({ root: ['prepareLaunch', 'compileLaunch'].filter((n) => n in root), internal: Object.keys(internal).sort() }));`,
    ].join('\n'),
  );
  t.equal(stages.status, 0, stages.stderr);
  t.same(
    stages.status === 0 ? JSON.parse(stages.stdout) : null,
    { root: [], internal: ['compileLaunch', 'prepareLaunch'] },
    'prepareLaunch and compileLaunch are in nodularity/internal only',
  );
  const meta = node(
    dir,
    'meta.mjs',
    `import { createRequire } from 'node:module'; console.log(createRequire(import.meta.url)('nodularity/package.json').version);`,
  );
  t.equal(meta.stdout.trim(), pkg.version, 'package.json is');
  // The bin is a path, not an export: npm links node_modules/.bin/NAME to it.
  mkdirSync(join(dir, 'node_modules', '.bin'));
  const link = join(dir, 'node_modules', '.bin', 'nodularity');
  symlinkSync(join('..', 'nodularity', pkg.bin.nodularity), link);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${dirname(process.execPath)}:${process.env.PATH ?? '/usr/bin:/bin'}`,
  };
  delete env.NODE_OPTIONS;
  const bin = spawnSync(link, ['version'], { encoding: 'utf8', env });
  t.equal(bin.status, 0, `${link} version: ${bin.stderr ?? bin.error}`);
  t.match(bin.stdout, /^apptainer version \S+\+nodularity\.\S+/);
});

t.test(
  'the library loads no CLI or bench code: lib/bench, simple-statistics, commander, cli-progress stay out',
  async (t) => {
    const dir = userProject(t);
    const log = join(dir, 'loaded.txt');
    writeFileSync(
      join(dir, 'hooks.mjs'),
      `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) { appendFileSync(${JSON.stringify(log)}, url + '\\n'); return next(url, context); }
`,
    );
    writeFileSync(
      join(dir, 'register.mjs'),
      `import { register } from 'node:module';\nregister('./hooks.mjs', import.meta.url);\n`,
    );
    writeFileSync(
      join(dir, 'use.mjs'),
      `import * as n from 'nodularity';\nimport * as i from 'nodularity/image';\nconsole.log(typeof n.spawn, typeof i.pullImage);\n`,
    );
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const r = spawnSync(process.execPath, ['--import', './register.mjs', 'use.mjs'], {
      cwd: dir,
      env,
      encoding: 'utf8',
    });
    t.equal(r.status, 0, r.stderr);
    t.equal(r.stdout.trim(), 'function function');
    const loaded = readFileSync(log, 'utf8').split('\n').filter(Boolean);
    t.ok(
      loaded.some((u) => u.endsWith('/dist/index.js')),
      'the recorder saw the library load',
    );
    t.same(
      loaded.filter((u) =>
        /\/dist\/(bench|cli)\/|\/node_modules\/(simple-statistics|commander|cli-progress)\//.test(u),
      ),
      [],
      'nothing of the CLI or the bench is loaded by the library',
    );
  },
);
