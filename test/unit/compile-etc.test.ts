// Stage "etc" (lib/singularity/compile/etc.ts): the host /etc files bound, and which --no-mount leaves out.
// (The passwd/group contents read the image through the addon: test/singularity covers them.)
import t from 'tap';
import { planEtcBinds } from '../../lib/singularity/compile/etc.js';

const all = () => true;
const dests = (noMount: string[], exists: (p: string) => boolean = all) =>
  planEtcBinds(new Set(noMount), exists).map((m) => m.destination);

t.test('resolv.conf, hosts, localtime: read-only binds of the host files that exist', async (t) => {
  t.same(dests([]), ['/etc/resolv.conf', '/etc/hosts', '/etc/localtime']);
  t.same(planEtcBinds(new Set(), all)[0], {
    destination: '/etc/resolv.conf',
    source: '/etc/resolv.conf',
    type: 'bind',
    options: ['rbind', 'rslave', 'ro'],
  });
  t.same(
    dests([], (p) => p !== '/etc/localtime'),
    ['/etc/resolv.conf', '/etc/hosts'],
  );
});

t.test('--no-mount: one file, or bind-paths (hosts and localtime, not resolv.conf)', async (t) => {
  t.same(dests(['/etc/hosts']), ['/etc/resolv.conf', '/etc/localtime']);
  t.same(dests(['bind-paths']), ['/etc/resolv.conf']);
  t.same(dests(['/etc/resolv.conf', 'bind-paths']), []);
});
