/**
 * `prepare`: turns a source (ml-20m, ml-1m, a CSV/TSV/.dat file, a zip or folder holding one, or
 * synthetic data) into a prepared dataset folder. Downloads and unzips MovieLens when needed,
 * detects the file's layout, runs the native parser and preprocessing, and writes the cache.
 * Re-running with the same source and options does nothing.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { DataError, InvalidArgumentError, fromNative } from '../errors';
import { addon, type PreparedArrays } from '../native';
import { datasetsDir, downloadsDir } from '../paths';
import * as is from '../validate';
import { type DatasetMeta, type PrepareParameters, type SourceDescription, readMeta, writeDataset } from './cache';
import { type ColumnOptions, detectFormat } from './delimited';
import { download, fileMd5 } from './download';
import { isMovieLensName, MOVIELENS, type MovieLensSource, movieLensUrl } from './sources';
import { extractZip, listZip } from './unzip';

export interface PrepareOptions extends ColumnOptions {
  /** Output folder (default: a folder named after the source in the cache, see paths.ts). */
  out?: string;
  /** For ml-20m / ml-1m: an already downloaded zip, unpacked folder or ratings file. */
  sourcePath?: string;
  /** Synthetic data shape (also given as "synthetic:SHAPE"). */
  shape?: string;
  /** Drop users with fewer interactions (default 20, as the reference). */
  minRatings?: number;
  /** Test negatives per user (default 100). */
  testNegatives?: number;
  /** Seed for test negatives and synthetic data (default 0). */
  seed?: number;
  threads?: number;
  /** Prepare again even if the folder is up to date. */
  force?: boolean;
  /** Base URL to download MovieLens from instead of GroupLens. */
  mirror?: string;
  onProgress?: (e: PrepareEvent) => void;
  signal?: AbortSignal;
}

export type PrepareEvent =
  | { phase: 'download'; file: string; received: number; total: number }
  | { phase: 'extract'; file: string }
  | { phase: 'parse'; file: string }
  | { phase: 'generate'; shape: string }
  | { phase: 'write'; dir: string };

export interface PrepareResult {
  dir: string;
  meta: DatasetMeta;
  /** True when the folder was already up to date and nothing was done. */
  skipped: boolean;
}

const KNOWN = [
  'out', 'sourcePath', 'shape', 'minRatings', 'testNegatives', 'seed', 'threads', 'force', 'mirror', 'onProgress',
  'signal', 'delimiter', 'header', 'userCol', 'itemCol', 'timeCol',
] as const;

const RATINGS_FILES = ['ratings.csv', 'ratings.dat', 'u.data'];

export function syntheticShapeOf(source: string, shape?: string): string | undefined {
  if (source === 'synthetic') return shape ?? 'ml-20m';
  if (source.startsWith('synthetic:')) return source.slice('synthetic:'.length);
  return undefined;
}

function parameters(o: PrepareOptions): PrepareParameters {
  return {
    minRatings: is.integer('minRatings', o.minRatings ?? 20, 1),
    testNegatives: is.integer('testNegatives', o.testNegatives ?? 100, 1, 10000),
    seed: is.integer('seed', o.seed ?? 0, 0, Number.MAX_SAFE_INTEGER),
  };
}

function sameSource(a: SourceDescription, b: SourceDescription): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function upToDate(dir: string, source: SourceDescription, params: PrepareParameters): DatasetMeta | undefined {
  let meta: DatasetMeta | undefined;
  try {
    meta = readMeta(dir);
  } catch {
    return undefined; // damaged or foreign: prepare again
  }
  if (!meta) return undefined;
  return sameSource(meta.source, source) && JSON.stringify(meta.options) === JSON.stringify(params) ? meta : undefined;
}

/** Finds the ratings file in a folder (at its top or one level down). */
function ratingsFileIn(dir: string): string | undefined {
  for (const name of RATINGS_FILES) if (fs.existsSync(path.join(dir, name))) return path.join(dir, name);
  for (const sub of fs.readdirSync(dir, { withFileTypes: true })) {
    if (!sub.isDirectory()) continue;
    for (const name of RATINGS_FILES) if (fs.existsSync(path.join(dir, sub.name, name))) return path.join(dir, sub.name, name);
  }
  return undefined;
}

