// Stand-alone CLI with only the image verbs, so they can be tested before
// lib/cli/main.ts wires them in. argv as for the real binary.
import { Command } from 'commander';
import { registerImageCommands } from '../../../lib/cli/image-commands.js';

const program = new Command('nodularity');
program.exitOverride();
registerImageCommands(program);
try {
  await program.parseAsync(process.argv);
} catch (err) {
  const e = err as { code?: string; exitCode?: number; message?: string };
  if (e.code?.startsWith('commander.')) process.exit(e.exitCode ?? 2);
  process.stderr.write(`nodularity: ${e.message ?? String(err)}\n`);
  process.exit(1);
}
