/** `ncf-native bench train|eval|infer|prepare`: benchmarks that print their figures. */
import { Command, Option } from 'commander';

import { benchInfer } from '../bench/infer-bench';
import { benchPrepare } from '../bench/prepare-bench';
import { benchTrain } from '../bench/train-bench';
import { action, intArg, intListArg } from './common';

const print = (line: string) => process.stdout.write(line + '\n');

function dataOf(o: Record<string, unknown>): string {
  return (o.data as string | undefined) ?? `synthetic:${o.synthetic as string}`;
}

function trainLike(cmd: Command, what: 'train' | 'eval'): void {
  cmd
    .option('--synthetic <shape>', 'synthetic data of this shape (ml-20m, ml-1m, ml-100k, small, tiny)', 'ml-20m')
    .option('--data <dataset>', 'a prepared dataset (or any --data of train) instead of synthetic data')
    .option('--amp', 'mixed precision (CUDA)')
    .option('-e, --epochs <n>', 'epochs to time (the first is a warm-up)', intArg(1), 3)
    .option('-b, --batch-size <n>', 'global batch size', intArg(1, 2 ** 31 - 1), 1048576)
    .addOption(new Option('--backend <name>', 'compute backend').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .option('--threads <n>', 'CPU threads', intArg(1, 1024))
    .option('--seed <n>', 'seed', intArg(0), 1)
    .option('--no-neg-trick', 'verify training negatives')
    .option('--no-tf32', 'fp32 GEMMs without TF32')
    .option('--xla', 'training steps as CUDA Graphs (as train --xla)')
    .option('--autotune', 'kernel forms timed on the first steps and batches (as train --autotune)')
    .option('--repeats <n>', 'evaluations to time (bench eval)', intArg(1), 5)
    .option('--out <file>', 'write the figures as JSON', `bench-${what}.json`)
    .action(
      action(async (o: Record<string, unknown>) => {
        await benchTrain({
          what, data: dataOf(o), amp: !!o.amp, epochs: o.epochs as number, batchSize: o.batchSize as number,
          backend: o.backend as 'auto', threads: o.threads as number | undefined, seed: o.seed as number,
          negTrick: o.negTrick as boolean, tf32: o.tf32 as boolean, cudaGraphs: !!o.xla, autotune: !!o.autotune, evalRepeats: o.repeats as number,
          out: o.out as string, print,
        });
      }),
    );
}

export function registerBench(program: Command): void {
  const bench = program.command('bench').description('benchmarks: train, eval, infer, prepare');
  trainLike(bench.command('train').description('training throughput (samples/s per epoch), epoch time, peak memory'), 'train');
  trainLike(bench.command('eval').description('evaluation throughput (samples/s)'), 'eval');
  bench
    .command('infer')
    .description('inference throughput and latency per batch size, and one user\'s full-catalog top-10 latency')
    .addOption(new Option('--backend <name>', 'compute backend').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .option('--batch-sizes <sizes...>', 'batch sizes (default 1024 4096 16384 65536 262144 1048576)', intListArg)
    .addOption(new Option('--precision <p...>', 'precisions to measure (default: fp32 tf32 fp16 on CUDA, fp32 on CPU)').choices(['fp32', 'tf32', 'fp16']))
    .option('--checkpoint <file>', 'use this model instead of a random ml-20m-shaped one')
    .option('--threads <n>', 'CPU threads', intArg(1, 1024))
    .option('--seconds <s>', 'time per measurement', Number, 2)
    .option('--topk-users <n>', 'users for the top-10 latency (0 to skip)', intArg(0), 300)
    .option('--out <file>', 'write the figures as JSON', 'bench-infer.json')
    .action(
      action(async (o: Record<string, unknown>) => {
        await benchInfer({
          backend: o.backend as 'auto',
          batchSizes: (o.batchSizes as number[] | undefined) ?? [1024, 4096, 16384, 65536, 262144, 1048576],
          precisions: o.precision as ('fp32' | 'tf32' | 'fp16')[] | undefined,
          checkpoint: o.checkpoint as string | undefined,
          threads: o.threads as number | undefined,
          seconds: o.seconds as number,
          topkUsers: o.topkUsers as number,
          out: o.out as string,
          print,
        });
      }),
    );
  bench
    .command('prepare')
    .description('seconds to preprocess a 20M-row ml-20m-style ratings.csv')
    .option('--csv <file>', 'time this file instead of a generated one')
    .option('--shape <name>', 'shape of the generated CSV', 'ml-20m')
    .option('--repeats <n>', 'runs', intArg(1), 1)
    .option('--threads <n>', 'threads', intArg(1, 1024))
    .option('--out <file>', 'write the figures as JSON', 'bench-prepare.json')
    .action(
      action(async (o: Record<string, unknown>) => {
        await benchPrepare({
          csv: o.csv as string | undefined, shape: o.shape as string, repeats: o.repeats as number,
          threads: o.threads as number | undefined, out: o.out as string, print,
        });
      }),
    );
}
