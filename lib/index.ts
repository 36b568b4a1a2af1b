/**
 * ncf-native: Neural Collaborative Filtering (NeuMF) training and serving for Node.js.
 *
 *   import { prepare, train, NeuMF } from 'ncf-native';
 *   const { dir } = await prepare('ml-1m');
 *   const summary = await train({ data: dir, epochs: 20, batchSize: 65536, checkpointDir: 'ckpt' });
 *   const model = await NeuMF.load('ckpt/model.safetensors');
 *   const top = await model.recommend(42, { k: 10, excludeSeen: true });
 */
import { addon, type BuildInfo, type CudaStatus } from './native';

export { prepare, syntheticShapeOf, type PrepareEvent, type PrepareOptions, type PrepareResult } from './data/prepare';
export { Dataset } from './data/dataset';
export type { DatasetMeta, SourceDescription } from './data/cache';
export type { ColumnOptions, ColumnSpec } from './data/delimited';
export { download, type DownloadOptions, type DownloadProgress } from './data/download';
export { train, formatEpoch } from './train/train';
export { TrainingRun } from './train/run';
export { TRAIN_DEFAULTS } from './train/options';
export type { EpochReport, RunInfo, TrainOptions, TrainSummary } from './train/types';
export { NeuMF, type LoadOptions, type Precision, type Recommendation, type RecommendOptions } from './model/neumf';
export { loadModel, saveModel, type CheckpointInfo, type ModelConfig } from './model/checkpoint';
export { detectRanks, type RankInfo } from './dist/ranks';
export type { BackendChoice, BackendName } from './backend';
export type { BuildInfo, CudaStatus, CudaDeviceInfo } from './native';
export * from './errors';

/** What the native addon was built with (BLAS, CUDA and MPI plugins). */
export function buildInfo(): BuildInfo {
  return addon().buildInfo();
}

/** Whether the CUDA backend is usable here, and if not, why. */
export function cudaStatus(): CudaStatus {
  return addon().cudaStatus();
}
