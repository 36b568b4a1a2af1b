#!/usr/bin/env node
/**
 * The ncf-native command line: prepare data, train and evaluate NeuMF, benchmark, recommend,
 * and check the build. Each command lives in lib/cli/.
 */
import { Command, CommanderError } from 'commander';

import { registerBench } from '../lib/cli/bench';
import { EXIT_USAGE } from '../lib/cli/common';
import { registerInfo } from '../lib/cli/info';
import { registerPrepare } from '../lib/cli/prepare';
import { registerRecommend } from '../lib/cli/recommend';
import { registerSelftest } from '../lib/cli/selftest';
import { registerTest, registerTrain } from '../lib/cli/train';
import { packageRoot } from '../lib/native';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const { version } = require(`${packageRoot()}/package.json`) as { version: string };

const program = new Command();
program
  .name('ncf-native')
  .description('Neural Collaborative Filtering (NeuMF): train fast on GPUs or CPUs, serve from Node.js')
  .version(version)
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();
program.configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error:') ? `ncf-native: ${s}` : s) });

registerPrepare(program);
registerTrain(program);
registerTest(program);
registerBench(program);
registerRecommend(program);
registerSelftest(program);
registerInfo(program);
for (const c of program.commands) c.exitOverride().showHelpAfterError('(run with --help for usage)');

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) {
    // --help and --version end with code 0; usage errors with 2.
    process.exitCode = err.exitCode === 0 ? 0 : EXIT_USAGE;
    return;
  }
  process.stderr.write(`ncf-native: error: ${(err as Error).message}\n`);
  process.exitCode = 1;
});
