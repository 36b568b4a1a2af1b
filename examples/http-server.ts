/**
 * A recommendation service on node:http, with no framework:
 *
 *   GET /recommend?user=ID&k=10[&exclude_seen=false]
 *     200 {"user": ID, "items": [{"item": ID, "score": 0.97}, ...]}
 *     400 for a missing or malformed user or k, 404 for an unknown user, 405 for non-GET.
 *   GET /health  -> 200 {"ok": true, "backend": "cpu"}
 *
 * Run it:  node dist/examples/http-server.js --checkpoint checkpoints/model.safetensors [--port 8080]
 * Scoring a full catalog runs in the native addon off the JavaScript thread, so slow requests do
 * not block the others.
 */
import * as http from 'node:http';

import { InvalidArgumentError, NeuMF } from '../lib/index';

export interface ServerOptions {
  /** Largest k a client may ask for. */
  maxK?: number;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function integerParam(q: URLSearchParams, name: string, fallback?: number): number {
  const raw = q.get(name);
  if (raw === null || raw === '') {
    if (fallback !== undefined) return fallback;
    throw new HttpError(400, `missing query parameter '${name}'`);
  }
  if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) throw new HttpError(400, `'${name}' must be an integer, got '${raw}'`);
  return Number(raw);
}

export function createRecommendServer(model: NeuMF, opts: ServerOptions = {}): http.Server {
  const maxK = opts.maxK ?? 1000;
  return http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const handle = async () => {
      if (req.method !== 'GET') throw new HttpError(405, 'only GET is supported');
      if (url.pathname === '/health') return send(res, 200, { ok: true, backend: model.backend });
      if (url.pathname !== '/recommend') throw new HttpError(404, `no such endpoint ${url.pathname}`);
      const user = integerParam(url.searchParams, 'user');
      const k = integerParam(url.searchParams, 'k', 10);
      if (k < 1 || k > maxK) throw new HttpError(400, `'k' must be in 1..${maxK}, got ${k}`);
      const excludeParam = url.searchParams.get('exclude_seen');
      if (excludeParam !== null && excludeParam !== 'true' && excludeParam !== 'false')
        throw new HttpError(400, `'exclude_seen' must be true or false, got '${excludeParam}'`);
      const excludeSeen = excludeParam !== 'false' && model.usesOriginalIds;
      try {
        const r = await model.recommend(user, { k, excludeSeen });
        send(res, 200, { user: r.user, items: r.items.map((item, i) => ({ item, score: r.scores[i] })) });
      } catch (err) {
        if (err instanceof InvalidArgumentError && err.option === 'user') throw new HttpError(404, err.message);
        throw err;
      }
    };
    handle().catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      send(res, status, { error: (err as Error).message });
    });
  });
}

async function main(argv: string[]): Promise<void> {
  const arg = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const checkpoint = arg('--checkpoint');
  if (!checkpoint) {
    process.stderr.write('usage: http-server --checkpoint FILE [--data DIR] [--port 8080] [--host 127.0.0.1] [--device auto|cpu|cuda]\n');
    process.exitCode = 2;
    return;
  }
  const model = await NeuMF.load(checkpoint, { data: arg('--data'), device: (arg('--device') as 'auto' | 'cpu' | 'cuda') ?? 'auto' });
  const server = createRecommendServer(model);
  const port = Number(arg('--port') ?? 8080), host = arg('--host') ?? '127.0.0.1';
  server.listen(port, host, () => process.stdout.write(`recommending on http://${host}:${port}/recommend?user=ID&k=10 (${model.backend})\n`));
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`http-server: ${(err as Error).message}\n`);
    process.exitCode = 1;
  });
}
