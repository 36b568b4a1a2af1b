/**
 * `bench train` and `bench eval`: throughput of training epochs and of evaluation on a dataset
 * (by default synthetic data shaped like ml-20m), as one line per figure and a JSON file.
 * The first epoch is a warm-up and is reported but left out of the mean.
 */
import * as fs from 'node:fs';

import { resolveBackend, type BackendChoice } from '../backend';
import { detectRanks } from '../dist/ranks';
import { resolveTrainOptions } from '../train/options';
import { autotuned, buildTrainer, checkBatch } from '../train/train';
import { loadTrainingData } from '../train/data-source';
import { gib, millions } from './stats';
import { formatSwitches, kernelSwitches } from '../util/switches';

export interface TrainBenchOptions {
  data: string;
  amp: boolean;
  epochs: number;
  batchSize: number;
  backend: BackendChoice;
  threads?: number;
  seed: number;
  negTrick: boolean;
  tf32: boolean;
  /** Training steps as CUDA Graphs (bench train --xla). */
  cudaGraphs?: boolean;
  /** Kernel forms timed on the first steps and batches (bench --autotune); they fall in the warm-up. */
  autotune?: boolean;
  evalRepeats: number;
  out?: string;
  what: 'train' | 'eval';
  print: (line: string) => void;
}

export interface BenchFigures {
  [k: string]: unknown;
}

export async function benchTrain(b: TrainBenchOptions): Promise<BenchFigures> {
  const resolved = resolveTrainOptions({
    data: b.data, amp: b.amp, epochs: b.epochs, batchSize: b.batchSize, backend: b.backend, threads: b.threads,
    seed: b.seed, negTrick: b.negTrick, tf32: b.tf32, cudaGraphs: b.cudaGraphs, autotune: b.autotune,
  });
  const ranks = detectRanks();
  const backend = resolveBackend(resolved.backend);
  if (backend.note) b.print(backend.note);
  const dataset = await loadTrainingData(resolved.data!, ranks, {}, () => undefined);
  // Evaluation takes no training step: its trainer's batch (the training arrays it allocates) need
  // not exceed one epoch, and is no reason to refuse a small dataset.
  const perEpoch = dataset.nTrain * (1 + resolved.negativeSamples);
  const o = b.what === 'eval' ? { ...resolved, batchSize: Math.min(resolved.batchSize, perEpoch) } : resolved;
  if (b.what === 'train') checkBatch(o, dataset);
  const config = { nUsers: dataset.nUsers, nItems: dataset.nItems, factors: o.factors, layers: o.layers, dropout: o.dropout };
  const trainer = await buildTrainer(o, dataset, config, backend.name, ranks, b.seed);
  const info = trainer.info;
  const amp = b.amp && info.backend === 'cuda';
  const switches = kernelSwitches();
  const figures: BenchFigures = {
    benchmark: b.what, dataset: dataset.meta.name, backend: info.backend, device: info.device, threads: info.threads,
    amp, tf32: info.tf32, kernels: info.kernels, switches, batchSize: o.batchSize, samplesPerEpoch: info.samplesPerEpoch,
    ranks: info.worldSize,
  };
  const root = info.rank === 0;
  const print = (s: string) => root && b.print(s);
  print(`bench ${b.what}: ${dataset.meta.name} (${dataset.nTrain} positives), ${info.backend} (${info.device}), ` +
    `${amp ? 'amp (fp16)' : info.backend === 'cuda' ? (info.tf32 ? 'tf32' : 'fp32') : 'fp32'}, batch ${o.batchSize}` +
    `${info.backend === 'cuda' ? `, ${info.kernels}` : ''}` +
    `${info.worldSize > 1 ? `, ${info.worldSize} ranks` : ''}` +
    `${Object.keys(switches).length ? `; switches ${formatSwitches(switches)}` : ''}`);
  try {
    if (b.what === 'train') {
      const perEpoch: { seconds: number; samplesPerSecond: number; loss: number }[] = [];
      for (let e = 0; e < b.epochs; e++) {
        const st = await trainer.runEpoch(e);
        const rate = st.samples / st.seconds;
        perEpoch.push({ seconds: st.seconds, samplesPerSecond: rate, loss: st.loss });
        print(`epoch ${e + 1}: ${millions(st.samples)} samples in ${st.seconds.toFixed(3)} s = ${millions(rate)} samples/s, loss ${st.loss.toFixed(4)}${e === 0 && b.epochs > 1 ? ' (warm-up)' : ''}`);
      }
      const warm = perEpoch.length > 1 ? perEpoch.slice(1) : perEpoch;
      const meanRate = warm.reduce((a, x) => a + x.samplesPerSecond, 0) / warm.length;
      const meanTime = warm.reduce((a, x) => a + x.seconds, 0) / warm.length;
      Object.assign(figures, { epochs: perEpoch, trainSamplesPerSecond: meanRate, epochSeconds: meanTime });
      print(`train throughput: ${millions(meanRate)} samples/s`);
      print(`epoch time: ${meanTime.toFixed(3)} s`);
    } else {
      const runs: { seconds: number; samplesPerSecond: number; hr: number }[] = [];
      for (let r = 0; r < b.evalRepeats; r++) {
        const ev = await trainer.evaluate();
        const samples = ev.users * (1 + o.validNegative);
        runs.push({ seconds: ev.seconds, samplesPerSecond: samples / ev.seconds, hr: ev.hr });
        print(`eval ${r + 1}: ${millions(samples)} samples in ${ev.seconds.toFixed(4)} s = ${millions(samples / ev.seconds)} samples/s`);
      }
      const warm = runs.length > 1 ? runs.slice(1) : runs;
      const meanRate = warm.reduce((a, x) => a + x.samplesPerSecond, 0) / warm.length;
      Object.assign(figures, { evals: runs, evalSamplesPerSecond: meanRate, evalSeconds: warm.reduce((a, x) => a + x.seconds, 0) / warm.length });
      print(`eval throughput: ${millions(meanRate)} samples/s`);
    }
    const { autotune } = autotuned(trainer);
    if (autotune) {
      figures.autotune = autotune;
      for (const line of autotune) print(`autotune: ${line}`);
    }
    const peak = trainer.info.peakMemory;
    figures.peakMemoryBytes = peak;
    print(`peak memory: ${gib(peak)}${info.backend === 'cpu' ? ' (host arrays)' : ` allocated of ${gib(info.deviceMemory)} on the GPU`}`);
    if (info.backend === 'cuda') {
      figures.devicePeakMemoryBytes = trainer.info.devicePeakMemory;
      print(`peak device memory in use: ${gib(trainer.info.devicePeakMemory)} (with the CUDA context, cuBLASLt and any other process)`);
    }
  } finally {
    trainer.close();
  }
  if (root && b.out) {
    fs.writeFileSync(b.out, JSON.stringify(figures, null, 2) + '\n');
    print(`figures written to ${b.out}`);
  }
  return figures;
}
