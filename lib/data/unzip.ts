/**
 * Extracts files from a zip archive with yauzl. Every extracted entry must resolve inside the
 * target folder: absolute names and names with ".." are refused (yauzl rejects them too), so a
 * crafted archive cannot write elsewhere. Files are written to a temporary name and renamed when
 * complete.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';

import yauzl from 'yauzl';

import { DataError } from '../errors';

export interface ZipEntryInfo {
  name: string;
  size: number;
}

function openZip(zipPath: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) =>
    yauzl.open(zipPath, { lazyEntries: true, autoClose: false }, (err, zip) =>
      err || !zip ? reject(new DataError('ERR_IO', `${zipPath}: not a readable zip archive: ${err?.message}`, { cause: err })) : resolve(zip),
    ),
  );
}

/** Resolves `name` under `dir`, refusing names that would land outside it. */
export function safeJoin(dir: string, name: string, zipPath: string): string {
  const root = path.resolve(dir);
  const target = path.resolve(root, name);
  if (path.isAbsolute(name) || name.split(/[\\/]/).includes('..') || !(target + path.sep).startsWith(root + path.sep))
    throw new DataError('ERR_DATASET', `${zipPath}: refusing entry '${name}', which would be written outside ${root}`);
  return target;
}

/** Lists the files of the archive. */
export async function listZip(zipPath: string): Promise<ZipEntryInfo[]> {
  const zip = await openZip(zipPath);
  const out: ZipEntryInfo[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on('entry', (e: yauzl.Entry) => {
        if (!e.fileName.endsWith('/')) out.push({ name: e.fileName, size: e.uncompressedSize });
        zip.readEntry();
      });
      zip.on('end', resolve);
      zip.on('error', reject);
      zip.readEntry();
    });
  } catch (err) {
    throw new DataError('ERR_IO', `${zipPath}: ${(err as Error).message}`, { cause: err });
  } finally {
    zip.close();
  }
  return out;
}

/**
 * Extracts the entries `wanted` selects into `destDir` (keeping their relative paths) and
 * returns the written paths.
 */
export async function extractZip(zipPath: string, destDir: string, wanted: (name: string) => boolean): Promise<string[]> {
  const zip = await openZip(zipPath);
  const written: string[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on('error', reject);
      zip.on('end', resolve);
      zip.on('entry', (e: yauzl.Entry) => {
        if (e.fileName.endsWith('/') || !wanted(e.fileName)) return zip.readEntry();
        let target: string;
        try {
          target = safeJoin(destDir, e.fileName, zipPath);
        } catch (err) {
          return reject(err);
        }
        zip.openReadStream(e, (err, stream) => {
          if (err || !stream) return reject(err ?? new Error('no stream'));
          fs.mkdirSync(path.dirname(target), { recursive: true });
          const tmp = `${target}.tmp-${process.pid}`;
          pipeline(stream, fs.createWriteStream(tmp))
            .then(() => {
              fs.renameSync(tmp, target);
              written.push(target);
              zip.readEntry();
            })
            .catch((e2) => {
              fs.rmSync(tmp, { force: true });
              reject(e2);
            });
        });
      });
      zip.readEntry();
    });
  } catch (err) {
    if (err instanceof DataError) throw err;
    throw new DataError('ERR_IO', `${zipPath}: cannot extract: ${(err as Error).message}`, { cause: err });
  } finally {
    zip.close();
  }
  return written;
}
