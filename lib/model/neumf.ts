/**
 * NeuMF for serving: load a checkpoint onto the CPU or a GPU, score (user, item) pairs, and
 * recommend the top-K items for users. With the dataset the model was trained on (found from the
 * checkpoint or given), users and items are the dataset's original ids and seen items can be
 * excluded; without it they are dense indices.
 */
import * as fs from 'node:fs';

import { type BackendChoice, resolveBackend } from '../backend';
import { Dataset } from '../data/dataset';
import { InvalidArgumentError, fromNative } from '../errors';
import { addon, type NativeModel, type NativeRanked } from '../native';
import * as is from '../validate';
import { type ModelConfig, loadModel } from './checkpoint';

export type Precision = 'fp32' | 'tf32' | 'fp16';

export interface LoadOptions {
  /** "cpu", "cuda" or "auto" (default: CUDA when usable). */
  device?: BackendChoice;
  /** GPU index (default 0). */
  gpu?: number;
  /**
   * The prepared dataset (folder or Dataset) for id maps and seen items; default: the folder
   * recorded in the checkpoint, if it still exists; false for none.
   */
  data?: string | Dataset | false;
  /** GEMM precision on the GPU: fp32, tf32 (default) or fp16. The CPU computes in fp32. */
  precision?: Precision;
  threads?: number;
  /** Pairs per forward pass (default 65536). */
  maxBatch?: number;
  /**
   * Bytes the model may spend on each user's precomputed part of the first layer (users x
   * layers[1] x 4; default 1 GiB, 0 for none). With them, scoring a pair skips the first layer's
   * GEMM; without, it runs the whole layer.
   */
  userPartsMemory?: number;
}

export interface RecommendOptions {
  /** How many items (default 10). */
  k?: number;
  /** Leave out items the user interacted with in the dataset (default false). */
  excludeSeen?: boolean;
  /** Rank only these items instead of the whole catalog. */
  candidates?: ArrayLike<number>;
}

export interface Recommendation {
  user: number;
  items: number[];
  scores: number[];
}

const LOAD_KEYS = ['device', 'gpu', 'data', 'precision', 'threads', 'maxBatch', 'userPartsMemory'] as const;
const RECOMMEND_KEYS = ['k', 'excludeSeen', 'candidates'] as const;

export class NeuMF {
  readonly config: ModelConfig;
  readonly dataset?: Dataset;
  readonly backend: string;
  readonly checkpoint: string;
  private readonly native: NativeModel;

  private constructor(checkpoint: string, config: ModelConfig, native: NativeModel, backend: string, dataset?: Dataset) {
    this.checkpoint = checkpoint;
    this.config = config;
    this.native = native;
    this.backend = backend;
    this.dataset = dataset;
  }

  /** Loads a checkpoint written by `ncf-native train` (or any file with NeuMF's tensor names). */
  static async load(checkpoint: string, opts: LoadOptions = {}): Promise<NeuMF> {
    is.knownKeys('NeuMF.load', opts, LOAD_KEYS);
    const ck = loadModel(checkpoint);
    let dataset: Dataset | undefined;
    if (opts.data instanceof Dataset) dataset = opts.data;
    else if (typeof opts.data === 'string') dataset = Dataset.load(opts.data);
    else if (opts.data !== false && ck.dataDir && fs.existsSync(ck.dataDir)) dataset = Dataset.load(ck.dataDir);
    if (dataset && (dataset.nUsers !== ck.config.nUsers || dataset.nItems !== ck.config.nItems))
      throw new InvalidArgumentError(
        `${checkpoint} has ${ck.config.nUsers} users and ${ck.config.nItems} items, but the dataset ${dataset.dir} has ${dataset.nUsers} and ${dataset.nItems}`,
        'data',
      );
    const backend = resolveBackend(opts.device ?? 'auto').name;
    const precision = is.oneOf('precision', opts.precision ?? 'tf32', ['fp32', 'tf32', 'fp16'] as const);
    if (precision === 'fp16' && backend !== 'cuda')
      throw new InvalidArgumentError('precision fp16 needs the CUDA backend (the CPU computes in fp32)', 'precision');
    let native: NativeModel;
    try {
      native = await addon().createModel({
        backend,
        device: opts.gpu === undefined ? 0 : is.integer('gpu', opts.gpu, 0, 1024),
        threads: opts.threads === undefined ? 0 : is.integer('threads', opts.threads, 1, 1024),
        model: ck.config,
        params: ck.params,
        half: precision === 'fp16',
        tf32: precision !== 'fp32',
        maxBatch: opts.maxBatch === undefined ? 65536 : is.integer('maxBatch', opts.maxBatch, 1, 2 ** 26),
        ...(opts.userPartsMemory === undefined ? {} : { userPartsMemory: is.number('userPartsMemory', opts.userPartsMemory, 0) }),
      });
      if (dataset) {
        const seen = dataset.seenItems();
        native.setSeen(seen.offsets, seen.items);
      }
    } catch (err) {
      throw fromNative(err);
    }
    return new NeuMF(ck.file, ck.config, native, backend, dataset);
  }

