/**
 * Loads the native addon and describes its interface. The addon is built by the package's own
 * install (cmake-js); when it is missing or fails to load, the error says which file was looked
 * for, why it failed and how to rebuild. The CUDA backend and MPI are plugins the addon loads on
 * demand, so their absence is reported by cudaStatus()/buildInfo(), not as a load failure.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import bindings from 'bindings';

import { BackendError } from './errors';

export interface BuildInfo {
  version: string;
  blas: string;
  compiler: string;
  pluginDir: string;
  cudaBuilt: boolean;
  mpiBuilt: boolean;
}

export interface CudaDeviceInfo {
  name: string;
  memory: number;
  capability: string;
}

export interface CudaStatus {
  built: boolean;
  loaded: boolean;
  nccl: boolean;
  build: string;
  available: boolean;
  error?: string;
  devices: CudaDeviceInfo[];
}

export interface PreparedArrays {
  nUsers: number;
  nItems: number;
  rows: number;
  droppedUsers: number;
  droppedRows: number;
  duplicates: number;
  offsets: Uint32Array;
  items: Uint32Array;
  testItems: Uint32Array;
  testNegatives: Uint32Array;
  userIds: Float64Array;
  itemIds: Float64Array;
}

export interface NativeModelConfig {
  nUsers: number;
  nItems: number;
  factors: number;
  layers: number[];
  dropout: number;
}

export interface NativeTrainOptions {
  batchSize: number;
  negatives: number;
  verifyNegatives: boolean;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  seed: number;
  amp: boolean;
  lossScale: number;
  tf32: boolean;
  validUsersPerBatch: number;
  topk: number;
  validNegatives: number;
  /** Each step after the first of its shape as one CUDA Graph (CUDA backend, one process). */
  stepGraphs?: boolean;
  /** Kernel forms timed on the first steps and evaluation batches, the fastest kept (CUDA). */
  autotune?: boolean;
}

export interface NativeDataArrays {
  offsets: Uint32Array;
  items: Uint32Array;
  testItems: Uint32Array;
  testNegatives: Uint32Array;
  storedNegatives: number;
}

export interface TensorLayout {
  name: string;
  shape: number[];
  offset: number;
  count: number;
}

export interface NativeEpochStats {
  samples: number;
  steps: number;
  loss: number;
  seconds: number;
  lossScale: number;
  cancelled: boolean;
}

export interface NativeEvalStats {
  hr: number;
  ndcg: number;
  users: number;
  seconds: number;
}

export interface TrainerInfo {
  backend: string;
  device: string;
  threads: number;
  blas: string;
  tf32: boolean;
  rank: number;
  worldSize: number;
  communicator: string;
  seed: number;
  stepsPerEpoch: number;
  samplesPerEpoch: number;
  fingerprint: string;
  /**
   * Which kernels steps and evaluations run: "fused training, fused evaluation", "op chain training
   * (first layer by parts), op chain evaluation", ...
   */
  kernels: string;
  /**
   * With kernel forms being tuned, once chosen: a line per kind of run ("training steps of N rows:
   * hidden_forward (2.101 ms; the op chain 2.300 ms; ...)"); '' before or without.
   */
  autotune: string;
  /** High-water mark of the backend's own allocations, bytes. */
  peakMemory: number;
  /** Bytes in use on the whole GPU at the highest point seen (context and libraries included; 0 on the CPU). */
  devicePeakMemory: number;
  /** The GPU's memory in bytes (0 on the CPU). */
  deviceMemory: number;
}

export interface NativeTrainer {
  runEpoch(epoch: number, onProgress?: (done: number, total: number) => void): Promise<NativeEpochStats>;
  evaluate(): Promise<NativeEvalStats>;
  getParams(): Promise<Float32Array>;
  setParams(p: Float32Array): Promise<void>;
  getOptimizerState(): Promise<{ m: Float32Array; v: Float32Array; step: number }>;
  setOptimizerState(s: { m: Float32Array; v: Float32Array; step: number }): Promise<void>;
  cancel(): void;
  close(): void;
  readonly info: TrainerInfo;
  readonly layout: TensorLayout[];
}

export interface NativeModelInfo {
  backend: string;
  device: string;
  threads: number;
  blas: string;
  maxBatch: number;
  hasSeen: boolean;
  peakMemory: number;
  devicePeakMemory: number;
}

