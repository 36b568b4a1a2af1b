/** The training options with the reference's defaults, validated. */
import type { BackendChoice } from '../backend';
import type { Dataset } from '../data/dataset';
import { InvalidArgumentError } from '../errors';
import * as is from '../validate';
import type { TrainOptions } from './types';

export interface ResolvedTrainOptions {
  data?: string | Dataset;
  epochs: number;
  batchSize: number;
  validUsersPerBatch: number;
  factors: number;
  layers: number[];
  negativeSamples: number;
  learningRate: number;
  topk: number;
  seed?: number;
  target: number;
  amp: boolean;
  validNegative: number;
  beta1: number;
  beta2: number;
  eps: number;
  dropout: number;
  lossScale: number;
  checkpointDir?: string;
  loadCheckpointPath?: string;
  mode: 'train' | 'test';
  negTrick: boolean;
  evalAfter: number;
  logPath?: string;
  verbose: boolean;
  backend: BackendChoice;
  device?: number;
  resume: boolean;
  threads: number;
  tf32: boolean;
  cudaGraphs: boolean;
  autotune: boolean;
  distributed: boolean;
  prepare: NonNullable<TrainOptions['prepare']>;
}

export const TRAIN_DEFAULTS = {
  epochs: 30,
  batchSize: 1048576,
  validUsersPerBatch: 5000,
  factors: 64,
  layers: [256, 256, 128, 64],
  negativeSamples: 4,
  learningRate: 0.0045,
  topk: 10,
  target: 0.9562,
  validNegative: 100,
  beta1: 0.25,
  beta2: 0.5,
  eps: 1e-8,
  dropout: 0.5,
  evalAfter: 8,
} as const;

const KNOWN: (keyof TrainOptions)[] = [
  'data', 'epochs', 'batchSize', 'validUsersPerBatch', 'factors', 'layers', 'negativeSamples', 'learningRate', 'topk',
  'seed', 'target', 'amp', 'validNegative', 'beta1', 'beta2', 'eps', 'dropout', 'lossScale', 'checkpointDir',
  'loadCheckpointPath', 'mode', 'negTrick', 'evalAfter', 'logPath', 'verbose', 'backend', 'device', 'resume', 'threads',
  'tf32', 'cudaGraphs', 'autotune', 'distributed', 'prepare',
];

export function resolveTrainOptions(o: TrainOptions): ResolvedTrainOptions {
  is.knownKeys('train', o, KNOWN);
  const d = TRAIN_DEFAULTS;
  const layers = is.integerList('layers', o.layers ?? [...d.layers], 1);
  if (layers.length < 2) throw new InvalidArgumentError("option 'layers' needs at least two sizes", 'layers');
  if (layers[0] % 2 !== 0)
    throw new InvalidArgumentError(`option 'layers': the first size (the MLP input) must be even, got ${layers[0]}`, 'layers');
  return {
    data: o.data,
    epochs: is.integer('epochs', o.epochs ?? d.epochs, 1, 100000),
    batchSize: is.integer('batchSize', o.batchSize ?? d.batchSize, 1, 2 ** 31 - 1),
    validUsersPerBatch: is.integer('validUsersPerBatch', o.validUsersPerBatch ?? d.validUsersPerBatch, 1, 1e7),
    factors: is.integer('factors', o.factors ?? d.factors, 1, 4096),
    layers,
    negativeSamples: is.integer('negativeSamples', o.negativeSamples ?? d.negativeSamples, 1, 1000),
    learningRate: is.number('learningRate', o.learningRate ?? d.learningRate, 0),
    topk: is.integer('topk', o.topk ?? d.topk, 1, 100000),
    seed: o.seed === undefined ? undefined : is.integer('seed', o.seed, 0, Number.MAX_SAFE_INTEGER),
    target: is.number('target', o.target ?? d.target, 0),
    amp: !!o.amp,
    validNegative: is.integer('validNegative', o.validNegative ?? d.validNegative, 1, 10000),
    beta1: is.number('beta1', o.beta1 ?? d.beta1, 0, 1, false),
    beta2: is.number('beta2', o.beta2 ?? d.beta2, 0, 1, false),
    eps: is.number('eps', o.eps ?? d.eps, 0),
    dropout: is.number('dropout', o.dropout ?? d.dropout, 0, 1, false),
    lossScale: o.lossScale === undefined ? 0 : is.number('lossScale', o.lossScale, 1),
    checkpointDir: o.checkpointDir,
    loadCheckpointPath: o.loadCheckpointPath,
    mode: is.oneOf('mode', o.mode ?? 'train', ['train', 'test'] as const),
    negTrick: o.negTrick ?? true,
    evalAfter: is.integer('evalAfter', o.evalAfter ?? d.evalAfter, 0),
    logPath: o.logPath,
    verbose: !!o.verbose,
    backend: is.oneOf('backend', o.backend ?? 'auto', ['cpu', 'cuda', 'auto'] as const),
    device: o.device === undefined ? undefined : is.integer('device', o.device, 0, 1024),
    resume: !!o.resume,
    threads: o.threads === undefined ? 0 : is.integer('threads', o.threads, 1, 1024),
    tf32: o.tf32 ?? true,
    cudaGraphs: !!o.cudaGraphs,
    autotune: !!o.autotune,
    distributed: !!o.distributed,
    prepare: o.prepare ?? {},
  };
}
