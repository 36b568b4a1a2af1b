/**
 * The prepared-dataset folder: flat little-endian binary arrays plus meta.json.
 *
 *   train_offsets.u32   [users + 1]  CSR offsets of each user's training items
 *   train_items.u32     [positives]  training items, ascending within each user
 *   test_items.u32      [users]      each user's held-out (latest) item
 *   test_negatives.u32  [users * K]  K sampled items each user never interacted with
 *   user_ids.f64        [users]      original user id of each dense user index
 *   item_ids.f64        [items]      original item id of each dense item index
 *   meta.json           counts, source, options, the files above
 *
 * A folder is written under a temporary name and renamed into place only when complete, so a
 * failed or interrupted prepare never leaves a half-written dataset or damages an existing one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { DataError } from '../errors';
import type { PreparedArrays } from '../native';

export const DATASET_FORMAT = 'ncf-native-dataset';
export const DATASET_VERSION = 1;

export const DATASET_FILES = {
  offsets: 'train_offsets.u32',
  items: 'train_items.u32',
  testItems: 'test_items.u32',
  testNegatives: 'test_negatives.u32',
  userIds: 'user_ids.f64',
  itemIds: 'item_ids.f64',
} as const;

export interface SourceDescription {
  kind: 'movielens' | 'file' | 'synthetic';
  name: string;
  /** Absolute path of the file that was parsed (not for synthetic data). */
  path?: string;
  size?: number;
  mtimeMs?: number;
  md5?: string;
  shape?: string;
  seed?: number;
  format?: { delimiter: string; header: boolean; userCol: number; itemCol: number; timeCol: number };
}

export interface PrepareParameters {
  minRatings: number;
  testNegatives: number;
  seed: number;
}

export interface DatasetMeta {
  format: typeof DATASET_FORMAT;
  version: number;
  name: string;
  createdAt: string;
  source: SourceDescription;
  options: PrepareParameters;
  counts: {
    users: number;
    items: number;
    trainPositives: number;
    testPositives: number;
    rows: number;
    droppedUsers: number;
    droppedRows: number;
    duplicates: number;
  };
  prepareSeconds: number;
  files: typeof DATASET_FILES;
}

export function readMeta(dir: string): DatasetMeta | undefined {
  const file = path.join(dir, 'meta.json');
  if (!fs.existsSync(file)) return undefined;
  let meta: DatasetMeta;
  try {
    meta = JSON.parse(fs.readFileSync(file, 'utf8')) as DatasetMeta;
  } catch (err) {
    throw new DataError('ERR_DATASET', `${file} is not valid JSON (${(err as Error).message}); prepare the dataset again with --force`);
  }
  if (meta.format !== DATASET_FORMAT)
    throw new DataError('ERR_DATASET', `${file} is not an ncf-native dataset (format '${String(meta.format)}')`);
  if (meta.version !== DATASET_VERSION)
    throw new DataError('ERR_DATASET', `${dir} was prepared by another version of ncf-native (format ${meta.version}, this one reads ${DATASET_VERSION}); prepare it again with --force`);
  return meta;
}

function writeArray(file: string, a: ArrayBufferView): void {
  const fd = fs.openSync(file, 'w');
  try {
    const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    let off = 0;
    while (off < bytes.length) off += fs.writeSync(fd, bytes, off, Math.min(bytes.length - off, 1 << 26));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes a dataset folder atomically, replacing any dataset already at `dir`. */
export function writeDataset(dir: string, arrays: PreparedArrays, meta: Omit<DatasetMeta, 'files' | 'format' | 'version'>): DatasetMeta {
  const full: DatasetMeta = { format: DATASET_FORMAT, version: DATASET_VERSION, ...meta, files: DATASET_FILES };
  const parent = path.dirname(path.resolve(dir));
  fs.mkdirSync(parent, { recursive: true });
  const tmp = path.join(parent, `.${path.basename(dir)}.tmp-${process.pid}-${Date.now()}`);
  fs.mkdirSync(tmp);
  try {
    writeArray(path.join(tmp, DATASET_FILES.offsets), arrays.offsets);
    writeArray(path.join(tmp, DATASET_FILES.items), arrays.items);
    writeArray(path.join(tmp, DATASET_FILES.testItems), arrays.testItems);
    writeArray(path.join(tmp, DATASET_FILES.testNegatives), arrays.testNegatives);
    writeArray(path.join(tmp, DATASET_FILES.userIds), arrays.userIds);
    writeArray(path.join(tmp, DATASET_FILES.itemIds), arrays.itemIds);
    fs.writeFileSync(path.join(tmp, 'meta.json'), JSON.stringify(full, null, 2) + '\n');
    const old = fs.existsSync(dir) ? `${tmp}.old` : null;
    if (old) fs.renameSync(dir, old);
    fs.renameSync(tmp, dir);
    if (old) fs.rmSync(old, { recursive: true, force: true });
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw new DataError('ERR_IO', `cannot write the dataset to ${dir}: ${(err as Error).message}`, { cause: err });
  }
  return full;
}

/** Reads a whole binary array file, checking its length. */
export function readArray<T extends Uint32Array | Float64Array>(
  dir: string,
  file: string,
  ctor: { new (n: number): T; BYTES_PER_ELEMENT: number },
  count: number,
): T {
  const p = path.join(dir, file);
  let fd: number;
  try {
    fd = fs.openSync(p, 'r');
  } catch {
    throw new DataError('ERR_DATASET', `${p} is missing; prepare the dataset again with --force`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const want = count * ctor.BYTES_PER_ELEMENT;
    if (size !== want)
      throw new DataError('ERR_DATASET', `${p} has ${size} bytes, expected ${want}: the dataset is damaged; prepare it again with --force`);
    const out = new ctor(count);
    const bytes = new Uint8Array(out.buffer);
    let off = 0;
    while (off < want) {
      const n = fs.readSync(fd, bytes, off, Math.min(want - off, 1 << 26), off);
      if (n <= 0) throw new DataError('ERR_DATASET', `${p}: unexpected end of file`);
      off += n;
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}