export interface NativeRanked {
  items: Uint32Array;
  scores: Float32Array;
}

export interface NativeRecommendOptions {
  k: number;
  excludeSeen: boolean;
  candidates?: Uint32Array;
}

export interface NativeModel {
  score(users: Uint32Array, items: Uint32Array): Promise<Float32Array>;
  scoreSync(users: Uint32Array, items: Uint32Array): Float32Array;
  recommend(users: Uint32Array, opts: NativeRecommendOptions): Promise<NativeRanked>;
  recommendSync(users: Uint32Array, opts: NativeRecommendOptions): NativeRanked;
  setSeen(offsets: Uint32Array, items: Uint32Array): void;
  benchResident(users: Uint32Array, items: Uint32Array, iterations: number): Promise<Float64Array>;
  close(): void;
  readonly info: NativeModelInfo;
}

export interface DropoutArgs {
  dropout?: number;
  seed?: number;
  layer?: number;
  epoch?: number;
  pos0?: number;
}

/** Single ops on host arrays (tests and the self-test). */
export interface NativeOpRunner {
  readonly info: { backend: string; device: string; half: boolean; tf32: boolean };
  philox(a: { keyLo: number; keyHi: number; counters: Uint32Array }): Uint32Array;
  sampleBatch(a: {
    offsets: Uint32Array; items: Uint32Array; nItems: number; negatives: number; verify: boolean;
    seed: number; epoch: number; pos0: number; n: number;
  }): { users: Uint32Array; items: Uint32Array; labels: Float32Array; positions: Uint32Array; samplesPerEpoch: number };
  /** The MLP input [mlpUser[u] ; mlpItem[v]] of each pair; halfTables: with fp16 table copies beside the tables. */
  embedForward(a: EmbedArgs & { halfTables?: boolean }): Float32Array;
  /** The MLP tables' gradients from the MLP input's. */
  embedBackward(a: EmbedArgs & { dMlpIn: Float32Array }): { mlpUser: Float32Array; mlpItem: Float32Array };
  linearForward(a: LinearArgs & { x: Float32Array }): Float32Array;
  /**
   * relu_dropout_backward of dy, then linear_backward. With `below`, dx is taken back through the
   * layer below's ReLU and dropout (its live units from `mask`, a UnitMask's bytes, when given,
   * else from y > 0), and its bias gradient is returned as gradBBelow.
   */
  linearBackward(a: LinearArgs & {
    x: Float32Array; y: Float32Array; dy: Float32Array; wantDx?: boolean;
    below?: DropoutArgs & { y: Float32Array; mask?: Uint8Array };
  }): { dz: Float32Array; dx?: Float32Array; gradW: Float32Array; gradB: Float32Array; gradBBelow?: Float32Array };
  /**
   * Hidden layers 1 .. L - 1 (`layers`, each with its dropout, its live units kept where mask is
   * true) from x, layer 0's output, as Network runs them: Backend::hidden_forward for the leading
   * layers it takes (fusedLayers; none with fused: false or on the CPU), linear_forward for the
   * rest. Every layer's output (the first as given) and masks (null where not kept). With parts
   * instead of x (the first layer's two parts, each row's index in them, the first layer's dropout
   * and whether its live units are kept), layer 0's output from them: inside hidden_forward where
   * the backend takes them (partsFused; without training it then writes only the last of the
   * fusedLayers: the ones before come back as zeros), else by gatherAddRelu first.
   */
  hiddenForward(a: {
    layers: (DropoutArgs & { w: Float32Array; b: Float32Array; in: number; out: number; mask?: boolean })[];
    fp16?: boolean; fused?: boolean;
  } & ({ x: Float32Array } | {
    parts: DropoutArgs & { a: Float32Array; ia: Uint32Array; b: Float32Array; ib: Uint32Array; mask?: boolean; training?: boolean };
  })): {
    act: Float32Array[]; masks: (Uint8Array | null)[]; fusedLayers: number; partsFused: boolean;
  };
  /**
   * Backend::hidden_backward: from dz, the gradient at the last hidden layer's output, down through
   * `layers` (hidden layers 1 .. L - 1) and `below` (layers 0 .. L - 2, as linearBackward's below):
   * dz[l] for every layer (the last as given) and each layer below's bias gradient. fused: false, or
   * a backend without the fused op (the CPU), runs the chain of linear_backward calls it replaces.
   * With users (one per row, ascending, below nUsers): dz[0]'s per-user sums [nUsers x width], taken
   * by the op where it did (userSumsFused), else by pairRowSums after it.
   */
  hiddenBackward(a: {
    dz: Float32Array; layers: { w: Float32Array; b: Float32Array; in: number; out: number }[];
    below: (DropoutArgs & { y: Float32Array; mask?: Uint8Array })[]; fp16?: boolean; fused?: boolean;
    users?: Uint32Array; nUsers?: number;
  }): { dz: Float32Array[]; gradB: Float32Array[]; fused: boolean; userSums?: Float32Array; userSumsFused?: boolean };
  /** The live-unit mask linear_forward writes: rows of ld / 8 bytes, ld = out rounded up to 128. */
  liveUnits(a: LinearArgs & { x: Float32Array }): Uint8Array;
  headForward(a: HeadArgs): Float32Array;
  /** With `below` (the last hidden layer's dropout), dMlp is taken through its ReLU and dropout. */
  headForwardBackward(a: HeadArgs & { labels: Float32Array; gradScale: number; lossScale?: number; below?: DropoutArgs }): {
    dMlp: Float32Array; gradW: Float32Array; gradB: Float32Array; gradMfUser: Float32Array; gradMfItem: Float32Array;
    lossSum: number; gradBBelow?: Float32Array;
  };
  /**
   * mirror: [begin, end), parameters whose fp16 copies the step keeps (returned as half);
   * lossScale: grads are scaled by it, and unscaled as the step reads them.
   */
  adamStep(a: {
    params: Float32Array; grads: Float32Array; m: Float32Array; v: Float32Array;
    lr: number; beta1: number; beta2: number; eps: number; step: number; mirror?: Uint32Array; lossScale?: number;
  }): { params: Float32Array; m: Float32Array; v: Float32Array; half?: Float32Array };
  /** Whether any gradient / scale is not finite; grads come back as the op left them (unchanged). */
  overflowCheck(a: { grads: Float32Array; scale: number }): { grads: Float32Array; foundInf: boolean };
  updateLossScale(a: { scale: number; foundInf: boolean; goodSteps: number; dynamic: boolean; growthInterval: number }): {
    scale: number; goodSteps: number;
  };
  halfRoundTrip(x: Float32Array): Float32Array;
  evalRank(a: { logits: Float32Array; masked: Uint8Array; nUsers: number; listLen: number; k: number }): {
    hits: number; dcg: number; users: number;
  };
  matmulNt(a: { a: Float32Array; rows: number; cols: number; w: Float32Array; ldw: number; outCols: number }): Float32Array;
  addRow(a: { x: Float32Array; rows: number; cols: number; row: Float32Array; relu: boolean }): Float32Array;
  /**
   * relu(a[ia[r]] + b[ib[r]]) per row, then the dropout; mask: the output's live units (a
   * UnitMask's bytes). halfTables: the tables converted to fp16 on the device first (CUDA).
   */
  gatherAddRelu(a: DropoutArgs & {
    a: Float32Array; ia: Uint32Array; b: Float32Array; ib: Uint32Array; cols: number; fp16?: boolean; halfTables?: boolean;
  }): { y: Float32Array; mask: Uint8Array };
  /**
   * The rows of dz summed per user and per item (the first layer's backward by parts); users in
   * ascending order take the path for sorted batches. halfUserSums: fp16 per-user sums (CUDA).
   */
  pairRowSums(a: {
    dz: Float32Array; users: Uint32Array; items: Uint32Array; nUsers: number; nItems: number; cols: number; fp16?: boolean;
    halfUserSums?: boolean;
    /** The layer whose output gradient dz is: the rows summed are taken through its ReLU and dropout. */
    layer?: DropoutArgs & { y: Float32Array; mask?: Uint8Array };
  }): { userSums: Float32Array; itemSums: Float32Array; gradB?: Float32Array };
  /** a [rows x cols] times the first outCols columns of w [cols x ldw]. */
  matmulNn(a: { a: Float32Array; rows: number; cols: number; w: Float32Array; ldw: number; outCols: number }): Float32Array;
  splitForward(a: {
    nUsers: number; nItems: number; factors: number; layers: number[]; params: Float32Array;
    /** halfParts: the op chain from fp16 copies of the first layer's parts (with fp16). */
    users: Uint32Array; items: Uint32Array; fp16?: boolean; fused?: boolean; halfParts?: boolean;
  }): { logits: Float32Array; fused: boolean };
  trainPass(a: {
    nUsers: number; nItems: number; factors: number; layers: number[]; dropout: number; params: Float32Array;
    users: Uint32Array; items: Uint32Array; labels: Float32Array; seed: number; epoch: number; pos0: number;
    gradScale: number; lossScale?: number; fp16?: boolean; fused?: boolean;
    /** The first layer per row (the default) or by parts (Network's FirstLayer). */
    firstLayer?: 'rows' | 'parts';
  }): { grads: Float32Array; loss: number; fused: boolean };
}

