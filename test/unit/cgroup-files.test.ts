// linux.resources -> cgroup files, and the host's hierarchies from /proc: pure parts of lib/cgroups.
import t from 'tap';
import {
  DEFAULT_ALLOWED_DEVICES,
  parseHierarchies,
  resourceWrites,
  sharesToWeight,
  blkioToIoWeight,
} from '../../lib/cgroups/index.js';

const HYBRID_MOUNTINFO = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw`;
const HYBRID_CGROUP = `9:name=systemd:/user.slice
4:memory:/job/42
1:cpu,cpuacct:/
0::/user.slice/job`;

t.test('hierarchies: hybrid, unified, a cgroup namespace, a cgroup outside the mount', async (t) => {
  const h = parseHierarchies(HYBRID_MOUNTINFO, HYBRID_CGROUP, () => 'hugetlb');
  t.equal(h.mode, 'hybrid');
  t.same([...h.v1.keys()].sort(), ['cpu', 'cpuacct', 'memory'], 'named hierarchies hold no controller');
  t.equal(h.v1.get('cpu'), h.v1.get('cpuacct'), 'co-mounted controllers share one hierarchy');
  t.equal(h.v1.get('memory')!.own, '/sys/fs/cgroup/memory/job/42');
  t.equal(h.v2!.own, '/sys/fs/cgroup/unified/user.slice/job');
  t.same([...h.v2!.controllers], ['hugetlb']);

  const u = parseHierarchies(
    '24 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate',
    '0::/system.slice/condor.service/slot1',
    () => 'cpuset cpu io memory pids',
  );
  t.equal(u.mode, 'unified');
  t.equal(u.v2!.own, '/sys/fs/cgroup/system.slice/condor.service/slot1');
  t.ok(u.v2!.controllers.has('memory'));

  // In a cgroup namespace (or a container) the mount shows a subtree: its root is field 4.
  const ns = parseHierarchies(
    '24 1 0:22 /payload /sys/fs/cgroup rw - cgroup2 cgroup2 rw',
    '0::/payload/step',
    () => '',
  );
  t.equal(ns.v2!.own, '/sys/fs/cgroup/step');
  const outside = parseHierarchies('24 1 0:22 /other /sys/fs/cgroup rw - cgroup2 cgroup2 rw', '0::/payload', () => '');
  t.equal(outside.v2, null, 'a cgroup outside the mounted subtree is not ours to use');
  t.equal(outside.mode, 'none');
  // mountinfo escapes spaces in paths
  const esc = parseHierarchies('24 1 0:22 / /sys/fs/cg\\040root rw - cgroup2 cgroup2 rw', '0::/', () => '');
  t.equal(esc.v2!.mount, '/sys/fs/cg root');
});

const v1 = () => 1 as const;
const v2 = () => 2 as const;
const files = (w: { writes: { file: string; value: string }[] }) => w.writes.map((x) => `${x.file}=${x.value}`);

t.test('v1 and v2 files, in the order the kernel needs them', async (t) => {
  const r = {
    memory: { limit: 64 << 20, reservation: 32 << 20, swap: 128 << 20 },
    cpu: { shares: 1024, quota: 50000, period: 100000, cpus: '0-1', mems: '0' },
    pids: { limit: 32 },
    blockIO: { weight: 500, throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1048576 }] },
    hugepageLimits: [{ pageSize: '2MB', limit: 0 }],
  };
  t.same(files(resourceWrites(r, v1)), [
    'memory.limit_in_bytes=67108864',
    'memory.soft_limit_in_bytes=33554432',
    'memory.memsw.limit_in_bytes=134217728',
    'cpu.shares=1024',
    'cpu.cfs_period_us=100000',
    'cpu.cfs_quota_us=50000',
    'cpuset.cpus=0-1',
    'cpuset.mems=0',
    'pids.max=32',
    'blkio.weight=500',
    'blkio.throttle.read_bps_device=8:0 1048576',
    'hugetlb.2MB.limit_in_bytes=0',
  ]);
  t.same(files(resourceWrites(r, v2)), [
    'memory.max=67108864',
    'memory.low=33554432',
    'memory.swap.max=67108864', // v2 counts swap alone: memory+swap - memory
    'cpu.weight=39',
    'cpu.max=50000 100000',
    'cpuset.cpus=0-1',
    'cpuset.mems=0',
    'pids.max=32',
    'io.weight=default 4950',
    'io.max=8:0 rbps=1048576',
    'hugetlb.2MB.max=0',
  ]);
  t.same(files(resourceWrites({ memory: { limit: -1, swap: -1 }, pids: { limit: 0 }, cpu: { quota: -1 } }, v2)), [
    'memory.max=max',
    'memory.swap.max=max',
    'cpu.max=max 100000',
    'pids.max=max',
  ]);
  t.equal(sharesToWeight(2), 1);
  t.equal(sharesToWeight(262144), 10000);
  t.equal(blkioToIoWeight(10), 1);
  t.equal(blkioToIoWeight(1000), 10000);
});

t.test('v1 device rules in order; on v2 the same rules go to the BPF device program', async (t) => {
  const devices = [
    { allow: false, access: 'rwm' },
    { allow: true, type: 'c' as const, major: 1, minor: 3, access: 'rw' },
    { allow: true, type: 'c' as const, major: 136, minor: null, access: 'rwm' },
  ];
  t.same(files(resourceWrites({ devices }, v1, [{ type: 'c', major: 10, minor: 229 }])), [
    'devices.deny=a',
    'devices.allow=c 1:3 rw',
    'devices.allow=c 136:* rwm',
    ...DEFAULT_ALLOWED_DEVICES.map((d) => `devices.allow=${d}`),
    'devices.allow=c 10:229 rwm',
  ]);
  t.same(
    files(resourceWrites({ devices: [] }, v1, [{ type: 'c', major: 10, minor: 229 }])),
    [],
    'no rules: left alone',
  );
  const w2 = resourceWrites({ devices }, v2);
  t.same(w2.writes, []);
  t.same(w2.warnings, []);
  t.same(w2.bpfDevices.slice(0, 3), [
    { allow: false, rule: 'a' },
    { allow: true, rule: 'c 1:3 rw' },
    { allow: true, rule: 'c 136:* rwm' },
  ]);
  t.equal(w2.bpfDevices.length, 3 + DEFAULT_ALLOWED_DEVICES.length, 'the default nodes too');
});

t.test('bad values are SpecErrors naming the field', async (t) => {
  const cases: [unknown, string, RegExp][] = [
    [{ memory: { limit: 1.5 } }, '/linux/resources/memory/limit', /integer/],
    [{ cpu: { cpus: '0;rm -rf' } }, '/linux/resources/cpu/cpus', /list/],
    [{ hugepageLimits: [{ pageSize: '../x', limit: 1 }] }, '/linux/resources/hugepageLimits/0/pageSize', /size/],
    [{ unified: { '../../etc/passwd': 'x' } }, '/linux/resources/unified/..~1..~1etc~1passwd', /interface file/],
    [{ unified: { 'cgroup.procs': '1' } }, '/linux/resources/unified/cgroup.procs', /only cgroup\.max\.depth/],
    [{ unified: { 'cgroup.kill': '1' } }, '/linux/resources/unified/cgroup.kill', /only cgroup\.max\.depth/],
    [{ devices: [{ allow: true, type: 'x' }] }, '/linux/resources/devices/0/type', /a, b or c/],
    [{ blockIO: { weight: 5 } }, '/linux/resources/blockIO/weight', /10 to 1000/],
    // A deny inside a wider allow would change nothing in the kernel: /dev/null would stay writable.
    [
      {
        devices: [
          { allow: false },
          { allow: true, type: 'c', major: 1, access: 'rw' },
          { allow: false, type: 'c', major: 1, minor: 3, access: 'w' },
        ],
      },
      '/linux/resources/devices/2',
      /cannot take w away from c 1:3 inside the wider rule \/linux\/resources\/devices\/1/,
    ],
  ];
  for (const [r, pointer, msg] of cases) {
    t.throws(() => resourceWrites(r as never, v1), { name: 'SpecError', pointer, message: msg }, pointer);
  }
  t.throws(() => resourceWrites({ memory: { swap: 1 << 20 } }, v2), {
    name: 'SpecError',
    pointer: '/linux/resources/memory/swap',
  });
  t.throws(() => resourceWrites({ memory: { swappiness: 10 } }, v2), /no per-cgroup swappiness/);
  t.throws(() => resourceWrites({ unified: { 'memory.high': '1G' } }, v1), /need memory on cgroup v2/);
  // The same narrowing on exactly the rule's own key is what the kernel does apply: accepted.
  t.doesNotThrow(() =>
    resourceWrites(
      {
        devices: [
          { allow: false },
          { allow: true, type: 'c', major: 1, minor: 3, access: 'rw' },
          { allow: false, type: 'c', major: 1, minor: 3, access: 'w' },
        ],
      },
      v1,
    ),
  );
});
