/**
 * HTTP(S) downloads with a progress callback, resume and an MD5 check.
 *
 * Bytes go to `<dest>.part`; an interrupted or truncated transfer leaves the .part file so the
 * next call resumes it with a Range request (restarting if the server ignores ranges). Only a
 * complete file whose MD5 matches is renamed to `dest`; a mismatching one is deleted.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import { ChecksumError, DownloadError } from '../errors';

export interface DownloadProgress {
  received: number;
  total: number; // 0 when the server does not say
}

export interface DownloadOptions {
  md5?: string;
  onProgress?: (p: DownloadProgress) => void;
  signal?: AbortSignal;
  /** Abort when no data arrives for this long (ms). */
  idleTimeoutMs?: number;
}

export async function fileMd5(file: string): Promise<string> {
  const hash = createHash('md5');
  await new Promise<void>((resolve, reject) => {
    fs.createReadStream(file)
      .on('data', (c) => hash.update(c))
      .on('error', reject)
      .on('end', resolve);
  });
  return hash.digest('hex');
}

function get(url: string, headers: Record<string, string>, idleMs: number, signal?: AbortSignal): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https:') ? https : url.startsWith('http:') ? http : null;
    if (!lib) return reject(new DownloadError(url, `unsupported URL ${url} (expected http:// or https://)`));
    const req = lib.get(url, { headers, signal, timeout: idleMs }, resolve);
    req.on('timeout', () => req.destroy(new Error(`no response for ${idleMs / 1000} s`)));
    req.on('error', reject);
  });
}

/** Follows up to 5 redirects; resolves with the final response. */
async function request(url: string, headers: Record<string, string>, idleMs: number, signal?: AbortSignal): Promise<http.IncomingMessage> {
  let current = url;
  for (let hop = 0; hop < 6; hop++) {
    const res = await get(current, headers, idleMs, signal);
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && res.headers.location) {
      res.resume();
      current = new URL(res.headers.location, current).toString();
      continue;
    }
    return res;
  }
  throw new DownloadError(url, `too many redirects from ${url}`);
}

export async function download(url: string, dest: string, opts: DownloadOptions = {}): Promise<void> {
  const part = `${dest}.part`;
  const idleMs = opts.idleTimeoutMs ?? 30_000;
  let offset = fs.existsSync(part) ? fs.statSync(part).size : 0;
  const hash = createHash('md5');
  let res: http.IncomingMessage;
  try {
    res = await request(url, offset > 0 ? { Range: `bytes=${offset}-` } : {}, idleMs, opts.signal);
    if (res.statusCode === 416) {
      // The .part is already complete or longer than the file: start over.
      res.resume();
      fs.rmSync(part, { force: true });
      offset = 0;
      res = await request(url, {}, idleMs, opts.signal);
    }
  } catch (err) {
    if (err instanceof DownloadError) throw err;
    throw new DownloadError(url, `cannot download ${url}: ${(err as Error).message}`, { cause: err });
  }
  const status = res.statusCode ?? 0;
  if (status !== 200 && status !== 206) {
    res.resume();
    throw new DownloadError(url, `cannot download ${url}: HTTP ${status} ${res.statusMessage ?? ''}`.trim());
  }
  if (status === 200 && offset > 0) offset = 0; // the server ignored the range
  if (offset > 0) {
    await new Promise<void>((resolve, reject) =>
      fs.createReadStream(part, { end: offset - 1 }).on('data', (c) => hash.update(c)).on('error', reject).on('end', resolve),
    );
  }
  const length = Number(res.headers['content-length'] ?? 0);
  const total = length > 0 ? offset + length : 0;
  let received = offset;
  const out = fs.createWriteStream(part, { flags: offset > 0 ? 'a' : 'w' });
  try {
    await new Promise<void>((resolve, reject) => {
      res.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        received += chunk.length;
        opts.onProgress?.({ received, total });
      });
      res.on('aborted', () => reject(new Error('the connection was closed early')));
      res.on('error', reject);
      out.on('error', reject);
      res.pipe(out);
      out.on('finish', resolve);
    });
  } catch (err) {
    out.destroy();
    throw new DownloadError(
      url,
      `download of ${url} failed after ${received} bytes: ${(err as Error).message}; run the command again to resume`,
      { cause: err },
    );
  }
  if (total > 0 && received < total)
    throw new DownloadError(url, `download of ${url} is truncated (${received} of ${total} bytes); run the command again to resume`);
  const md5 = hash.digest('hex');
  if (opts.md5 && md5 !== opts.md5.toLowerCase()) {
    fs.rmSync(part, { force: true });
    throw new ChecksumError(
      `${url}: the downloaded file's MD5 is ${md5}, expected ${opts.md5}; the file was deleted, run the command again`,
      opts.md5,
      md5,
    );
  }
  fs.renameSync(part, dest);
}
