// --authfile (and APPTAINER_AUTH_FILE) through the CLI installed as
// `apptainer`: a docker:// image behind basic auth (a real registry on
// 127.0.0.1) is pulled with the credentials of a Docker-style auth file given
// on the command line, and refused without it.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildFixtureImage, type FixtureImage } from '../image/fixtures/images.js';
import { startRegistry, type TestRegistry } from '../image/fixtures/registry.js';
import { removeAll, run as runTool, scratch, skopeoEnv } from '../image/fixtures/tools.js';
import { installAs, run } from './apptainer-cli.js';

const creds = { username: 'pilot', password: 'pa55word' };
let fx: FixtureImage;
let locked: TestRegistry;
let work: string;

t.before(async () => {
  fx = await buildFixtureImage();
  work = scratch('authfile');
  locked = await startRegistry(creds);
  runTool(
    'skopeo',
    [
      'copy',
      '--quiet',
      '--dest-tls-verify=false',
      '--dest-creds',
      `${creds.username}:${creds.password}`,
      `oci:${fx.layout}:v1`,
      `docker://${locked.host}/private/img:v1`,
    ],
    { env: skopeoEnv(join(work, 'skopeo-home')) },
  );
});

t.teardown(async () => {
  await locked?.stop();
  if (fx) removeAll(fx.dir);
  if (work) removeAll(work);
});

t.test('--authfile and APPTAINER_AUTH_FILE give the registry credentials', async (t) => {
  const cli = installAs(t, 'apptainer');
  const auth = join(work, 'auth.json');
  writeFileSync(
    auth,
    JSON.stringify({
      auths: { [locked.host]: { auth: Buffer.from(`${creds.username}:${creds.password}`).toString('base64') } },
    }),
  );
  // A home with no credentials of its own, a cache of its own per run.
  const env = (n: string, more: NodeJS.ProcessEnv = {}) => ({
    HOME: join(work, 'home'),
    NODULARITY_CACHE: join(work, `cache-${n}`),
    REGISTRY_AUTH_FILE: undefined,
    ...more,
  });
  const ref = `docker://${locked.host}/private/img:v1`;
  const none = run(cli, ['exec', '--no-https', ref, '/bin/true'], env('none'));
  t.equal(none.code, 255, 'refused without credentials');
  t.match(none.err, /^FATAL: {3}.*requires a login/m);
  const flag = run(
    cli,
    ['-q', 'exec', '--no-https', '--authfile', auth, ref, '/bin/sh', '-c', 'echo pulled'],
    env('flag'),
  );
  t.equal(flag.code, 0, flag.err);
  t.equal(flag.out, 'pulled\n');
  const knob = run(
    cli,
    ['-q', 'exec', ref, '/bin/sh', '-c', 'echo pulled'],
    env('knob', { APPTAINER_AUTH_FILE: auth, APPTAINER_NOHTTPS: '1' }),
  );
  t.equal(knob.code, 0, knob.err);
  t.equal(knob.out, 'pulled\n');
});
