/** `ncf-native selftest --device cpu|cuda`: prints the check table, exits 1 on any failure. */
import { type Command, Option } from 'commander';

import { formatSelftest, selftest } from '../selftest/selftest';
import { action, EXIT_FAILURE, intArg } from './common';

export function registerSelftest(program: Command): void {
  program
    .command('selftest')
    .description('check every op (CUDA: against its CPU twin) and a short training run')
    .addOption(new Option('--device <name>', 'backend to check').choices(['cpu', 'cuda']).default('cpu'))
    .option('--threads <n>', 'CPU threads', intArg(1, 1024))
    .option('--no-training', 'skip the training runs')
    .option('--json', 'print as JSON')
    .action(
      action(async (o: { device: 'cpu' | 'cuda'; threads?: number; training: boolean; json?: boolean }) => {
        const r = await selftest(o.device, { threads: o.threads, training: o.training });
        process.stdout.write((o.json ? JSON.stringify(r, null, 2) : formatSelftest(r)) + '\n');
        if (!r.ok) process.exitCode = EXIT_FAILURE;
      }),
    );
}
