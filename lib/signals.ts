// Signal names and numbers: one table (the OS's, from node:os) for the
// library (Container.kill, killSignal, exit results) and the CLI (`oci kill`).
import { constants as osc } from 'node:os';

const byName = osc.signals as Record<string, number>;
const byNumber = new Map<number, NodeJS.Signals>();
// First name wins where two share a number (SIGABRT before SIGIOT, SIGIO before SIGPOLL).
for (const [name, n] of Object.entries(byName)) if (!byNumber.has(n)) byNumber.set(n, name as NodeJS.Signals);

/** The number of a signal given by name (SIGTERM) or number; TypeError for an unknown name. */
export function signalNumber(sig: NodeJS.Signals | number): number {
  if (typeof sig === 'number') return sig;
  const n = byName[sig];
  if (n === undefined) throw new TypeError(`unknown signal ${JSON.stringify(sig)}`);
  return n;
}

/** The name of signal number N, or null when the OS has none. */
export function signalName(n: number): NodeJS.Signals | null {
  return byNumber.get(n) ?? null;
}

/**
 * A signal as a user types it: TERM, SIGTERM, term or 15. Returns its name, or
 * null when it is none (the caller names the option in its error).
 */
export function parseSignal(text: string): NodeJS.Signals | null {
  const s = text.toUpperCase();
  if (/^\d+$/.test(s)) return signalName(Number(s));
  const name = s.startsWith('SIG') ? s : `SIG${s}`;
  return name in byName ? (name as NodeJS.Signals) : null;
}
