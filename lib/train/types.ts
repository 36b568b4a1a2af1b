/** Public types of training: its options, what each epoch reports and the final summary. */
import type { BackendChoice } from '../backend';
import type { Dataset } from '../data/dataset';
import type { PrepareOptions } from '../data/prepare';

export interface TrainOptions {
  /**
   * A prepared dataset folder (or Dataset), "ml-20m" / "ml-1m" (downloaded and prepared on first
   * use), "synthetic" or "synthetic:SHAPE", or an interactions file. Default "ml-20m".
   */
  data?: string | Dataset;
  /** Epochs (default 30). */
  epochs?: number;
  /** Global batch size, split across ranks (default 1048576). */
  batchSize?: number;
  /** Users per evaluation batch (default 5000). */
  validUsersPerBatch?: number;
  /** Predictive factors of the GMF branch (default 64). */
  factors?: number;
  /** MLP sizes; the first is the MLP input, [user ; item] embeddings (default 256 256 128 64). */
  layers?: number[];
  /** Negatives per positive each epoch (default 4). */
  negativeSamples?: number;
  learningRate?: number; // 0.0045
  /** K of HR@K and NDCG@K (default 10). */
  topk?: number;
  /** Random seed (default: drawn at random and reported). */
  seed?: number;
  /** Stop once HR@K reaches this (default 0.9562). */
  target?: number;
  /** Mixed precision: fp16 Tensor Cores with fp32 master weights (CUDA; the CPU trains in fp32). */
  amp?: boolean;
  /** Test negatives per user used in evaluation (default 100). */
  validNegative?: number;
  beta1?: number; // 0.25
  beta2?: number; // 0.5
  eps?: number; // 1e-8
  /** Dropout after each hidden ReLU (default 0.5). */
  dropout?: number;
  /** A static loss scale for --amp (default: dynamic loss scaling). */
  lossScale?: number;
  /** Where the best model (model.safetensors) and the resume state go; none by default. */
  checkpointDir?: string;
  /** Initialise from this model checkpoint. */
  loadCheckpointPath?: string;
  /** "test" evaluates (the loaded checkpoint) once instead of training. */
  mode?: 'train' | 'test';
  /** Draw negatives without checking the user's items (the reference's shortcut, default true). */
  negTrick?: boolean;
  /** Evaluate after every epoch whose number is greater than this (default 8). */
  evalAfter?: number;
  /** Append DLLogger-style JSON lines here. */
  logPath?: string;
  verbose?: boolean;
  backend?: BackendChoice;
  /** GPU index (default: the local rank). */
  device?: number;
  /** Continue from checkpointDir/last.safetensors and its optimizer state. */
  resume?: boolean;
  /** CPU threads (default: all the process may use). */
  threads?: number;
  /** TF32 Tensor Cores for fp32 GEMMs on the GPU (default true). */
  tf32?: boolean;
  /**
   * Capture each training step as one CUDA Graph and launch it as one (the reference's `--xla`;
   * default false). CUDA backend in a single process; elsewhere steps run op by op, and the run's
   * `kernels` says which.
   */
  cudaGraphs?: boolean;
  /**
   * Time the backend's alternative kernels (today the hidden layers' tile kernels against the op
   * chain) on the first training steps and evaluation batches, and keep the fastest for the rest
   * of the run (default false; also NCF_CUDA_AUTOTUNE=1). CUDA backend; across ranks the ranks'
   * times are pooled at each epoch's end and every rank takes the same forms. The choice goes to
   * stderr and to the summary's `autotune`.
   */
  autotune?: boolean;
  /**
   * Use the communicator (MPI, or NCCL on GPUs) even in a single process, to check that path
   * against the plain one. Multi-process launches always use it.
   */
  distributed?: boolean;
  /** Options for preparing `data` when it is not prepared yet. */
  prepare?: Omit<PrepareOptions, 'onProgress' | 'signal'>;
}

export interface RunInfo {
  backend: string;
  device: string;
  threads: number;
  blas: string;
  /** Which kernels steps and evaluations run (fused or the chains of ops). */
  kernels: string;
  rank: number;
  worldSize: number;
  communicator: string;
  seed: number;
  dataset: string;
  dataDir: string;
  users: number;
  items: number;
  trainPositives: number;
  samplesPerEpoch: number;
  stepsPerEpoch: number;
  parameters: number;
  amp: boolean;
  startEpoch: number;
  /** The kernel switches in the environment (NCF_CUDA_*, NCF_FIRST_LAYER), by name. */
  switches: Record<string, string>;
}

export interface EpochReport {
  /** 1-based epoch number. */
  epoch: number;
  epochs: number;
  loss: number;
  trainSeconds: number;
  samplesPerSecond: number;
  evaluated: boolean;
  hr?: number;
  ndcg?: number;
  evalSeconds?: number;
  /** True when this epoch's HR@K is the best so far. */
  best: boolean;
  lossScale: number;
}

export interface TrainSummary {
  epochs: EpochReport[];
  bestHr: number;
  bestNdcg: number;
  /** 1-based epoch of the best HR@K (0 if never evaluated). */
  bestEpoch: number;
  /** 1-based epoch that first reached the target, if any. */
  firstEpochToHit?: number;
  averageTrainSecondsPerEpoch: number;
  averageTrainThroughput: number;
  averageEvalSecondsPerEpoch: number;
  averageEvalThroughput: number;
  /** Where the best model was written, if a checkpoint folder was given. */
  checkpointPath?: string;
  peakMemory: number;
  cancelled: boolean;
  info: RunInfo;
  /**
   * With `autotune`, the kernel forms chosen, a line per kind of run with every form's median
   * time ("training steps of 1048576 rows: hidden_forward (...)"); absent when nothing was decided.
   */
  autotune?: string[];
}
