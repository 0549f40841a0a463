// Stage "session": the session files (/etc/passwd, /etc/group) written to a
// private temp dir and bound read-only last among the mounts (nothing may
// cover them); the user's bind sources held open until the child has bound
// them, so that an automount (autofs under /cvmfs) cannot expire in between.
// Both are released by the returned dispose() (once the payload started, or
// the launch failed).
import { closeSync, constants as fsc, openSync } from 'node:fs';
import type { Spec } from '../../oci/spec.js';
import type { BindSpec } from '../binds.js';
import { makeSessionFiles, type SessionFiles } from '../session-files.js';
import { bind } from './paths.js';

/** Add the session files' binds to spec.mounts and pin the bind sources; returns what releases both. */
export function attachSession(spec: Spec, contents: Map<string, string>, userBinds: readonly BindSpec[]): () => void {
  let files: SessionFiles | undefined;
  const held: number[] = [];
  const dispose = () => {
    files?.close();
    files = undefined;
    for (const fd of held.splice(0)) closeSync(fd);
  };
  try {
    files = makeSessionFiles(contents);
    for (const [dest, src] of files.files) spec.mounts!.push(bind(src, dest, true));
    for (const b of userBinds) {
      try {
        held.push(openSync(b.source, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY));
      } catch {
        /* unreadable: the mount still works, only unpinned */
      }
    }
  } catch (e) {
    dispose();
    throw e;
  }
  return dispose;
}
