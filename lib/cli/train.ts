/** `ncf-native train` and `ncf-native test`: the options keep the reference's names. */
import { Command, Option } from 'commander';

import { train } from '../train/train';
import type { TrainOptions } from '../train/types';
import { action, floatArg, followRun, intArg, intListArg } from './common';

function addModelOptions(cmd: Command): Command {
  return cmd
    .option('--data <dataset>', "prepared dataset folder, ml-20m, ml-1m, synthetic[:SHAPE] or an interactions file (default: ml-20m, or the checkpoint's dataset)")
    .option('--valid-users-per-batch <n>', 'users per evaluation batch', intArg(1), 5000)
    .option('-k, --topk <k>', 'rank for a test item to count as a hit', intArg(1), 10)
    .option('--valid-negative <n>', 'test negatives per user in evaluation', intArg(1, 10000), 100)
    .addOption(new Option('--backend <name>', 'compute backend').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .option('--device <n>', 'GPU index (default: the local rank)', intArg(0, 1024))
    .option('--threads <n>', 'CPU threads (default: all available)', intArg(1, 1024))
    .option('--no-tf32', 'fp32 GEMMs without TF32 Tensor Cores (GPU)')
    .option('--log-path <file>', 'append DLLogger-style JSON lines here', 'log.json')
    .option('--no-progress', 'no progress bar')
    .option('--verbose', 'more output');
}

function trainOptionsFrom(o: Record<string, unknown>): TrainOptions {
  return {
    data: o.data as string | undefined,
    epochs: o.epochs as number | undefined,
    batchSize: o.batchSize as number | undefined,
    validUsersPerBatch: o.validUsersPerBatch as number,
    factors: o.factors as number | undefined,
    layers: o.layers as number[] | undefined,
    negativeSamples: o.negativeSamples as number | undefined,
    learningRate: o.learningRate as number | undefined,
    topk: o.topk as number,
    seed: o.seed as number | undefined,
    target: o.target as number | undefined,
    amp: !!o.amp,
    validNegative: o.validNegative as number,
    beta1: o.beta1 as number | undefined,
    beta2: o.beta2 as number | undefined,
    eps: o.eps as number | undefined,
    dropout: o.dropout as number | undefined,
    lossScale: o.lossScale as number | undefined,
    checkpointDir: o.checkpointDir as string | undefined,
    loadCheckpointPath: o.loadCheckpointPath as string | undefined,
    mode: o.mode as 'train' | 'test' | undefined,
    negTrick: o.negTrick as boolean | undefined,
    evalAfter: o.evalAfter as number | undefined,
    logPath: o.logPath as string,
    verbose: !!o.verbose,
    backend: o.backend as TrainOptions['backend'],
    device: o.device as number | undefined,
    resume: !!o.resume,
    threads: o.threads as number | undefined,
    tf32: o.tf32 as boolean,
    cudaGraphs: !!o.xla,
    autotune: !!o.autotune,
    distributed: !!o.distributed,
  };
}

async function runAndReport(opts: TrainOptions, progress: boolean, json: boolean): Promise<void> {
  const run = train(opts);
  followRun(run, { progress, logToStderr: json });
  const onSignal = () => {
    process.stderr.write('\nstopping after the current step (Ctrl-C again to quit now)\n');
    run.cancel();
    process.once('SIGINT', () => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  try {
    const s = await run;
    if (s.info.rank !== 0) return;
    if (json) {
      process.stdout.write(JSON.stringify(s, null, 2) + '\n');
      return;
    }
    if (opts.mode === 'test') return;
    const k = opts.topk ?? 10;
    const lines = [
      s.bestEpoch > 0
        ? `best hr@${k} ${s.bestHr.toFixed(4)} (ndcg ${s.bestNdcg.toFixed(4)}) at epoch ${s.bestEpoch}` +
          (s.firstEpochToHit ? `; target reached at epoch ${s.firstEpochToHit}` : '')
        : 'no evaluation ran (all epochs within --eval-after)',
      `average train throughput ${(s.averageTrainThroughput / 1e3).toFixed(1)}K samples/s, ${s.averageTrainSecondsPerEpoch.toFixed(2)} s/epoch` +
        (s.averageEvalThroughput > 0 ? `; eval ${(s.averageEvalThroughput / 1e6).toFixed(2)}M samples/s` : ''),
    ];
    if (s.checkpointPath) lines.push(`model saved to ${s.checkpointPath}`);
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    process.removeListener('SIGINT', onSignal);
  }
}

export function registerTrain(program: Command): void {
  const cmd = program
    .command('train')
    .description('train NeuMF (NVIDIA NCF recipe); evaluates HR@K and NDCG after --eval-after epochs')
    .option('-e, --epochs <n>', 'epochs', intArg(1), 30)
    .option('-b, --batch-size <n>', 'global batch size (split across ranks)', intArg(1, 2 ** 31 - 1), 1048576)
    .option('-f, --factors <n>', 'predictive factors of the GMF branch', intArg(1, 4096), 64)
    .option('--layers <sizes...>', 'MLP sizes, the first being the MLP input (default: 256 256 128 64)', intListArg)
    .option('-n, --negative-samples <n>', 'negatives per positive', intArg(1, 1000), 4)
    .option('-l, --learning-rate <lr>', 'Adam learning rate', floatArg(0), 0.0045)
    .option('-s, --seed <n>', 'random seed (default: random, printed)', intArg(0))
    .option('-t, --target <hr>', 'stop once HR@K reaches this', floatArg(0, 1), 0.9562)
    .option('--amp', 'mixed precision: fp16 Tensor Cores, fp32 master weights, loss scaling (CUDA)')
    .option('--beta1 <b>', 'Adam beta1', floatArg(0, 0.999999), 0.25)
    .option('--beta2 <b>', 'Adam beta2', floatArg(0, 0.999999), 0.5)
    .option('--eps <e>', 'Adam epsilon', floatArg(0), 1e-8)
    .option('--dropout <p>', 'dropout after each hidden ReLU', floatArg(0, 0.999), 0.5)
    .option('--loss-scale <s>', 'static loss scale for --amp (default: dynamic)', floatArg(1))
    .option('--checkpoint-dir <dir>', 'where the best model and the resume state go', 'checkpoints')
    .option('--load-checkpoint-path <file>', 'initialise from this checkpoint')
    .addOption(new Option('--mode <mode>', 'train, or test: evaluate once').choices(['train', 'test']).default('train'))
    .option('--no-neg-trick', 'verify that training negatives are items the user has not interacted with')
    .option('--eval-after <n>', 'evaluate after every epoch numbered above this', intArg(0), 8)
    .option('--resume', 'continue from the state saved in --checkpoint-dir')
    .option('--xla', 'capture each training step as one CUDA Graph (CUDA, one process; not yet measured, so off by default)')
    .option('--autotune', 'time the hidden layers\' tile kernels against the op chain on the first steps and keep the fastest (CUDA)')
    .option('--distributed', 'use MPI / NCCL even in one process (to check that path)')
    .option('--json', 'print the summary as JSON');
  addModelOptions(cmd).action(
    action(async (o: Record<string, unknown>) => {
      await runAndReport(trainOptionsFrom(o), o.progress !== false, !!o.json);
    }),
  );
}

export function registerTest(program: Command): void {
  const cmd = program
    .command('test')
    .description('evaluate a checkpoint: HR@K and NDCG on its dataset (same as train --mode test)')
    .requiredOption('--checkpoint <file>', 'model checkpoint (.safetensors)')
    .option('--json', 'print the result as JSON');
  addModelOptions(cmd).action(
    action(async (o: Record<string, unknown>) => {
      await runAndReport({ ...trainOptionsFrom(o), mode: 'test', loadCheckpointPath: o.checkpoint as string, logPath: undefined }, false, !!o.json);
    }),
  );
}