/** Extracts a zip's ratings file into the downloads folder (once) and returns its path. */
async function ratingsFromZip(zip: string, entry: string | undefined, onProgress?: (e: PrepareEvent) => void): Promise<string> {
  const entries = await listZip(zip);
  const chosen =
    entry && entries.some((e) => e.name === entry)
      ? entry
      : entries.find((e) => RATINGS_FILES.includes(path.posix.basename(e.name)))?.name;
  if (!chosen)
    throw new DataError('ERR_DATASET', `${zip} holds none of ${RATINGS_FILES.join(', ')} (it has: ${entries.slice(0, 8).map((e) => e.name).join(', ')})`);
  const st = fs.statSync(zip);
  const dest = path.join(downloadsDir(), `${path.basename(zip, '.zip')}-${st.size}-${Math.floor(st.mtimeMs)}`);
  const target = path.join(dest, chosen);
  if (!fs.existsSync(target)) {
    onProgress?.({ phase: 'extract', file: zip });
    await extractZip(zip, dest, (name) => name === chosen);
  }
  return target;
}

function fileIdentity(file: string): Pick<SourceDescription, 'path' | 'size' | 'mtimeMs'> {
  const st = fs.statSync(file);
  return { path: path.resolve(file), size: st.size, mtimeMs: Math.floor(st.mtimeMs) };
}

function describeFailure(src: MovieLensSource, url: string, err: Error): string {
  const reason = err.message.replace(`cannot download ${url}: `, '');
  return (
    `cannot download ${src.name} from ${url}: ${reason}\n` +
    `Either download ${src.zipName} yourself and run \`ncf-native prepare ${src.name} --source /path/to/${src.zipName}\`, ` +
    'or train offline on generated data with `--data synthetic` (or `--data synthetic:ml-1m` for a smaller set).'
  );
}

async function movieLensRatings(src: MovieLensSource, o: PrepareOptions): Promise<{ file: string; md5?: string }> {
  if (o.sourcePath) {
    const p = path.resolve(o.sourcePath);
    if (!fs.existsSync(p)) throw new InvalidArgumentError(`--source ${o.sourcePath}: no such file or folder`, 'source');
    if (fs.statSync(p).isDirectory()) {
      const f = ratingsFileIn(p);
      if (!f) throw new InvalidArgumentError(`--source ${o.sourcePath}: no ${src.ratingsEntry.split('/')[1]} in this folder`, 'source');
      return { file: f };
    }
    if (!p.endsWith('.zip')) return { file: p };
    const md5 = await fileMd5(p);
    if (md5 !== src.md5)
      throw new DataError('ERR_DATASET', `${p}: MD5 is ${md5}, but ${src.zipName} from GroupLens has ${src.md5}; is this the right file?`);
    return { file: await ratingsFromZip(p, src.ratingsEntry, o.onProgress), md5 };
  }
  const zip = path.join(downloadsDir(), src.zipName);
  if (!fs.existsSync(zip)) {
    fs.mkdirSync(downloadsDir(), { recursive: true });
    const url = movieLensUrl(src, o.mirror);
    try {
      await download(url, zip, {
        md5: src.md5,
        signal: o.signal,
        onProgress: (p) => o.onProgress?.({ phase: 'download', file: src.zipName, ...p }),
      });
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_CHECKSUM') throw err;
      throw new DataError('ERR_IO', describeFailure(src, url, err as Error), { cause: err });
    }
  }
  return { file: await ratingsFromZip(zip, src.ratingsEntry, o.onProgress), md5: src.md5 };
}

function defaultDir(name: string): string {
  return path.join(datasetsDir(), name);
}

async function runNative(work: () => Promise<PreparedArrays>, file?: string): Promise<PreparedArrays> {
  try {
    return await work();
  } catch (err) {
    throw fromNative(err, file);
  }
}

