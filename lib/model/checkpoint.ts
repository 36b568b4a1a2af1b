/**
 * NeuMF checkpoints. The model file holds the tensors of NVIDIA's PyTorch NeuMF state_dict under
 * the same names (so `model.load_state_dict(safetensors.torch.load_file(path))` works) and, in
 * its metadata, the model configuration, the dataset it was trained on and the training state.
 * The optimizer state for --resume goes to a sibling file `<name>.optim.safetensors`.
 */
import * as path from 'node:path';

import { CheckpointError, fromNative } from '../errors';
import { addon, type TensorLayout } from '../native';
import { readSafetensors, type SafetensorsFile, writeSafetensors } from './safetensors';

export interface ModelConfig {
  nUsers: number;
  nItems: number;
  factors: number;
  layers: number[];
  dropout: number;
}

export interface CheckpointInfo {
  config: ModelConfig;
  epoch?: number;
  hr?: number;
  ndcg?: number;
  seed?: number;
  /** The prepared dataset the model was trained on. */
  dataDir?: string;
  dataName?: string;
  /** Identifies the dataset (its users, items and counts) so a mismatch is caught at load time. */
  dataSignature?: string;
  topk?: number;
}

/** The layout of the flat parameter buffer for a config (computed by the native core). */
export function paramLayout(c: ModelConfig): TensorLayout[] {
  try {
    return addon().paramLayout(c);
  } catch (err) {
    throw fromNative(err);
  }
}

export function paramCount(c: ModelConfig): number {
  const l = paramLayout(c);
  return l[l.length - 1].offset + l[l.length - 1].count;
}

export function optimizerPath(modelPath: string): string {
  return modelPath.replace(/\.safetensors$/, '') + '.optim.safetensors';
}

export function saveModel(file: string, params: Float32Array, info: CheckpointInfo): void {
  const layout = paramLayout(info.config);
  const tensors = layout.map((t) => ({ name: t.name, shape: t.shape, data: params.subarray(t.offset, t.offset + t.count) }));
  const meta: Record<string, string> = {
    format: 'ncf-native-neumf',
    config: JSON.stringify(info.config),
  };
  for (const k of ['epoch', 'hr', 'ndcg', 'seed', 'dataDir', 'dataName', 'dataSignature', 'topk'] as const)
    if (info[k] !== undefined) meta[k] = String(info[k]);
  writeSafetensors(file, tensors, meta);
}

function parseConfig(file: string, st: SafetensorsFile): ModelConfig {
  if (st.metadata.config) {
    try {
      const c = JSON.parse(st.metadata.config) as ModelConfig;
      if (Number.isInteger(c.nUsers) && Number.isInteger(c.nItems) && Number.isInteger(c.factors) && Array.isArray(c.layers)) return c;
    } catch {
      /* fall through to inference */
    }
  }
  // A checkpoint written elsewhere (e.g. from PyTorch): infer the configuration from the shapes.
  const get = (n: string) => {
    const t = st.tensors.get(n);
    if (!t) throw new CheckpointError(file, `missing tensor ${n}: not a NeuMF checkpoint`);
    return t.shape;
  };
  const mf = get('mf_user_embed.weight');
  const layers = [get('mlp_user_embed.weight')[1] * 2];
  for (let i = 0; st.tensors.has(`mlp.${i}.weight`); i++) layers.push(get(`mlp.${i}.weight`)[0]);
  return { nUsers: mf[0], nItems: get('mf_item_embed.weight')[0], factors: mf[1], layers, dropout: 0.5 };
}

export interface LoadedCheckpoint extends CheckpointInfo {
  params: Float32Array;
  file: string;
}

/** Reads a model checkpoint, checking every tensor against the configuration. */
export function loadModel(file: string): LoadedCheckpoint {
  const st = readSafetensors(file);
  const config = parseConfig(file, st);
  const layout = paramLayout(config);
  const total = layout[layout.length - 1].offset + layout[layout.length - 1].count;
  const params = new Float32Array(total);
  for (const t of layout) {
    const have = st.tensors.get(t.name);
    if (!have) throw new CheckpointError(file, `missing tensor ${t.name}`);
    if (have.shape.join('x') !== t.shape.join('x'))
      throw new CheckpointError(file, `tensor ${t.name} has shape [${have.shape}], the model needs [${t.shape}]`);
    params.set(have.data, t.offset);
  }
  const num = (k: string) => (st.metadata[k] !== undefined ? Number(st.metadata[k]) : undefined);
  return {
    file: path.resolve(file),
    params,
    config,
    epoch: num('epoch'),
    hr: num('hr'),
    ndcg: num('ndcg'),
    seed: num('seed'),
    topk: num('topk'),
    dataDir: st.metadata.dataDir,
    dataName: st.metadata.dataName,
    dataSignature: st.metadata.dataSignature,
  };
}

export interface OptimizerState {
  m: Float32Array;
  v: Float32Array;
  step: number;
  epoch: number;
  lossScale?: number;
}

export function saveOptimizer(file: string, s: OptimizerState): void {
  writeSafetensors(
    file,
    [
      { name: 'exp_avg', shape: [s.m.length], data: s.m },
      { name: 'exp_avg_sq', shape: [s.v.length], data: s.v },
    ],
    { format: 'ncf-native-adam', step: String(s.step), epoch: String(s.epoch) },
  );
}

export function loadOptimizer(file: string, expected: number): OptimizerState {
  const st = readSafetensors(file);
  const m = st.tensors.get('exp_avg'), v = st.tensors.get('exp_avg_sq');
  if (!m || !v || st.metadata.format !== 'ncf-native-adam') throw new CheckpointError(file, 'not an ncf-native optimizer state');
  if (m.data.length !== expected || v.data.length !== expected)
    throw new CheckpointError(file, `holds ${m.data.length} moments, the model has ${expected} parameters`);
  return { m: m.data, v: v.data, step: Number(st.metadata.step ?? 0), epoch: Number(st.metadata.epoch ?? -1) };
}
