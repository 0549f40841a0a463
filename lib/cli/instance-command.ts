// `nodularity instance start|run|list|stop`, with Apptainer's flags and
// messages. The instance is joined by the ordinary verbs with an IMAGE of
// `instance://NAME` (exec, run, shell, test): see lib/singularity/instance.ts.
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { SpecError } from '../errors.js';
import {
  getInstance,
  listInstances,
  startInstance,
  stopInstance,
  type Instance,
  type InstanceStopResult,
} from '../singularity/index.js';
import { namedUser } from '../singularity/instance-store.js';
import { jsonPrintable, printable } from './printable.js';
import { actionOptions, launch, say, settle, type ActionFlags, type GlobalFlags } from './apptainer-commands.js';

interface ListFlags {
  json?: boolean;
  user?: string;
  logs?: boolean;
}

interface StopFlags {
  all?: boolean;
  signal?: string;
  timeout?: string;
  force?: boolean;
}

function listLines(instances: Instance[], logs: boolean): string[] {
  const row = (cells: string[]) =>
    cells
      .map((c, k) => (k === cells.length - 1 ? c : `${c.padEnd([16, 8, 15][k]!)} `))
      .join('')
      .trimEnd();
  const lines = [row(logs ? ['INSTANCE NAME', 'PID', 'LOGS'] : ['INSTANCE NAME', 'PID', 'IP', 'IMAGE'])];
  for (const i of instances) {
    if (!logs) {
      lines.push(row([i.name, String(i.pid), '', printable(i.image.ref)]));
      continue;
    }
    lines.push(row([i.name, String(i.pid), printable(i.logs.err)]));
    lines.push(row(['', '', printable(i.logs.out)]));
  }
  return lines;
}

/** Seconds from --timeout (Apptainer: an integer, default 10). */
function timeoutSeconds(v: string | undefined): number {
  if (v === undefined) return 10;
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v.trim()) || !Number.isFinite(n))
    throw SpecError.inOption('--timeout', `must be a number of seconds, not ${JSON.stringify(v)}`);
  return n;
}

/** --signal: a name (TERM, SIGTERM) or a number. */
function signalArg(v: string | undefined): NodeJS.Signals | number | undefined {
  if (v === undefined) return undefined;
  if (/^\d+$/.test(v)) return Number(v);
  const name = (v.toUpperCase().startsWith('SIG') ? v.toUpperCase() : `SIG${v.toUpperCase()}`) as NodeJS.Signals;
  return name;
}

/** `full`: with the action flags of `instance start|run` (false: another verb runs). */
export function registerInstanceCommand(program: Command, full = true): void {
  const instance = program
    .command('instance')
    .description('long-lived containers: start, run, list, stop (join one with exec|run|shell|test instance://NAME)');

  const startVerb = (verb: 'start' | 'run') =>
    (full ? actionOptions(instance.command(verb)) : instance.command(verb))
      .description(
        verb === 'start'
          ? 'start an instance: its /.singularity.d/startscript, else the instance alone (its init keeps it)'
          : "start an instance running the image's runscript",
      )
      .argument('<image>', 'directory, oci:, docker-archive: or docker:// image')
      .argument('<name>', 'instance name (letters, digits, . _ + -; at most 128)')
      .argument('[args...]', `arguments for the ${verb === 'start' ? 'startscript' : 'runscript'}`)
      .option('--pid-file <file>', "write the instance's PID (its init, on the host) to this file")
      .passThroughOptions()
      .action(
        async (image: string, name: string, args: string[], f: ActionFlags & { pidFile?: string }, cmd: Command) => {
          settle(program, cmd, 'instance', f);
          const i = await launch(program, f, (o) =>
            startInstance(image, name, { ...o, args, mode: verb, onNotice: o.onNotice }),
          );
          if (f.pidFile !== undefined) {
            try {
              writeFileSync(f.pidFile, `${i.pid}\n`);
            } catch (e) {
              await i.stop({ timeout: 0 });
              throw SpecError.inOption(
                '--pid-file',
                `cannot write ${f.pidFile} (${(e as NodeJS.ErrnoException).code}); the instance was stopped`,
              );
            }
          }
          say(program, 'INFO', ['instance started successfully']);
          process.exit(0);
        },
      );
  startVerb('start');
  startVerb('run');

  instance
    .command('list')
    .description('list running instances')
    .argument('[name]', 'only this instance (a name)')
    .option('-j, --json', "print as JSON (Apptainer's form)")
    .option('-u, --user <user>', "root: another user's instances")
    .option('-l, --logs', 'show the paths of the log files')
    .action(async (name: string | undefined, f: ListFlags) => {
      const user = f.user !== undefined ? namedUser(f.user) : undefined;
      let all = await listInstances({ user });
      if (name !== undefined) all = all.filter((i) => i.name === name);
      if (f.json) {
        const instances = all.map((i) => ({
          instance: i.name,
          pid: i.pid,
          img: i.image.ref,
          ip: '',
          logErrPath: i.logs.err,
          logOutPath: i.logs.out,
        }));
        process.stdout.write(`${jsonPrintable({ instances })}\n`);
        return;
      }
      process.stdout.write(`${listLines(all, !!f.logs).join('\n')}\n`);
    });

  instance
    .command('stop')
    .description('stop instances: SIGTERM (or --signal), SIGKILL after --timeout; returns once every process is gone')
    .argument('[name]', 'instance name')
    .option('-a, --all', 'stop all your instances')
    .option('-s, --signal <sig>', 'signal to send first (name or number)')
    .option('-t, --timeout <seconds>', 'seconds before SIGKILL (default 10)')
    .option('-F, --force', 'SIGKILL at once')
    .action(async (name: string | undefined, f: StopFlags) => {
      if ((name === undefined) === !f.all) throw SpecError.inOption('instance stop', 'give an instance name or --all');
      const timeout = f.force ? 0 : timeoutSeconds(f.timeout);
      const signal = f.force ? 'SIGKILL' : signalArg(f.signal);
      const names = f.all ? (await listInstances()).map((i) => i.name) : [name!];
      const results: InstanceStopResult[] = [];
      for (const n of names) {
        const i = await getInstance(n);
        if (!i) {
          const r = await stopInstance(n); // a dead record: cleaned
          if (!f.all)
            throw SpecError.inOption(
              'instance stop',
              `no instance found with name ${n}${r ? ' (it had died; its record was removed)' : ''}`,
            );
          continue;
        }
        say(program, 'INFO', [`Stopping ${n} instance of ${i.image.ref} (PID=${i.pid})`]);
        results.push(await i.stop({ signal, timeout }));
      }
      const g = program.opts<GlobalFlags>();
      for (const r of results)
        if (r.killed && !f.force && !g.quiet && !g.silent)
          process.stderr.write(`INFO:    ${r.name} did not stop within ${timeout} s: killed (SIGKILL)\n`);
      if (f.all && results.length === 0) say(program, 'INFO', ['No instance found']);
    });

  for (const c of instance.commands) {
    c.exitOverride();
    c.showHelpAfterError();
    c.configureOutput({ outputError: (str, write) => write(str.replace(/^error: /, 'FATAL:   ')) });
  }
}
