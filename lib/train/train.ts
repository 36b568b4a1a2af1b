/**
 * The training loop: resolves the data and backend, builds the native trainer, runs epochs
 * (each natively, off the JavaScript thread), evaluates HR@K / NDCG after --eval-after epochs,
 * stops early at the target, writes checkpoints and the DLLogger log on rank 0, and reports
 * through the TrainingRun it returns.
 */
import { randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { type BackendName, resolveBackend } from '../backend';
import type { Dataset } from '../data/dataset';
import { detectRanks, type RankInfo } from '../dist/ranks';
import { BackendError, CheckpointError, InvalidArgumentError, fromNative } from '../errors';
import {
  type CheckpointInfo, type LoadedCheckpoint, type ModelConfig, loadModel, loadOptimizer, optimizerPath, saveModel,
  saveOptimizer,
} from '../model/checkpoint';
import { addon, type NativeTrainer } from '../native';
import { humanCount } from '../util/progress';
import { formatSwitches, kernelSwitches } from '../util/switches';
import { loadTrainingData } from './data-source';
import { DLLogger } from './dllogger';
import { type ResolvedTrainOptions, resolveTrainOptions } from './options';
import { TrainingRun } from './run';
import type { EpochReport, RunInfo, TrainOptions, TrainSummary } from './types';

/** Starts training; see TrainingRun for the ways to follow it. */
export function train(options: TrainOptions = {}): TrainingRun {
  return new TrainingRun((run, signal) => runTraining(options, run, signal));
}

/** A string identifying a dataset's shape, stored in checkpoints to catch mismatched data. */
export function dataSignature(d: Dataset): string {
  const c = d.meta.counts;
  return `${c.users}x${c.items}:${c.trainPositives}:${d.meta.options.testNegatives}:${d.meta.options.seed}`;
}

export function checkBatch(o: ResolvedTrainOptions, d: Dataset): void {
  const perEpoch = d.nTrain * (1 + o.negativeSamples);
  if (o.mode === 'train' && o.batchSize >= perEpoch) {
    let suggest = 256;
    while (suggest * 2 <= perEpoch / 100) suggest *= 2;
    throw new InvalidArgumentError(
      `batch size ${o.batchSize} is not smaller than one epoch of ${d.meta.name} (${perEpoch} samples: ` +
        `${d.nTrain} positives x ${1 + o.negativeSamples}), so every epoch would be a single step; ` +
        `use a smaller batch for this dataset, e.g. -b ${suggest}`,
      'batchSize',
    );
  }
}

function checkpointMatches(ck: LoadedCheckpoint, d: Dataset): void {
  if (ck.config.nUsers !== d.nUsers || ck.config.nItems !== d.nItems)
    throw new CheckpointError(
      ck.file,
      `was trained on ${ck.config.nUsers} users and ${ck.config.nItems} items, but ${d.meta.name} has ${d.nUsers} users and ${d.nItems} items`,
    );
}

/** Builds the native trainer for resolved options (also used by the benchmarks). */
export async function buildTrainer(
  o: ResolvedTrainOptions,
  dataset: Dataset,
  config: ModelConfig,
  backend: BackendName,
  ranks: RankInfo,
  seed: number,
): Promise<NativeTrainer> {
  try {
    return await addon().createTrainer({
      backend,
      device: o.device ?? ranks.localRank,
      threads: o.threads,
      distributed: ranks.size > 1 || o.distributed,
      model: config,
      train: {
        batchSize: o.batchSize, negatives: o.negativeSamples, verifyNegatives: !o.negTrick, lr: o.learningRate,
        beta1: o.beta1, beta2: o.beta2, eps: o.eps, seed, amp: o.amp && backend === 'cuda', lossScale: o.lossScale,
        tf32: o.tf32, validUsersPerBatch: o.validUsersPerBatch, topk: o.topk, validNegatives: o.validNegative,
        stepGraphs: o.cudaGraphs, autotune: o.autotune,
      },
      data: dataset.nativeArrays(),
    });
  } catch (err) {
    throw fromNative(err);
  }
}

async function runTraining(input: TrainOptions, run: TrainingRun, signal: AbortSignal): Promise<TrainSummary> {
  const o = resolveTrainOptions(input);
  const ranks: RankInfo = detectRanks();
  const root = ranks.rank === 0;
  const log = (msg: string) => {
    if (root) run.emit('log', msg);
  };
  const native = addon();
  if (ranks.size > 1 || o.distributed) {
    const world = native.initDistributed();
    if (world.size !== ranks.size || world.rank !== ranks.rank)
      throw new BackendError(
        'ERR_DISTRIBUTED',
        `the launcher says rank ${ranks.rank} of ${ranks.size} (${ranks.launcher}) but MPI says rank ${world.rank} of ${world.size}: ` +
          'launch with the mpirun of the MPI ncf-native was built with',
      );
  }
  const backend = resolveBackend(o.backend);
  if (backend.note) log(backend.note);
  if (o.amp && backend.name === 'cpu') log('--amp: the CPU backend trains in fp32 (mixed precision needs the CUDA backend)');
  if (o.resume && !o.checkpointDir) throw new InvalidArgumentError('--resume needs --checkpoint-dir (where the run saved its state)', 'resume');

  // The checkpoint to start from: the saved state (--resume) or --load-checkpoint-path.
  const lastPath = o.checkpointDir ? path.join(o.checkpointDir, 'last.safetensors') : undefined;
  let init: LoadedCheckpoint | undefined;
  if (o.resume && lastPath && fs.existsSync(lastPath)) init = loadModel(lastPath);
  else if (o.resume) log(`--resume: no saved state in ${o.checkpointDir}; starting from scratch`);
  else if (o.loadCheckpointPath) init = loadModel(o.loadCheckpointPath);

  // Without --data: the dataset the checkpoint was trained on, else ml-20m.
  const ownData = init?.dataDir && fs.existsSync(init.dataDir) ? init.dataDir : undefined;
  const dataset = await loadTrainingData(o.data ?? ownData ?? 'ml-20m', ranks, o.prepare, (e) => run.emit('prepare', e));
  checkBatch(o, dataset);
  if (o.validNegative > dataset.meta.options.testNegatives)
    throw new InvalidArgumentError(
      `--valid-negative ${o.validNegative} is more than the ${dataset.meta.options.testNegatives} test negatives ${dataset.meta.name} was prepared with`,
      'validNegative',
    );
  let config: ModelConfig = { nUsers: dataset.nUsers, nItems: dataset.nItems, factors: o.factors, layers: o.layers, dropout: o.dropout };
  if (init) {
    checkpointMatches(init, dataset);
    config = { ...init.config, dropout: o.dropout };
  }
  const seed = o.seed ?? (o.resume && init?.seed !== undefined ? init.seed : randomInt(0, 2 ** 32 - 1));

  const trainer = await buildTrainer(o, dataset, config, backend.name, ranks, seed);
  const logger = root && o.logPath ? new DLLogger(o.logPath) : undefined;
  const onAbort = () => trainer.cancel();
  signal.addEventListener('abort', onAbort);
  try {
    let startEpoch = 0;
    if (init) await trainer.setParams(init.params);
    if (o.resume && init && lastPath) {
      const state = loadOptimizer(optimizerPath(lastPath), init.params.length);
      await trainer.setOptimizerState(state);
      startEpoch = state.epoch + 1;
      log(`resuming after epoch ${startEpoch} from ${lastPath}`);
    }
    const ti = trainer.info;
    const info: RunInfo = {
      backend: ti.backend, device: ti.device, threads: ti.threads, blas: ti.blas, kernels: ti.kernels, rank: ti.rank, worldSize: ti.worldSize,
      communicator: ti.communicator, seed: ti.seed, dataset: dataset.meta.name, dataDir: dataset.dir, users: dataset.nUsers,
      items: dataset.nItems, trainPositives: dataset.nTrain, samplesPerEpoch: ti.samplesPerEpoch,
      stepsPerEpoch: ti.stepsPerEpoch, parameters: trainer.layout.reduce((a, t) => a + t.count, 0),
      amp: o.amp && ti.backend === 'cuda', startEpoch: startEpoch + 1, switches: kernelSwitches(),
    };
    run.emit('start', info);
    log(
      `${info.dataset}: ${info.users} users, ${info.items} items, ${info.trainPositives} training positives; ` +
        `${info.parameters} parameters; ${info.backend} (${info.device}${info.backend === 'cpu' ? `, ${info.threads} threads, ${info.blas}` : `; ${info.kernels}`})` +
        `${info.worldSize > 1 ? `, ${info.worldSize} ranks over ${info.communicator}` : ''}; seed ${info.seed}` +
        `${Object.keys(info.switches).length ? `; switches ${formatSwitches(info.switches)}` : ''}`,
    );
    if (o.verbose) {
      const perRank = Math.ceil(o.batchSize / info.worldSize);
      log(
        `batch ${o.batchSize} (${perRank} per rank), ${info.stepsPerEpoch} steps of ${info.samplesPerEpoch} samples per epoch; ` +
          `${o.amp && info.backend === 'cuda' ? `fp16 with ${o.lossScale ? `static loss scale ${o.lossScale}` : 'dynamic loss scaling'}` : info.backend === 'cuda' ? (o.tf32 ? 'TF32' : 'fp32') : 'fp32'}; ` +
          `negatives ${o.negTrick ? 'unverified (shortcut)' : 'verified'}; data ${dataset.dir} (fingerprint ${ti.fingerprint}); ` +
          `backend memory ${(ti.peakMemory / 2 ** 20).toFixed(0)} MiB`,
      );
    }
    if (o.cudaGraphs && o.mode === 'train' && !/CUDA Graphs/.test(info.kernels))
      log('--xla: training steps run op by op here (CUDA Graphs of the steps need the CUDA backend in a single process)');
    if (o.autotune && !/kernel forms timed/.test(info.kernels))
      log('--autotune: nothing to tune here (kernel forms are timed by the CUDA backend)');
    if (info.stepsPerEpoch < 10 && o.mode === 'train')
      log(`note: only ${info.stepsPerEpoch} steps per epoch with batch ${o.batchSize}; a smaller batch usually trains better on ${info.dataset}`);
    logger?.log('PARAMETER', { ...o, data: dataset.dir, seed: info.seed, world_size: info.worldSize, backend: info.backend });
    for (const m of ['best_epoch', 'first_epoch_to_hit', 'best_hr']) logger?.metadata(m, { unit: null });
    logger?.metadata('average_train_throughput', { unit: 'samples/s' });
    logger?.metadata('average_eval_throughput', { unit: 'samples/s' });

    const ckInfo = (extra: Partial<CheckpointInfo>): CheckpointInfo => ({
      config, seed: info.seed, dataDir: dataset.dir, dataName: dataset.meta.name, dataSignature: dataSignature(dataset),
      topk: o.topk, ...extra,
    });

    if (o.mode === 'test') {
      const ev = await trainer.evaluate();
      const throughput = (ev.users * (1 + o.validNegative)) / ev.seconds;
      log(`hr@${o.topk} ${ev.hr.toFixed(4)}  ndcg ${ev.ndcg.toFixed(4)}  eval ${ev.seconds.toFixed(3)} s  ${humanCount(throughput)} samples/s`);
      logger?.log([], { eval_throughput: throughput, eval_time: ev.seconds, [`hr@${o.topk}`]: ev.hr, ndcg: ev.ndcg });
      return {
        epochs: [], bestHr: ev.hr, bestNdcg: ev.ndcg, bestEpoch: 0, averageTrainSecondsPerEpoch: 0, averageTrainThroughput: 0,
        averageEvalSecondsPerEpoch: ev.seconds, averageEvalThroughput: throughput, peakMemory: trainer.info.peakMemory,
        cancelled: false, info, ...autotuned(trainer),
      };
    }

    const reports: EpochReport[] = [];
    let bestHr = -1, bestNdcg = 0, bestEpoch = 0;
    let firstEpochToHit: number | undefined;
    let checkpointPath: string | undefined;
    const modelPath = o.checkpointDir ? path.join(o.checkpointDir, 'model.safetensors') : undefined;
    let cancelled = false;
    for (let e = startEpoch; e < o.epochs; e++) {
      const st = await trainer.runEpoch(e, (step, steps) => run.emit('progress', { epoch: e + 1, step, steps }));
      if (st.cancelled) {
        cancelled = true;
        log(`cancelled during epoch ${e + 1}`);
        break;
      }
      const report: EpochReport = {
        epoch: e + 1, epochs: o.epochs, loss: st.loss, trainSeconds: st.seconds, samplesPerSecond: st.samples / st.seconds,
        evaluated: false, best: false, lossScale: st.lossScale,
      };
      if (e + 1 > o.evalAfter) {
        const ev = await trainer.evaluate();
        Object.assign(report, { evaluated: true, hr: ev.hr, ndcg: ev.ndcg, evalSeconds: ev.seconds });
        if (ev.hr > bestHr) {
          bestHr = ev.hr;
          bestNdcg = ev.ndcg;
          bestEpoch = e + 1;
          report.best = true;
        }
        if (ev.hr >= o.target && firstEpochToHit === undefined) firstEpochToHit = e + 1;
      }
      if (root && (lastPath || (modelPath && report.best))) {
        const params = await trainer.getParams();
        if (modelPath && report.best) {
          saveModel(modelPath, params, ckInfo({ epoch: e + 1, hr: report.hr, ndcg: report.ndcg }));
          checkpointPath = modelPath;
        }
        if (lastPath) {
          saveModel(lastPath, params, ckInfo({ epoch: e + 1 }));
          saveOptimizer(optimizerPath(lastPath), { ...(await trainer.getOptimizerState()), epoch: e });
        }
      }
      reports.push(report);
      run.emit('epoch', report);
      log(formatEpoch(report, o.topk) + (o.verbose ? `  loss scale ${report.lossScale}  peak memory ${(trainer.info.peakMemory / 2 ** 20).toFixed(0)} MiB` : ''));
      logger?.log([e], {
        train_time: report.trainSeconds, loss: report.loss, train_throughput: report.samplesPerSecond,
        ...(report.evaluated ? { eval_time: report.evalSeconds, [`hr@${o.topk}`]: report.hr, ndcg: report.ndcg } : {}),
      });
      if (signal.aborted) {
        cancelled = true;
        break;
      }
      if (report.evaluated && report.hr! >= o.target) {
        log(`reached the target HR@${o.topk} ${o.target} at epoch ${e + 1}`);
        break;
      }
    }
    if (root && modelPath && !checkpointPath && reports.length > 0) {
      // Never evaluated (all epochs within --eval-after): keep the final model.
      saveModel(modelPath, await trainer.getParams(), ckInfo({ epoch: reports[reports.length - 1].epoch }));
      checkpointPath = modelPath;
    }
    // Like the reference, the first epoch is a warm-up and is left out of the averages when possible.
    const warm = reports.length > 1 ? reports.slice(1) : reports;
    const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
    const evals = warm.filter((r) => r.evaluated);
    const evalSamples = dataset.nUsers * (1 + o.validNegative);
    const summary: TrainSummary = {
      epochs: reports,
      bestHr: Math.max(bestHr, 0),
      bestNdcg,
      bestEpoch,
      firstEpochToHit,
      averageTrainSecondsPerEpoch: mean(warm.map((r) => r.trainSeconds)),
      averageTrainThroughput: mean(warm.map((r) => r.samplesPerSecond)),
      averageEvalSecondsPerEpoch: mean(evals.map((r) => r.evalSeconds!)),
      averageEvalThroughput: mean(evals.map((r) => evalSamples / r.evalSeconds!)),
      checkpointPath,
      peakMemory: trainer.info.peakMemory,
      cancelled,
      info,
      ...autotuned(trainer),
    };
    logger?.log([], {
      average_train_time_per_epoch: summary.averageTrainSecondsPerEpoch,
      average_train_throughput: summary.averageTrainThroughput,
      average_eval_time_per_epoch: summary.averageEvalSecondsPerEpoch,
      average_eval_throughput: summary.averageEvalThroughput,
      first_epoch_to_hit: summary.firstEpochToHit ?? null,
      best_hr: summary.bestHr,
      best_epoch: summary.bestEpoch,
    });
    return summary;
  } finally {
    signal.removeEventListener('abort', onAbort);
    logger?.close();
    trainer.close();
  }
}

/** The kernel forms a tuned run chose (`autotune` in its summary), if it chose any. */
export function autotuned(trainer: NativeTrainer): { autotune?: string[] } {
  const lines = trainer.info.autotune;
  return lines ? { autotune: lines.split('\n') } : {};
}

export function formatEpoch(r: EpochReport, topk: number): string {
  const parts = [
    `epoch ${String(r.epoch).padStart(String(r.epochs).length)}/${r.epochs}`,
    `train ${r.trainSeconds.toFixed(2)} s`,
  ];
  if (r.evaluated) parts.push(`eval ${r.evalSeconds!.toFixed(2)} s`, `hr@${topk} ${r.hr!.toFixed(4)}`, `ndcg ${r.ndcg!.toFixed(4)}`);
  parts.push(`loss ${r.loss.toFixed(4)}`, `${humanCount(r.samplesPerSecond)} samples/s`);
  return parts.join('  ');
}
