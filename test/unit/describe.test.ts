// The describe stage: every step of the protocol renders as a ContainerError
// in the plan's own words, without launching anything.
import t from 'tap';
import { ContainerError, SpecError, STEP_NAMES } from '../../lib/errors.js';
import { describeFailure, type DescribeContext } from '../../lib/plan/describe.js';
import { OP } from '../../lib/plan/plan.js';

const ctx: DescribeContext = {
  ops: [
    {
      op: { kind: OP.BIND, source: '/cvmfs/x.cern.ch', target: '/cvmfs/x.cern.ch', attrSet: 0x6 },
      what: 'bind-mount /cvmfs/x.cern.ch -> /cvmfs/x.cern.ch',
      target: '/cvmfs/x.cern.ch',
      source: '/cvmfs/x.cern.ch',
    },
  ],
  rootfs: '/images/r',
  overlay: false,
  seccompInstructions: 0,
  cwd: '/work',
  execPath: '/usr/bin/python3',
  cloneFlags: 0x10020000,
  hostname: 'box',
  domainname: undefined,
  rootPropagation: 'rslave',
  uidMap: '0 1000 1\n',
  gidMap: '0 1000 1\n',
  uidHelperArgs: ['/usr/bin/newuidmap', '0', '200000', '65536'],
  gidHelperArgs: ['/usr/bin/newgidmap', '0', '200000', '65536'],
  rlimitTypes: ['RLIMIT_NOFILE'],
  uid: 1000,
  gid: 1000,
  groups: [5],
};

t.test('every step has a row: a ContainerError naming the step, with errno text', async (t) => {
  const messages = new Set<string>();
  STEP_NAMES.forEach((name, step) => {
    const e = describeFailure({ step, errno: 1, index: 0, detail: 0 }, ctx);
    t.ok(e instanceof ContainerError, name);
    t.equal(e.step, name);
    t.equal(e.code, 'EPERM');
    t.notMatch(e.message, /^step \d+|^unknown/, `${name} has its own words`);
    messages.add(e.message.split(':')[0]);
  });
  t.equal(messages.size, STEP_NAMES.length, 'no two steps read the same');
});

t.test('index and detail are read as protocol.h says', async (t) => {
  const m = describeFailure({ step: STEP_NAMES.indexOf('mount'), errno: 2, index: 0, detail: 8 }, ctx);
  t.match(m.message, /^bind-mount \/cvmfs\/x.cern.ch -> \/cvmfs\/x.cern.ch: open_tree\(2\) ENOENT/);
  t.equal(m.target, '/cvmfs/x.cern.ch');
  t.match(m.hint, /CernVM-FS repository is not mounted/);
  t.match(
    describeFailure({ step: STEP_NAMES.indexOf('drop-bounding-caps'), errno: 1, index: 21, detail: 0 }, ctx).message,
    /CAP_SYS_ADMIN/,
  );
  t.match(
    describeFailure({ step: STEP_NAMES.indexOf('rlimit'), errno: 1, index: 0, detail: 0 }, ctx).message,
    /^set RLIMIT_NOFILE/,
  );
  t.match(
    describeFailure(
      { step: STEP_NAMES.indexOf('id-map-helper'), errno: 1, index: 1, detail: 0, helperOutput: 'newgidmap: nope\n' },
      ctx,
    ).message,
    /^\/usr\/bin\/newgidmap 0 200000 65536: .*\(newgidmap: nope\)/,
  );
  t.match(
    describeFailure({ step: STEP_NAMES.indexOf('uid-map'), errno: 1, index: 1, detail: 0 }, ctx).message,
    /by the parent/,
  );
  t.match(
    describeFailure({ step: STEP_NAMES.indexOf('setup-ids'), errno: 1, index: 1, detail: 0 }, ctx).message,
    /uid 0.*setresuid/,
  );
  t.match(
    describeFailure({ step: STEP_NAMES.indexOf('protocol'), errno: 71, index: 2, detail: 0 }, ctx).message,
    /unexpected type.*EPROTO/,
  );
  t.match(describeFailure({ step: 99, errno: 1, index: 0, detail: 0 }, ctx).message, /^unknown step 99/);
});

t.test('SpecError: pointer is a JSON pointer, options go in option', async (t) => {
  const p = new SpecError('/mounts/2/source', 'missing');
  t.equal(p.pointer, '/mounts/2/source');
  t.equal(p.option, undefined);
  t.equal(p.message, '/mounts/2/source: missing');
  const o = SpecError.inOption('--bind', 'bind source /x does not exist');
  t.equal(o.pointer, '', 'not a pointer');
  t.equal(o.option, '--bind');
  t.equal(o.message, '--bind: bind source /x does not exist');
  t.equal(new SpecError('/process/args/0', 'not found', { code: 'ENOENT' }).code, 'ENOENT');
  const legacy = new SpecError('--workdir', '/x does not exist');
  t.equal(legacy.pointer, '', 'an option name given where a pointer goes is moved to option');
  t.equal(legacy.option, '--workdir');
  t.equal(legacy.message, '--workdir: /x does not exist');
  t.equal(new SpecError('', 'bad file').message, '/: bad file');
});
