/**
 * `bench infer`: NeuMF inference throughput and latency, as NVIDIA's inference benchmark reports
 * them (batch sizes 1,024 to 1,048,576; mean, p90, p95 and p99 latency), for fp32/TF32/fp16 on the
 * GPU and fp32 on the CPU, with the (user, item) pairs already in the backend's memory; plus the
 * latency of one user's top-10 over the whole catalog. The model has ml-20m's shape (or a given
 * checkpoint's) with random weights: speed does not depend on their values.
 */
import * as fs from 'node:fs';

import { type BackendChoice, resolveBackend } from '../backend';
import { loadModel, paramCount, type ModelConfig } from '../model/checkpoint';
import { addon, type NativeModel } from '../native';
import { Rng } from '../util/random';
import { kernelSwitches } from '../util/switches';
import { latencyStats, type LatencyStats } from './stats';

export interface InferBenchOptions {
  backend: BackendChoice;
  batchSizes: number[];
  precisions?: ('fp32' | 'tf32' | 'fp16')[];
  checkpoint?: string;
  threads?: number;
  /** Seconds to spend per measurement (iterations adapt to it). */
  seconds: number;
  topkUsers: number;
  out?: string;
  print: (line: string) => void;
}

const ML20M: ModelConfig = { nUsers: 138493, nItems: 26744, factors: 64, layers: [256, 256, 128, 64], dropout: 0.5 };

function fmtMs(s: number): string {
  return (s * 1000).toFixed(3);
}

export async function benchInfer(b: InferBenchOptions): Promise<Record<string, unknown>> {
  const backend = resolveBackend(b.backend);
  if (backend.note) b.print(backend.note);
  let config = ML20M;
  let params: Float32Array;
  if (b.checkpoint) {
    const ck = loadModel(b.checkpoint);
    config = ck.config;
    params = ck.params;
  } else {
    params = new Rng(1).f32(paramCount(config), -0.05, 0.05);
  }
  const precisions = b.precisions ?? (backend.name === 'cuda' ? ['fp32', 'tf32', 'fp16'] : ['fp32']);
  const maxBatch = Math.max(...b.batchSizes);
  const results: Record<string, unknown>[] = [];
  let topk: (LatencyStats & { items: number }) | undefined;
  let device = '';
  b.print(`bench infer: ${config.nUsers} users x ${config.nItems} items, factors ${config.factors}, layers ${config.layers.join('-')}, ${backend.name}`);
  for (const precision of precisions) {
    if (precision === 'fp16' && backend.name !== 'cuda') continue;
    const model: NativeModel = await addon().createModel({
      backend: backend.name, device: 0, threads: b.threads ?? 0, model: config, params,
      half: precision === 'fp16', tf32: precision !== 'fp32', maxBatch,
    });
    try {
      device = model.info.device + (backend.name === 'cpu' ? `, ${model.info.threads} threads, ${model.info.blas}` : '');
      if (results.length === 0) b.print(`device: ${device}`);
      for (const batch of b.batchSizes) {
        const rng = new Rng(batch);
        const users = rng.u32s(batch, config.nUsers), items = rng.u32s(batch, config.nItems);
        const probe = await model.benchResident(users, items, 1);
        const iters = Math.max(3, Math.min(500, Math.ceil(b.seconds / Math.max(probe[0], 1e-6))));
        const st = latencyStats(await model.benchResident(users, items, iters));
        const throughput = batch / st.mean;
        results.push({ precision, batchSize: batch, throughput, latencyMs: { mean: st.mean * 1e3, p90: st.p90 * 1e3, p95: st.p95 * 1e3, p99: st.p99 * 1e3 }, iterations: st.n });
        b.print(
          `${precision.padEnd(4)}  batch ${String(batch).padStart(7)}  ${(throughput / 1e6).toFixed(2).padStart(8)}M samples/s  ` +
            `latency avg ${fmtMs(st.mean)} ms  p90 ${fmtMs(st.p90)}  p95 ${fmtMs(st.p95)}  p99 ${fmtMs(st.p99)}`,
        );
      }
      if (!topk && b.topkUsers > 0) {
        // One user's top-10 over the whole catalog, request by request, as a service would call it.
        const users = new Rng(99).u32s(b.topkUsers + 5, config.nUsers);
        const times: number[] = [];
        for (let i = 0; i < users.length; i++) {
          const t0 = process.hrtime.bigint();
          model.recommendSync(users.subarray(i, i + 1), { k: 10, excludeSeen: false });
          if (i >= 5) times.push(Number(process.hrtime.bigint() - t0) / 1e9);
        }
        topk = { ...latencyStats(times), items: config.nItems };
        b.print(
          `top-10 of ${config.nItems} items for one user (${precision === 'fp16' ? 'fp32' : precision} path): avg ${fmtMs(topk.mean)} ms  ` +
            `p50 ${fmtMs(topk.p50)}  p90 ${fmtMs(topk.p90)}  p99 ${fmtMs(topk.p99)}`,
        );
      }
    } finally {
      model.close();
    }
  }
  const figures = { benchmark: 'infer', backend: backend.name, device, switches: kernelSwitches(), config, results, topk };
  if (b.out) {
    fs.writeFileSync(b.out, JSON.stringify(figures, null, 2) + '\n');
    b.print(`figures written to ${b.out}`);
  }
  return figures;
}