export interface EmbedArgs {
  mlpUser: Float32Array; mlpItem: Float32Array; half: number; users: Uint32Array; items: Uint32Array; fp16?: boolean;
}
export interface LinearArgs extends DropoutArgs {
  w: Float32Array; b: Float32Array; in: number; out: number; fp16?: boolean;
}
/** The output unit's inputs: the GMF tables and pairs (their product is formed in the op). */
export interface HeadArgs {
  mfUser: Float32Array; mfItem: Float32Array; users: Uint32Array; items: Uint32Array;
  mlp: Float32Array; w: Float32Array; b: Float32Array; factors: number; fp16?: boolean;
}

export interface NativeAddon {
  buildInfo(): BuildInfo;
  cudaStatus(): CudaStatus;
  initDistributed(): { rank: number; size: number; library: string };
  abortDistributed(code: number): void;
  barrier(): void;
  prepareFile(o: {
    path: string; delimiter: string; skipLines: number; userCol: number; itemCol: number; timeCol: number;
    minRatings: number; testNegatives: number; seed: number; threads?: number;
  }): Promise<PreparedArrays>;
  prepareSynthetic(o: { shape: string; seed: number; minRatings: number; testNegatives: number; threads?: number }): Promise<PreparedArrays>;
  writeSyntheticCsv(o: { shape: string; seed: number; path: string }): Promise<{ rows: number; bytes: number }>;
  paramLayout(c: NativeModelConfig): TensorLayout[];
  syntheticShapes(): { name: string; users: number; items: number; interactions: number }[];
  createTrainer(o: {
    backend: string; device: number; threads: number; distributed: boolean;
    model: NativeModelConfig; train: NativeTrainOptions; data: NativeDataArrays;
  }): Promise<NativeTrainer>;
  createModel(o: {
    backend: string; device: number; threads: number; model: NativeModelConfig; params: Float32Array;
    half: boolean; tf32: boolean; maxBatch: number; userPartsMemory?: number;
  }): Promise<NativeModel>;
  /**
   * maxBlocks: the most blocks of the CUDA kernels whose threads, warps or blocks loop over their
   * work with the grid's stride (0: no cap; unset: NCF_CUDA_MAX_BLOCKS).
   */
  OpRunner: new (o: { backend: string; device?: number; threads?: number; tf32?: boolean; fused?: boolean; maxBlocks?: number }) => NativeOpRunner;
}

let cached: NativeAddon | undefined;

/** The package root (the folder holding package.json), from dist/lib or lib. */
export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'CMakeLists.txt'))) return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..', '..');
}

/** The native addon; throws a BackendError explaining how to build it when it cannot load. */
export function addon(): NativeAddon {
  if (cached) return cached;
  const root = packageRoot();
  try {
    const explicit = process.env.NCF_NATIVE_ADDON;
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    cached = (explicit ? require(path.resolve(explicit)) : bindings({ bindings: 'ncf_native', module_root: root })) as NativeAddon;
    return cached;
  } catch (err) {
    throw new BackendError(
      'ERR_UNAVAILABLE',
      `the ncf-native addon could not be loaded: ${(err as Error).message}\n` +
        `Build it with \`npm rebuild ncf-native\` (or \`npm run build:native\` in ${root}); ` +
        'it needs cmake and a C++17 compiler, and OpenBLAS (libopenblas-dev) for full CPU speed.',
      { cause: err },
    );
  }
}
