/**
 * A prepared dataset loaded from its cache folder: the arrays training and serving need, and the
 * maps between original ids and dense indices.
 */
import { DataError, InvalidArgumentError } from '../errors';
import type { NativeDataArrays } from '../native';
import { DATASET_FILES, type DatasetMeta, readArray, readMeta } from './cache';

export class Dataset {
  readonly dir: string;
  readonly meta: DatasetMeta;
  readonly offsets: Uint32Array;
  readonly items: Uint32Array;
  readonly testItems: Uint32Array;
  readonly testNegatives: Uint32Array;
  readonly userIds: Float64Array;
  readonly itemIds: Float64Array;
  private userIndex?: Map<number, number>;
  private itemIndex?: Map<number, number>;

  private constructor(dir: string, meta: DatasetMeta) {
    this.dir = dir;
    this.meta = meta;
    const { users, items, trainPositives } = meta.counts;
    const K = meta.options.testNegatives;
    this.offsets = readArray(dir, DATASET_FILES.offsets, Uint32Array, users + 1);
    this.items = readArray(dir, DATASET_FILES.items, Uint32Array, trainPositives);
    this.testItems = readArray(dir, DATASET_FILES.testItems, Uint32Array, users);
    this.testNegatives = readArray(dir, DATASET_FILES.testNegatives, Uint32Array, users * K);
    this.userIds = readArray(dir, DATASET_FILES.userIds, Float64Array, users);
    this.itemIds = readArray(dir, DATASET_FILES.itemIds, Float64Array, items);
    if (this.offsets[users] !== trainPositives)
      throw new DataError('ERR_DATASET', `${dir}: the training offsets do not add up to ${trainPositives}; prepare the dataset again with --force`);
  }

  /** Loads the dataset prepared in `dir`. */
  static load(dir: string): Dataset {
    const meta = readMeta(dir);
    if (!meta) throw new DataError('ERR_DATASET', `${dir} holds no prepared dataset (no meta.json); run \`ncf-native prepare\` first`);
    return new Dataset(dir, meta);
  }

  get nUsers(): number {
    return this.meta.counts.users;
  }
  get nItems(): number {
    return this.meta.counts.items;
  }
  get nTrain(): number {
    return this.meta.counts.trainPositives;
  }

  /** The arrays the native trainer takes. */
  nativeArrays(): NativeDataArrays {
    return {
      offsets: this.offsets,
      items: this.items,
      testItems: this.testItems,
      testNegatives: this.testNegatives,
      storedNegatives: this.meta.options.testNegatives,
    };
  }

  /** Every item each user interacted with (training items and the held-out one), as a CSR. */
  seenItems(): { offsets: Uint32Array; items: Uint32Array } {
    const U = this.nUsers;
    const offsets = new Uint32Array(U + 1);
    const items = new Uint32Array(this.nTrain + U);
    for (let u = 0; u < U; u++) {
      const b = this.offsets[u], e = this.offsets[u + 1];
      const o = offsets[u];
      items.set(this.items.subarray(b, e), o);
      items[o + e - b] = this.testItems[u];
      offsets[u + 1] = o + e - b + 1;
    }
    return { offsets, items };
  }

  /** The dense index of an original user id (throws if unknown). */
  userIndexOf(id: number): number {
    this.userIndex ??= indexMap(this.userIds);
    const i = this.userIndex.get(id);
    if (i === undefined) throw new InvalidArgumentError(`unknown user id ${id} (not in dataset ${this.meta.name})`, 'user');
    return i;
  }

  /** The dense index of an original item id (throws if unknown). */
  itemIndexOf(id: number): number {
    this.itemIndex ??= indexMap(this.itemIds);
    const i = this.itemIndex.get(id);
    if (i === undefined) throw new InvalidArgumentError(`unknown item id ${id} (not in dataset ${this.meta.name})`, 'item');
    return i;
  }
}

function indexMap(ids: Float64Array): Map<number, number> {
  const m = new Map<number, number>();
  for (let i = 0; i < ids.length; i++) m.set(ids[i], i);
  return m;
}
