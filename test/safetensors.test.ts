// safetensors files: round trip, PyTorch NeuMF tensor names, and damaged files refused with a
// message (never a crash or a silently wrong model).
import * as fs from 'node:fs';
import * as path from 'node:path';

import t from 'tap';

import { loadModel, saveModel } from '../lib/index';
import { readSafetensors, writeSafetensors } from '../lib/model/safetensors';
import { paramCount } from '../lib/model/checkpoint';
import { tmpdir } from './helpers';

const CONFIG = { nUsers: 5, nItems: 7, factors: 4, layers: [8, 6, 4], dropout: 0.5 };

t.test('model checkpoints round-trip with NeuMF state_dict names', async (t) => {
  const dir = tmpdir();
  const n = paramCount(CONFIG);
  t.equal(n, 5 * 4 + 7 * 4 + 5 * 4 + 7 * 4 + (6 * 8 + 6) + (4 * 6 + 4) + (4 + 4) + 1);
  const params = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
  const file = path.join(dir, 'm.safetensors');
  saveModel(file, params, { config: CONFIG, epoch: 3, hr: 0.5, dataDir: '/data/x' });
  const st = readSafetensors(file);
  t.same([...st.tensors.keys()], [
    'mf_user_embed.weight', 'mf_item_embed.weight', 'mlp_user_embed.weight', 'mlp_item_embed.weight',
    'mlp.0.weight', 'mlp.0.bias', 'mlp.1.weight', 'mlp.1.bias', 'final.weight', 'final.bias',
  ]);
  t.same(st.tensors.get('mlp.0.weight')!.shape, [6, 8], 'PyTorch Linear layout [out, in]');
  t.same(st.tensors.get('final.weight')!.shape, [1, 8]);
  const back = loadModel(file);
  t.same(back.config, CONFIG);
  t.same(Array.from(back.params), Array.from(params));
  t.equal(back.epoch, 3);
  t.equal(back.dataDir, '/data/x');
  const headerLen = Number(fs.readFileSync(file).readBigUInt64LE(0));
  t.equal((8 + headerLen) % 8, 0, 'tensor data starts 8-byte aligned');
});

t.test('damaged checkpoints are refused with a reason', async (t) => {
  const dir = tmpdir();
  const file = path.join(dir, 'm.safetensors');
  saveModel(file, new Float32Array(paramCount(CONFIG)), { config: CONFIG });
  const good = fs.readFileSync(file);
  const truncated = path.join(dir, 'trunc.safetensors');
  fs.writeFileSync(truncated, good.subarray(0, good.length - 10));
  t.throws(() => loadModel(truncated), /data offsets outside the file \(truncated\?\)/);
  const header = path.join(dir, 'header.safetensors');
  const junk = Buffer.from(good);
  junk.write('{{{{', 8);
  fs.writeFileSync(header, junk);
  t.throws(() => loadModel(header), /the header is not valid JSON/);
  const shape = path.join(dir, 'shape.safetensors');
  writeSafetensors(shape, [{ name: 'mf_user_embed.weight', shape: [5, 3], data: new Float32Array(15) }], { config: JSON.stringify(CONFIG) });
  t.throws(() => loadModel(shape), /missing tensor mf_item_embed\.weight|has shape \[5,3\], the model needs \[5,4\]/);
  t.throws(() => loadModel(path.join(dir, 'nope.safetensors')), /nope\.safetensors: no such file/);
});

t.test('a failed write leaves the previous file intact', async (t) => {
  const dir = tmpdir();
  const file = path.join(dir, 'keep.safetensors');
  writeSafetensors(file, [{ name: 'a', shape: [2], data: Float32Array.from([1, 2]) }]);
  const before = fs.readFileSync(file);
  t.throws(() => writeSafetensors(file, [{ name: 'a', shape: [3], data: Float32Array.from([1, 2]) }]), /tensor a has 2 values for shape \[3\]/);
  t.same(fs.readFileSync(file), before);
  t.same(fs.readdirSync(dir), ['keep.safetensors'], 'no temporary file left behind');
});