/** Prepares `source` (see PrepareOptions) and returns the dataset folder. */
export async function prepare(source: string, opts: PrepareOptions = {}): Promise<PrepareResult> {
  is.knownKeys('prepare', opts, KNOWN);
  is.string('source', source);
  const params = parameters(opts);
  const threads = opts.threads === undefined ? 0 : is.integer('threads', opts.threads, 1, 1024);
  const started = Date.now();
  const native = addon();

  const finish = (dir: string, arrays: PreparedArrays, src: SourceDescription): PrepareResult => {
    opts.onProgress?.({ phase: 'write', dir });
    const meta = writeDataset(dir, arrays, {
      name: src.name,
      createdAt: new Date().toISOString(),
      source: src,
      options: params,
      counts: {
        users: arrays.nUsers,
        items: arrays.nItems,
        trainPositives: arrays.items.length,
        testPositives: arrays.testItems.length,
        rows: arrays.rows,
        droppedUsers: arrays.droppedUsers,
        droppedRows: arrays.droppedRows,
        duplicates: arrays.duplicates,
      },
      prepareSeconds: (Date.now() - started) / 1000,
    });
    return { dir, meta, skipped: false };
  };

  // Synthetic data.
  const shape = syntheticShapeOf(source, opts.shape);
  if (shape !== undefined) {
    const known = native.syntheticShapes().map((s) => s.name);
    if (!known.includes(shape)) throw new InvalidArgumentError(`unknown synthetic shape '${shape}' (choose from ${known.join(', ')})`, 'shape');
    const src: SourceDescription = { kind: 'synthetic', name: `synthetic-${shape}`, shape, seed: params.seed };
    const dir = path.resolve(opts.out ?? defaultDir(`synthetic-${shape}-seed${params.seed}`));
    const ready = !opts.force && upToDate(dir, src, params);
    if (ready) return { dir, meta: ready, skipped: true };
    opts.onProgress?.({ phase: 'generate', shape });
    const arrays = await runNative(() =>
      native.prepareSynthetic({ shape, seed: params.seed, minRatings: params.minRatings, testNegatives: params.testNegatives, threads }),
    );
    return finish(dir, arrays, src);
  }

  // MovieLens by name.
  if (isMovieLensName(source)) {
    const ml = MOVIELENS[source];
    const dir = path.resolve(opts.out ?? defaultDir(ml.name));
    if (!opts.force && !opts.sourcePath) {
      const ready = upToDate(dir, { kind: 'movielens', name: ml.name, md5: ml.md5, format: ml.format }, params);
      if (ready) return { dir, meta: ready, skipped: true };
    }
    const { file, md5 } = await movieLensRatings(ml, opts);
    const src: SourceDescription = md5
      ? { kind: 'movielens', name: ml.name, md5, format: ml.format }
      : { kind: 'movielens', name: ml.name, ...fileIdentity(file), format: ml.format };
    const ready = !opts.force && upToDate(dir, src, params);
    if (ready) return { dir, meta: ready, skipped: true };
    opts.onProgress?.({ phase: 'parse', file });
    const f = ml.format;
    const arrays = await runNative(
      () =>
        native.prepareFile({
          path: file, delimiter: f.delimiter, skipLines: f.header ? 1 : 0, userCol: f.userCol, itemCol: f.itemCol,
          timeCol: f.timeCol, ...params, threads,
        }),
      file,
    );
    return finish(dir, arrays, src);
  }

  // A path: a prepared dataset, a folder or zip holding a ratings file, or the file itself.
  const p = path.resolve(source);
  if (!fs.existsSync(p))
    throw new InvalidArgumentError(
      `source '${source}' is not ml-20m, ml-1m, synthetic[:SHAPE] or an existing file or folder`,
      'source',
    );
  let file = p;
  if (fs.statSync(p).isDirectory()) {
    const meta = readMeta(p);
    if (meta) return { dir: p, meta, skipped: true };
    const found = ratingsFileIn(p);
    if (!found) throw new InvalidArgumentError(`${p} holds no prepared dataset and none of ${RATINGS_FILES.join(', ')}`, 'source');
    file = found;
  } else if (p.endsWith('.zip')) {
    file = await ratingsFromZip(p, undefined, opts.onProgress);
  }
  const format = detectFormat(file, opts);
  // MovieLens' own ratings files are named after their folder (ml-100k/u.data -> ml-100k).
  const base = RATINGS_FILES.includes(path.basename(file))
    ? path.basename(path.dirname(file))
    : path.basename(file).replace(/\.[^.]+$/, '');
  const hash = createHash('sha1').update(path.resolve(file)).digest('hex').slice(0, 8);
  const dir = path.resolve(opts.out ?? defaultDir(`${base}-${hash}`));
  const src: SourceDescription = { kind: 'file', name: base, ...fileIdentity(file), format };
  const ready = !opts.force && upToDate(dir, src, params);
  if (ready) return { dir, meta: ready, skipped: true };
  opts.onProgress?.({ phase: 'parse', file });
  const arrays = await runNative(
    () =>
      native.prepareFile({
        path: file, delimiter: format.delimiter, skipLines: format.header ? 1 : 0, userCol: format.userCol,
        itemCol: format.itemCol, timeCol: format.timeCol, ...params, threads,
      }),
    file,
  );
  return finish(dir, arrays, src);
}
