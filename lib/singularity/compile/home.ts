// Stage "home": where the home directory is inside (--home's DST, /root with
// --fakeroot, else the caller's $HOME) and which host directory backs it:
// --home's SRC, else the caller's home unless --no-home, --contain or
// --no-mount home says otherwise (or it does not exist).
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { checkAbsolute, existingDir } from './paths.js';

export interface HomeInput {
  /** --home `src[:dst]`. */
  home?: string;
  noHome?: boolean;
  fakeroot?: boolean;
  contain: boolean;
  noMount: ReadonlySet<string>;
  hostEnv: NodeJS.ProcessEnv;
}

export interface HomePlan {
  /** Host directory bound at `dst`; absent when none is. */
  src?: string;
  /** The home directory inside ($HOME, passwd). */
  dst: string;
  /** --no-home or --no-mount home: no home directory is mounted, not even a fresh one. */
  noHome: boolean;
}

/** The home directory inside and its host source. Throws a SpecError naming --home. */
export function planHome(i: HomeInput): HomePlan {
  let hostHome = i.hostEnv.HOME;
  if (!hostHome)
    try {
      hostHome = userInfo().homedir;
    } catch {
      hostHome = '/';
    }
  let src: string | undefined, dst: string;
  if (i.home !== undefined) {
    const [s, d] = i.home.split(':');
    checkAbsolute('--home', s);
    if (d !== undefined) checkAbsolute('--home', d);
    src = existingDir('--home', s);
    dst = d || s;
  } else {
    dst = i.fakeroot ? '/root' : hostHome;
    if (!i.noHome && !i.contain && existsSync(hostHome)) src = hostHome;
  }
  const noHome = !!i.noHome || i.noMount.has('home');
  return { ...(noHome || src === undefined ? {} : { src }), dst, noHome };
}
