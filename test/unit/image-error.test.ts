// One meaning of `code` on every error class (docs/error-model.md): an errno
// name or absent. ImageError's kind is `reason`.
import t from 'tap';
import { ContainerError, ImageError, SpecError } from '../../lib/index.js';

t.test('ImageError: the kind is reason, code is the errno behind it or absent', async (t) => {
  const plain = new ImageError('DIGEST_MISMATCH', 'layer sha256:x: content hashes to sha256:y', { digest: 'sha256:x' });
  t.equal(plain.reason, 'DIGEST_MISMATCH');
  t.equal(plain.code, undefined, 'no errno behind a digest mismatch');
  const cause = Object.assign(new Error('EACCES: permission denied, open blob'), { code: 'EACCES', syscall: 'open' });
  const io = new ImageError('BAD_LAYER', 'layer sha256:x: cannot read its blob', { cause });
  t.equal(io.reason, 'BAD_LAYER');
  t.equal(io.code, 'EACCES');
  const notErrno = new ImageError('REGISTRY', 'bad answer', {
    cause: Object.assign(new Error('x'), { code: 'ERR_HTTP2' }),
  });
  t.equal(notErrno.code, undefined, 'a code that is not an errno name is not copied');
});

t.test('code is an errno name on the other classes too', async (t) => {
  const c = new ContainerError('mount x', { step: 'mount', errno: 2 });
  t.equal(c.code, 'ENOENT');
  const s = new SpecError('/process/args/0', 'not found', { code: 'ENOENT' });
  t.equal(s.code, 'ENOENT');
});