  /** Whether users and items are the dataset's original ids (true) or dense indices (false). */
  get usesOriginalIds(): boolean {
    return this.dataset !== undefined;
  }

  private userIndices(users: ArrayLike<number>): Uint32Array {
    const out = new Uint32Array(users.length);
    for (let i = 0; i < users.length; i++) out[i] = this.userIndex(users[i]);
    return out;
  }

  private userIndex(u: number): number {
    if (this.dataset) return this.dataset.userIndexOf(u);
    if (!Number.isInteger(u) || u < 0 || u >= this.config.nUsers)
      throw new InvalidArgumentError(`user ${u} is not a user index in 0..${this.config.nUsers - 1}`, 'user');
    return u;
  }

  private itemIndices(items: ArrayLike<number>): Uint32Array {
    const out = new Uint32Array(items.length);
    for (let i = 0; i < items.length; i++) {
      const v = items[i];
      if (this.dataset) out[i] = this.dataset.itemIndexOf(v);
      else if (!Number.isInteger(v) || v < 0 || v >= this.config.nItems)
        throw new InvalidArgumentError(`item ${v} is not an item index in 0..${this.config.nItems - 1}`, 'item');
      else out[i] = v;
    }
    return out;
  }

  private pairs(users: ArrayLike<number>, items: ArrayLike<number>): [Uint32Array, Uint32Array] {
    if (users.length !== items.length)
      throw new InvalidArgumentError(`users and items differ in length (${users.length} vs ${items.length})`, 'items');
    return [this.userIndices(users), this.itemIndices(items)];
  }

  /** Probability that each user interacts with the paired item, off the JavaScript thread. */
  async score(users: ArrayLike<number>, items: ArrayLike<number>): Promise<Float32Array> {
    const [u, i] = this.pairs(users, items);
    try {
      return await this.native.score(u, i);
    } catch (err) {
      throw fromNative(err);
    }
  }

  /** score() on the calling thread, for small batches. */
  scoreSync(users: ArrayLike<number>, items: ArrayLike<number>): Float32Array {
    const [u, i] = this.pairs(users, items);
    try {
      return this.native.scoreSync(u, i);
    } catch (err) {
      throw fromNative(err);
    }
  }

  private request(opts: RecommendOptions) {
    is.knownKeys('recommend', opts, RECOMMEND_KEYS);
    const k = is.integer('k', opts.k ?? 10, 1, 100000);
    if (opts.excludeSeen && !this.dataset)
      throw new InvalidArgumentError('excludeSeen needs the dataset the model was trained on (load the model with `data`)', 'excludeSeen');
    return {
      k,
      excludeSeen: !!opts.excludeSeen,
      candidates: opts.candidates ? this.itemIndices(opts.candidates) : undefined,
    };
  }

  private unpack(users: number[], r: NativeRanked, k: number): Recommendation[] {
    return users.map((user, q) => {
      const items: number[] = [];
      const scores: number[] = [];
      for (let j = 0; j < k; j++) {
        const it = r.items[q * k + j];
        if (it === 0xffffffff) break;
        items.push(this.dataset ? this.dataset.itemIds[it] : it);
        scores.push(r.scores[q * k + j]);
      }
      return { user, items, scores };
    });
  }

  /** The top-K items for one user (or each of several), best first, with their scores. */
  async recommend(user: number, opts?: RecommendOptions): Promise<Recommendation>;
  async recommend(users: number[], opts?: RecommendOptions): Promise<Recommendation[]>;
  async recommend(users: number | number[], opts: RecommendOptions = {}): Promise<Recommendation | Recommendation[]> {
    const list = Array.isArray(users) ? users : [users];
    const req = this.request(opts);
    let r: NativeRanked;
    try {
      r = await this.native.recommend(this.userIndices(list), req);
    } catch (err) {
      throw fromNative(err);
    }
    const out = this.unpack(list, r, req.k);
    return Array.isArray(users) ? out : out[0];
  }

  /** recommend() on the calling thread (one user's full catalog takes milliseconds). */
  recommendSync(user: number, opts: RecommendOptions = {}): Recommendation {
    const req = this.request(opts);
    try {
      return this.unpack([user], this.native.recommendSync(this.userIndices([user]), req), req.k)[0];
    } catch (err) {
      throw fromNative(err);
    }
  }

  /** Times forward passes over pairs already on the device (the inference benchmark). */
  async benchResident(users: Uint32Array, items: Uint32Array, iterations: number): Promise<Float64Array> {
    return this.native.benchResident(users, items, iterations);
  }

  get info() {
    return this.native.info;
  }

  /** Frees the model's memory; pending calls finish first. */
  close(): void {
    this.native.close();
  }
}
