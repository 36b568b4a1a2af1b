/**
 * Short training runs for the self-test: on the CPU, the loss falls and HR@10 rises far above
 * random ranking (about 0.1 with 100 negatives); on a device, its per-epoch losses and HR@10
 * track the CPU backend's on the same data and seed.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Dataset } from '../data/dataset';
import { prepare } from '../data/prepare';
import { addon, type NativeTrainer } from '../native';
import { type Check, check, property } from './check';

export interface TrainingTrace {
  losses: number[];
  hrs: number[];
}

async function tinyDataset(): Promise<Dataset> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ncf-selftest-'));
  try {
    const r = await prepare('synthetic:tiny', { out: path.join(dir, 'data'), seed: 3 });
    return Dataset.load(r.dir);
  } finally {
    setImmediate(() => fs.rmSync(dir, { recursive: true, force: true }));
  }
}

export async function traceTraining(
  d: Dataset,
  backend: 'cpu' | 'cuda',
  opts: { epochs: number; amp?: boolean; tf32?: boolean; threads?: number },
): Promise<TrainingTrace> {
  const trainer: NativeTrainer = await addon().createTrainer({
    backend, device: 0, threads: opts.threads ?? 0, distributed: false,
    model: { nUsers: d.nUsers, nItems: d.nItems, factors: 16, layers: [64, 64, 32, 16], dropout: 0.5 },
    train: {
      batchSize: 1024, negatives: 4, verifyNegatives: false, lr: 0.0045, beta1: 0.25, beta2: 0.5, eps: 1e-8, seed: 42,
      amp: !!opts.amp, lossScale: 0, tf32: !!opts.tf32, validUsersPerBatch: 5000, topk: 10, validNegatives: 100,
    },
    data: d.nativeArrays(),
  });
  const trace: TrainingTrace = { losses: [], hrs: [] };
  try {
    for (let e = 0; e < opts.epochs; e++) {
      trace.losses.push((await trainer.runEpoch(e)).loss);
      trace.hrs.push((await trainer.evaluate()).hr);
    }
  } finally {
    trainer.close();
  }
  return trace;
}

export async function cpuTrainingChecks(threads?: number): Promise<Check[]> {
  const d = await tinyDataset();
  const t = await traceTraining(d, 'cpu', { epochs: 8, threads });
  const first = t.losses[0], last = t.losses[t.losses.length - 1];
  const best = Math.max(...t.hrs);
  return [
    property('training: loss falls', last < first * 0.9, `loss ${first.toFixed(4)} -> ${last.toFixed(4)}`),
    check('training: HR@10 far above random (0.1)', 'stat', Math.max(0, 0.35 - best), 0, `best hr@10 ${best.toFixed(3)}`),
  ];
}

export async function compareTrainingChecks(device: 'cuda'): Promise<Check[]> {
  const d = await tinyDataset();
  const epochs = 4;
  const c = await traceTraining(d, 'cpu', { epochs });
  const g = await traceTraining(d, device, { epochs });
  const ga = await traceTraining(d, device, { epochs, amp: true, tf32: true });
  const lossErr = Math.max(...c.losses.map((l, i) => Math.abs(l - g.losses[i]) / l));
  const hrErr = Math.max(...c.hrs.map((h, i) => Math.abs(h - g.hrs[i])));
  const ampErr = Math.max(...c.losses.map((l, i) => Math.abs(l - ga.losses[i]) / l));
  const ampHr = Math.max(...c.hrs.map((h, i) => Math.abs(h - ga.hrs[i])));
  const fmt = (t: TrainingTrace) => t.losses.map((l) => l.toFixed(4)).join(' ');
  return [
    check('training fp32: per-epoch loss tracks the CPU', 'fp32', lossErr, 1e-3, `cpu ${fmt(c)} | ${device} ${fmt(g)}`),
    check('training fp32: HR@10 tracks the CPU', 'fp32', hrErr, 0.02),
    check('training amp: per-epoch loss tracks the CPU', 'fp16', ampErr, 3e-2, `amp ${fmt(ga)}`),
    check('training amp: HR@10 tracks the CPU', 'fp16', ampHr, 0.05),
  ];
}
