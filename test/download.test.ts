// Downloads against a local HTTP server (checksums, truncated transfers, resume, failures), zip
// extraction that refuses escaping entries, and `prepare ml-1m` from a local copy.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';

import t from 'tap';

import { extractZip } from '../lib/data/unzip';
import { ChecksumError, download, DownloadError, prepare } from '../lib/index';
import { makeZip, tmpdir, write } from './helpers';

const BODY = Buffer.from('x'.repeat(200_000) + 'end');
const MD5 = createHash('md5').update(BODY).digest('hex');

interface Server {
  url: string;
  close: () => Promise<void>;
  hits: { path: string; range?: string }[];
}

/** Serves BODY at /file; /truncated sends half of it and drops the connection; /missing is 404. */
async function serve(): Promise<Server> {
  const hits: Server['hits'] = [];
  let truncateNext = false;
  const server = http.createServer((req, res) => {
    hits.push({ path: req.url ?? '', range: req.headers.range });
    if (req.url?.startsWith('/missing')) {
      res.writeHead(404).end('no');
      return;
    }
    if (req.url === '/redirect') {
      res.writeHead(302, { location: '/file' }).end();
      return;
    }
    if (req.url === '/truncate-once') {
      truncateNext = !truncateNext;
      if (truncateNext) {
        res.writeHead(200, { 'content-length': BODY.length });
        res.write(BODY.subarray(0, 100_000));
        setTimeout(() => res.destroy(), 20);
        return;
      }
    }
    const m = /bytes=(\d+)-/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    res.writeHead(m ? 206 : 200, { 'content-length': BODY.length - start });
    res.end(BODY.subarray(start));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, hits, close: () => new Promise((r) => server.close(() => r())) };
}

t.test('download: checksum, redirects, truncated transfers resume, failures', async (t) => {
  const s = await serve();
  t.teardown(s.close);
  const dir = tmpdir();
  const seen: number[] = [];
  const ok = path.join(dir, 'ok.bin');
  await download(`${s.url}/redirect`, ok, { md5: MD5, onProgress: (p) => seen.push(p.received) });
  t.same(fs.readFileSync(ok), BODY, 'follows the redirect and writes the file');
  t.equal(seen[seen.length - 1], BODY.length, 'reports progress up to the full size');

  const bad = path.join(dir, 'bad.bin');
  const err = await download(`${s.url}/file`, bad, { md5: '0'.repeat(32) }).catch((e: unknown) => e);
  t.type(err, ChecksumError);
  t.match((err as Error).message, /MD5 is [0-9a-f]{32}, expected 0{32}; the file was deleted/);
  t.notOk(fs.existsSync(bad) || fs.existsSync(`${bad}.part`), 'a mismatching file is removed');

  const part = path.join(dir, 'part.bin');
  const e2 = await download(`${s.url}/truncate-once`, part, { md5: MD5 }).catch((e: unknown) => e);
  t.type(e2, DownloadError);
  t.match((e2 as Error).message, /run the command again to resume/);
  t.ok(fs.existsSync(`${part}.part`) && !fs.existsSync(part), 'a truncated transfer keeps only the .part file');
  await download(`${s.url}/truncate-once`, part, { md5: MD5 });
  t.same(fs.readFileSync(part), BODY, 'the second call resumes and completes');
  t.match(s.hits[s.hits.length - 1].range ?? '', /^bytes=\d+-$/, 'with a Range request');

  await t.rejects(download(`${s.url}/missing`, path.join(dir, 'm'), {}), /HTTP 404/);
  await t.rejects(download('http://127.0.0.1:9/nothing', path.join(dir, 'n'), { idleTimeoutMs: 2000 }), DownloadError);
  await t.rejects(download('ftp://example.com/x', path.join(dir, 'f'), {}), /unsupported URL/);
});

t.test('prepare ml-1m: a failed download names both ways out', async (t) => {
  const home = tmpdir();
  const saved = process.env.NCF_NATIVE_HOME;
  process.env.NCF_NATIVE_HOME = home;
  t.teardown(() => {
    process.env.NCF_NATIVE_HOME = saved;
  });
  t.ok(saved, 'the tests run with their own cache (test/helpers.ts)');
  const s = await serve();
  t.teardown(s.close);
  const e = await prepare('ml-1m', { mirror: `${s.url}/missing/` }).catch((x: unknown) => x);
  t.match((e as Error).message, /cannot download ml-1m from http:\/\/127\.0\.0\.1:\d+\/missing\/ml-1m\.zip: HTTP 404/);
  t.match((e as Error).message, /ncf-native prepare ml-1m --source \/path\/to\/ml-1m\.zip/);
  t.match((e as Error).message, /--data synthetic/);
  // A served file whose MD5 is not GroupLens' is refused.
  const c = await prepare('ml-1m', { mirror: `${s.url}/` }).catch((x: unknown) => x);
  t.type(c, ChecksumError);
});

t.test('prepare ml-1m from an unpacked folder, and custom zips', async (t) => {
  const dir = tmpdir();
  const lines: string[] = [];
  for (let u = 1; u <= 30; u++) for (let k = 0; k < 20 + u; k++) lines.push(`${u}::${(u * 3 + k) % 90 + 1}::4::${978300000 + k}`);
  write(dir, 'ml-1m/ratings.dat', lines.join('\n') + '\n');
  const r = await prepare('ml-1m', { sourcePath: path.join(dir, 'ml-1m'), out: path.join(dir, 'out') });
  t.equal(r.meta.name, 'ml-1m');
  t.equal(r.meta.counts.users, 30);
  t.equal(r.meta.source.format?.delimiter, '::');

  const zip = path.join(dir, 'mine.zip');
  fs.writeFileSync(zip, makeZip({ 'mine/README': 'hello', 'mine/ratings.csv': 'userId,movieId,rating,timestamp\n' + lines.map((l) => l.replaceAll('::', ',')).join('\n') }));
  const z = await prepare(zip, { out: path.join(dir, 'zout') });
  t.equal(z.meta.counts.users, 30, 'the ratings file is found inside a zip');
});

t.test('zip extraction refuses entries that escape the target folder', async (t) => {
  const dir = tmpdir();
  const evil = path.join(dir, 'evil.zip');
  fs.writeFileSync(evil, makeZip({ 'ok.txt': 'fine', '../escaped.txt': 'gotcha' }));
  const target = path.join(dir, 'target');
  await t.rejects(extractZip(evil, target, () => true), /escaped\.txt/);
  t.notOk(fs.existsSync(path.join(dir, 'escaped.txt')), 'nothing written outside');
  const abs = path.join(dir, 'abs.zip');
  fs.writeFileSync(abs, makeZip({ '/etc/ncf-native-test': 'gotcha' }));
  await t.rejects(extractZip(abs, target, () => true));
  t.notOk(fs.existsSync('/etc/ncf-native-test'));
});
