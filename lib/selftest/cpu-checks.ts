/**
 * Checks of the CPU backend's ops against independent JavaScript references: known-answer
 * vectors, hand-computed values, float64 loops and central finite differences of the native
 * forward ops (for the backward ops).
 */
import type { NativeOpRunner } from '../native';
import { type Check, check, property } from './check';
import { affine, bce, sigmoid } from './reference';
import { centralDifference, exactlyEqual, Rng, relError } from '../util/random';
import { paramCount, paramLayout } from '../model/checkpoint';

/** Published Philox4x32-10 test vectors (Random123's kat_vectors). */
export function philoxKat(r: NativeOpRunner): Check {
  const cases: [number[], number[], number[]][] = [
    [[0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]],
    [[0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]],
    [[0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]],
  ];
  const ok = cases.every(([ctr, key, want]) => {
    const got = r.philox({ keyLo: key[0], keyHi: key[1], counters: Uint32Array.from(ctr) });
    return want.every((w, i) => got[i] === w);
  });
  return property('philox4x32-10 known answers', ok);
}

/** A small CSR dataset: user u has items drawn without repetition, sorted. */
export function tinyCsr(rng: Rng, users: number, items: number, perUser: number): { offsets: Uint32Array; items: Uint32Array } {
  const offsets = new Uint32Array(users + 1);
  const all: number[] = [];
  for (let u = 0; u < users; u++) {
    const set = new Set<number>();
    const want = 1 + (u % perUser);
    while (set.size < want) set.add(rng.below(items));
    all.push(...[...set].sort((a, b) => a - b));
    offsets[u + 1] = all.length;
  }
  return { offsets, items: Uint32Array.from(all) };
}

export function sampleChecks(r: NativeOpRunner): Check[] {
  const rng = new Rng(11);
  const nItems = 40;
  const csr = tinyCsr(rng, 25, nItems, 12);
  const P = csr.items.length, neg = 4, N = P * (1 + neg);
  const base = { ...csr, nItems, negatives: neg, seed: 5, epoch: 3 };
  const all = r.sampleBatch({ ...base, verify: false, pos0: 0, n: N });
  const counts = new Map<string, number>();
  for (let i = 0; i < N; i++) if (all.labels[i] === 1) counts.set(`${all.users[i]}:${all.items[i]}`, (counts.get(`${all.users[i]}:${all.items[i]}`) ?? 0) + 1);
  let positivesOnce = counts.size === P && [...counts.values()].every((c) => c === 1);
  for (let u = 0; u + 1 < csr.offsets.length; u++)
    for (let j = csr.offsets[u]; j < csr.offsets[u + 1]; j++) positivesOnce &&= counts.get(`${u}:${csr.items[j]}`) === 1;
  // Each user appears (1 + neg) times per positive it has.
  const perUser = new Array<number>(25).fill(0);
  for (let i = 0; i < N; i++) perUser[all.users[i]]++;
  const usersOk = perUser.every((c, u) => c === (csr.offsets[u + 1] - csr.offsets[u]) * (1 + neg));
  const a = inPositionOrder(r.sampleBatch({ ...base, verify: false, pos0: 7, n: 30 }));
  const b = inPositionOrder(r.sampleBatch({ ...base, verify: false, pos0: 7 + 13, n: 17 }));
  const split = b.items.every((v, i) => v === a.items[13 + i]) && b.users.every((v, i) => v === a.users[13 + i]);
  // Rows grouped by user (users ascending), a user's rows in position order, positions a permutation.
  const seen = new Set(all.positions);
  let grouped = seen.size === N && all.positions.every((p) => p < N);
  for (let i = 1; i < N; i++)
    grouped &&= all.users[i - 1] < all.users[i] || (all.users[i - 1] === all.users[i] && all.positions[i - 1] < all.positions[i]);
  const other = inPositionOrder(r.sampleBatch({ ...base, epoch: 4, verify: false, pos0: 0, n: N }));
  const reshuffled = other.users.some((u, i) => u !== inPositionOrder(all).users[i]);
  const verified = r.sampleBatch({ ...base, verify: true, pos0: 0, n: N });
  // Negatives whose item is among their user's training items.
  const seenNegatives = (b: { users: Uint32Array; items: Uint32Array; labels: Float32Array }) => {
    let hits = 0;
    for (let i = 0; i < b.labels.length; i++) {
      if (b.labels[i] === 1) continue;
      const u = b.users[i];
      for (let j = csr.offsets[u]; j < csr.offsets[u + 1]; j++) if (csr.items[j] === b.items[i]) hits++;
    }
    return hits;
  };
  const clean = seenNegatives(verified) === 0;
  const unverifiedHits = seenNegatives(all);
  return [
    property('sample_batch: an epoch holds every positive once', positivesOnce),
    property('sample_batch: 4 negatives per positive, same user', usersOk),
    property('sample_batch: batches are slices of one epoch order', split),
    property('sample_batch: rows grouped by user, in position order within a user', grouped),
    property('sample_batch: a new epoch reshuffles', reshuffled),
    property('sample_batch: --no-neg-trick negatives are unseen items', clean, `${unverifiedHits} seen items among shortcut negatives`),
  ];
}

/** A grouped batch's rows put back in position order. */
export function inPositionOrder(b: { users: Uint32Array; items: Uint32Array; labels: Float32Array; positions: Uint32Array }) {
  const users = new Uint32Array(b.users.length), items = new Uint32Array(b.users.length), labels = new Float32Array(b.users.length);
  b.positions.forEach((p, r) => {
    users[p] = b.users[r];
    items[p] = b.items[r];
    labels[p] = b.labels[r];
  });
  return { users, items, labels };
}

export function embedChecks(r: NativeOpRunner): Check[] {
  const rng = new Rng(21);
  const U = 9, I = 7, h = 3, n = 20;
  const mlpUser = rng.f32(U * h), mlpItem = rng.f32(I * h);
  const users = rng.u32s(n, U), items = rng.u32s(n, I);
  const mlpIn = r.embedForward({ mlpUser, mlpItem, half: h, users, items });
  const want = new Float32Array(n * 2 * h);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < h; j++) {
      want[i * 2 * h + j] = mlpUser[users[i] * h + j];
      want[i * 2 * h + h + j] = mlpItem[items[i] * h + j];
    }
  const dMlpIn = rng.f32(n * 2 * h);
  const bwd = r.embedBackward({ mlpUser, mlpItem, half: h, users, items, dMlpIn });
  const gUser = new Float64Array(U * h), gItem = new Float64Array(I * h);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < h; j++) {
      gUser[users[i] * h + j] += dMlpIn[i * 2 * h + j];
      gItem[items[i] * h + j] += dMlpIn[i * 2 * h + h + j];
    }
  return [
    check('embed_forward (gather, concat)', 'exact', relError(mlpIn, want, 1), 0),
    check('embed_backward (scatter-add)', 'fp32', Math.max(relError(bwd.mlpUser, gUser), relError(bwd.mlpItem, gItem)), 1e-5),
  ];
}

/** Inputs for a layer whose pre-activations all stay at least `margin` away from 0. */
function layerInputs(rng: Rng, n: number, inW: number, out: number, margin: number) {
  for (;;) {
    const x = rng.f32(n * inW), w = rng.f32(out * inW, -0.5, 0.5), b = rng.f32(out, -0.5, 0.5);
    const z = affine(x, w, b, n, inW, out);
    if (z.every((v) => Math.abs(v) > margin)) return { x, w, b, z };
  }
}

export function linearChecks(r: NativeOpRunner): Check[] {
  const rng = new Rng(31);
  const n = 5, inW = 6, out = 4;
  const { x, w, b, z } = layerInputs(rng, n, inW, out, 0.02);
  const args = { w, b, in: inW, out };
  const y = r.linearForward({ ...args, x });
  const relu = z.map((v) => Math.max(v, 0));
  const checks: Check[] = [check('linear_forward (GEMM + bias + ReLU)', 'fp32', relError(y, relu), 1e-6)];

  // Dropout: kept values are scaled copies, about p of them are dropped, and the mask belongs to
  // the sample's position in the epoch, not to the row of the batch.
  const big = { n: 400, in: 16, out: 24 };
  const bx = rng.f32(big.n * big.in), bw = rng.f32(big.out * big.in), bb = rng.f32(big.out, 0.5, 1.5);
  const bz = affine(bx, bw, bb, big.n, big.in, big.out);
  const drop = { dropout: 0.5, seed: 3, layer: 1, epoch: 2 };
  const yd = r.linearForward({ w: bw, b: bb, in: big.in, out: big.out, x: bx, ...drop, pos0: 100 });
  let scaled = true, positive = 0, dropped = 0;
  for (let i = 0; i < yd.length; i++) {
    const want = Math.max(bz[i], 0);
    if (want <= 0) continue;
    positive++;
    if (yd[i] === 0) dropped++;
    else if (Math.abs(yd[i] - 2 * want) > 1e-5 * Math.max(1, want)) scaled = false;
  }
  const shifted = r.linearForward({ w: bw, b: bb, in: big.in, out: big.out, x: bx.subarray(big.in), ...drop, pos0: 101 });
  const sameMask = shifted.every((v, i) => (v === 0) === (yd[big.out + i] === 0));
  const rate = dropped / positive;
  const bits = r.liveUnits({ w: bw, b: bb, in: big.in, out: big.out, x: bx, ...drop, pos0: 100 });
  checks.push(
    property('dropout: kept values scaled by 1/(1-p)', scaled),
    check('dropout: drop rate near p = 0.5', 'stat', Math.abs(rate - 0.5), 0.05, `${(rate * 100).toFixed(1)}% dropped`),
    property('dropout: mask follows the epoch position', sameMask),
    property('linear_forward: live-unit mask = (y > 0), 128-bit rows', exactlyEqual(bits, liveBits(yd, big.n, big.out))),
  );

  // Backward: against the definition, and against finite differences of the forward op for
  // L = sum(y * R).
  const R = rng.f32(n * out);
  const bk = r.linearBackward({ ...args, x, y, dy: R.slice() });
  const dz = new Float64Array(n * out);
  for (let i = 0; i < n * out; i++) dz[i] = y[i] > 0 ? R[i] : 0;
  const gw = new Float64Array(out * inW), gb = new Float64Array(out), dx = new Float64Array(n * inW);
  for (let i = 0; i < n; i++)
    for (let o = 0; o < out; o++) {
      gb[o] += dz[i * out + o];
      for (let k = 0; k < inW; k++) {
        gw[o * inW + k] += dz[i * out + o] * x[i * inW + k];
        dx[i * inW + k] += dz[i * out + o] * w[o * inW + k];
      }
    }
  checks.push(check('linear_backward vs definition', 'fp32', Math.max(relError(bk.gradW, gw), relError(bk.gradB, gb), relError(bk.dx!, dx)), 1e-5));
  const loss = (xx: Float32Array, ww: Float32Array, bb2: Float32Array) => {
    const yy = r.linearForward({ w: ww, b: bb2, in: inW, out, x: xx });
    let s = 0;
    for (let i = 0; i < yy.length; i++) s += yy[i] * R[i];
    return s;
  };
  // Pre-activations are at least 0.02 from the ReLU kink, so a step of 1e-3 never crosses it.
  const fd = (buf: Float32Array, i: number) => centralDifference(buf, i, () => loss(x, w, b), 1e-3);
  const numW = Array.from({ length: w.length }, (_, i) => fd(w, i));
  const numB = Array.from({ length: b.length }, (_, i) => fd(b, i));
  const numX = Array.from({ length: x.length }, (_, i) => fd(x, i));
  checks.push(check('linear_backward vs finite differences', 'fp32', Math.max(relError(bk.gradW, numW, 1e-2), relError(bk.gradB, numB, 1e-2), relError(bk.dx!, numX, 1e-2)), 2e-3));

  // A weight gradient over more rows than the CPU's GEMM takes in one reduction chunk (2048): it
  // sums the chunks' partial products (5000 rows: two whole chunks and a part).
  const long = { n: 5000, in: 24, out: 16 };
  const lx = rng.f32(long.n * long.in), ldy = rng.f32(long.n * long.out);
  const ly = ldy.map((_, i) => (i % 3 ? 1 : 0));  // the layer's output: where it is 0, dz is 0
  const lg = r.linearBackward({ w: rng.f32(long.out * long.in), b: new Float32Array(long.out), in: long.in, out: long.out, x: lx, y: ly, dy: ldy, wantDx: false }).gradW;
  const wantLg = new Float64Array(long.out * long.in);
  for (let i = 0; i < long.n; i++)
    for (let o = 0; o < long.out; o++) {
      const g = ly[i * long.out + o] > 0 ? ldy[i * long.out + o] : 0;
      for (let k = 0; k < long.in; k++) wantLg[o * long.in + k] += g * lx[i * long.in + k];
    }
  checks.push(check('linear_backward over 5000 rows (the weight gradient in reduction chunks) vs definition', 'fp32', relError(lg, wantLg), 1e-5));

  // Through the layer below (its output x clipped at 0, dropout's scale 2): dx masked and scaled,
  // and its bias gradient, with the live units from the mask or from y.
  const yBelow = x.map((v) => Math.max(v, 0));
  const wantDx = dx.map((v, i) => (yBelow[i] > 0 ? 2 * v : 0));
  const wantGb = new Float64Array(inW);
  wantDx.forEach((v, i) => (wantGb[i % inW] += v));
  for (const mask of [liveBits(yBelow, n, inW), undefined]) {
    const bb3 = r.linearBackward({ ...args, x, y, dy: R.slice(), below: { y: yBelow, dropout: 0.5, seed: 1, mask } });
    checks.push(check(`linear_backward through the layer below (${mask ? 'mask' : 'y > 0'})`, 'fp32', Math.max(relError(bb3.dx!, wantDx), relError(bb3.gradBBelow!, wantGb)), 1e-5));
  }
  return checks;
}

/** The live-unit mask of y [rows x cols] in UnitMask's layout (for checking the backends'). */
export function liveBits(y: Float32Array, rows: number, cols: number): Uint8Array {
  const ld = Math.ceil(cols / 128) * 128;
  const bits = new Uint8Array((rows * ld) / 8);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < cols; j++) if (y[r * cols + j] > 0) bits[(r * ld + j) >> 3] |= 1 << ((r * ld + j) & 7);
  return bits;
}

export function headChecks(r: NativeOpRunner): Check[] {
  const rng = new Rng(41);
  const n = 6, f = 3, m = 4, U = 4, I = 5;
  // Both ops form the GMF product from the table rows; users 1 and items 2 repeat, so the table
  // gradients sum several rows.
  const mfUser = rng.f32(U * f), mfItem = rng.f32(I * f);
  const users = Uint32Array.from([1, 0, 1, 3, 2, 1]), items = Uint32Array.from([2, 2, 4, 0, 2, 1]);
  const mlp = rng.f32(n * m), w = rng.f32(f + m), b = rng.f32(1);
  const labels = Float32Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 1 : 0));
  const scale = 1 / n;
  const args = { mfUser, mfItem, users, items, mlp, w, b, factors: f };
  const logits = r.headForward(args);
  const gmf = (i: number, j: number) => Math.fround(mfUser[users[i] * f + j] * mfItem[items[i] * f + j]);
  const z = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[0];
    for (let j = 0; j < f; j++) s += w[j] * gmf(i, j);
    for (let j = 0; j < m; j++) s += w[f + j] * mlp[i * m + j];
    z[i] = s;
  }
  const out = r.headForwardBackward({ ...args, labels, gradScale: scale });
  let lossSum = 0;
  const gw = new Float64Array(f + m), dM = new Float64Array(n * m), gU = new Float64Array(U * f), gI = new Float64Array(I * f);
  let gb = 0;
  for (let i = 0; i < n; i++) {
    lossSum += bce(z[i], labels[i]);
    const g = (sigmoid(z[i]) - labels[i]) * scale;
    gb += g;
    for (let j = 0; j < f; j++) {
      gw[j] += g * gmf(i, j);
      gU[users[i] * f + j] += g * w[j] * mfItem[items[i] * f + j];
      gI[items[i] * f + j] += g * w[j] * mfUser[users[i] * f + j];
    }
    for (let j = 0; j < m; j++) {
      gw[f + j] += g * mlp[i * m + j];
      dM[i * m + j] = g * w[f + j];
    }
  }
  const meanLoss = () => r.headForwardBackward({ ...args, labels, gradScale: scale }).lossSum * scale;
  const fd = (buf: Float32Array, i: number) => centralDifference(buf, i, meanLoss, 1e-2);
  const numW = Array.from({ length: w.length }, (_, i) => fd(w, i));
  const numU = Array.from({ length: mfUser.length }, (_, i) => fd(mfUser, i));
  const numI = Array.from({ length: mfItem.length }, (_, i) => fd(mfItem, i));
  const numM = Array.from({ length: mlp.length }, (_, i) => fd(mlp, i));
  // Through the last hidden layer: mlp is its output before dropout, which the op applies with
  // linear_forward's draws (a layer of zero weights and bias 1 shows them: 2 where kept), then
  // takes the gradient back through it and the ReLU (zero where mlp <= 0 or dropped, else x2).
  const mlpRelu = mlp.map((v) => Math.max(v, 0));
  const drop = { dropout: 0.5, seed: 2, layer: 1, epoch: 3, pos0: 40 };
  const kept = r.linearForward({ w: new Float32Array(m * 2), b: new Float32Array(m).fill(1), in: 2, out: m, x: new Float32Array(n * 2), ...drop });
  const mlpDropped = mlpRelu.map((v, i) => v * kept[i]);
  const thru = r.headForwardBackward({ ...args, mlp: mlpRelu, labels, gradScale: scale, below: drop });
  const plain = r.headForwardBackward({ ...args, mlp: mlpDropped, labels, gradScale: scale });
  const wantThru = plain.dMlp.map((v, i) => (mlpDropped[i] > 0 ? 2 * v : 0));
  const wantGbThru = new Float64Array(m);
  wantThru.forEach((v, i) => (wantGbThru[i % m] += v));
  const thruErr = Math.max(relError(thru.dMlp, wantThru), relError(thru.gradBBelow!, wantGbThru), relError(thru.gradW, plain.gradW),
    Math.abs(thru.lossSum - plain.lossSum) / plain.lossSum);
  return [
    check('head_forward_backward through the last hidden layer (its dropout applied here)', 'fp32', thruErr, 1e-6),
    check('head_forward (output unit)', 'fp32', relError(logits, z), 1e-6),
    check('head_forward_backward: BCE loss', 'fp32', Math.abs(out.lossSum - lossSum) / lossSum, 1e-6),
    check('head_forward_backward vs definition', 'fp32', Math.max(relError(out.gradW, gw), relError(out.gradB, [gb]), relError(out.dMlp, dM), relError(out.gradMfUser, gU), relError(out.gradMfItem, gI)), 1e-5),
    check('head_forward_backward vs finite differences', 'fp32', Math.max(relError(out.gradW, numW, 1e-2), relError(out.dMlp, numM, 1e-2), relError(out.gradMfUser, numU, 1e-2), relError(out.gradMfItem, numI, 1e-2)), 2e-3),
  ];
}

export function adamChecks(r: NativeOpRunner): Check[] {
  const rng = new Rng(51);
  const n = 64;
  const params = rng.f32(n), grads = rng.f32(n, -0.1, 0.1), m = rng.f32(n, -0.01, 0.01), v = rng.f32(n, 0, 0.01);
  const hp = { lr: 0.0045, beta1: 0.25, beta2: 0.5, eps: 1e-8, step: 3 };
  const out = r.adamStep({ params, grads, m, v, ...hp });
  const wantP = new Float64Array(n), wantM = new Float64Array(n), wantV = new Float64Array(n);
  const bc1 = 1 - hp.beta1 ** hp.step, bc2 = 1 - hp.beta2 ** hp.step;
  for (let i = 0; i < n; i++) {
    wantM[i] = hp.beta1 * m[i] + (1 - hp.beta1) * grads[i];
    wantV[i] = hp.beta2 * v[i] + (1 - hp.beta2) * grads[i] * grads[i];
    wantP[i] = params[i] - (hp.lr / bc1) * wantM[i] / (Math.sqrt(wantV[i]) / Math.sqrt(bc2) + hp.eps);
  }
  const mirrored = r.adamStep({ params, grads, m, v, ...hp, mirror: Uint32Array.from([10, 40]) });
  // Loss-scaled gradients (x 1024, exact in fp32) unscaled as they are read: the same update.
  const scaled = r.adamStep({ params, grads: grads.map((g) => g * 1024), m, v, ...hp, lossScale: 1024 });
  return [
    property('adam_step: loss-scaled gradients, unscaled as read = the update from unscaled ones',
      exactlyEqual(scaled.params, out.params) && exactlyEqual(scaled.m, out.m) && exactlyEqual(scaled.v, out.v)),
    check('adam_step (PyTorch form)', 'fp32', Math.max(relError(out.params, wantP), relError(out.m, wantM), relError(out.v, wantV)), 1e-6),
    property("adam_step's fp16 mirror: the updated parameters 10..39 in fp16", exactlyEqual(mirrored.half!, r.halfRoundTrip(out.params.subarray(10, 40)))),
  ];
}

/** Hand-made lists with known ranks: duplicates, ties and a miss. */
export function evalChecks(r: NativeOpRunner): Check[] {
  const L = 6, k = 3;
  // user 0: positive 0.5; negatives 0.9, 0.5 (tie: counts ahead), 0.1, 0.2, 0.95 (a duplicate, masked) -> rank 2, hit
  // user 1: positive 0.8; all negatives lower -> rank 0
  // user 2: positive 0.1; four negatives higher -> rank 4 (>= k: miss)
  const logits = Float32Array.from([0.5, 0.9, 0.5, 0.1, 0.2, 0.95, 0.8, 0.1, 0.2, 0.3, 0.4, 0.5, 0.1, 0.2, 0.3, 0.4, 0.5, 0.0]);
  const masked = Uint8Array.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const res = r.evalRank({ logits, masked, nUsers: 3, listLen: L, k });
  const dcg = 1 / Math.log2(2 + 2) + 1 / Math.log2(0 + 2);
  return [
    check('eval_rank: hits@3 (duplicate masked, tie counts against)', 'exact', Math.abs(res.hits - 2), 0),
    check('eval_rank: DCG', 'fp64', Math.abs(res.dcg - dcg), 1e-12),
  ];
}

export function halfChecks(r: NativeOpRunner): Check[] {
  const x = Float32Array.from([1, -2.5, 65504, 65520, 1e-8, 6e-8, 0.1, 3e-5, NaN, -Infinity]);
  const want = [1, -2.5, 65504, Infinity, 0, 5.960464477539063e-8, 0.0999755859375, 2.9981136322021484e-5, NaN, -Infinity];
  const got = r.halfRoundTrip(x);
  const ok = want.every((w, i) => Object.is(got[i], w) || (Number.isNaN(w) && Number.isNaN(got[i])));
  return [property('fp16 conversion (round to nearest even)', ok, ok ? undefined : `got ${Array.from(got).join(', ')}`)];
}

export function lossScaleChecks(r: NativeOpRunner): Check[] {
  const u = r.overflowCheck({ grads: Float32Array.from([2, 4, -8]), scale: 4 });
  const bad = r.overflowCheck({ grads: Float32Array.from([1, Infinity]), scale: 2 });
  const nan = r.overflowCheck({ grads: Float32Array.from([NaN, 1]), scale: 2 });
  const down = r.updateLossScale({ scale: 1024, foundInf: true, goodSteps: 5, dynamic: true, growthInterval: 2000 });
  const up = r.updateLossScale({ scale: 1024, foundInf: false, goodSteps: 1999, dynamic: true, growthInterval: 2000 });
  const stat = r.updateLossScale({ scale: 1024, foundInf: true, goodSteps: 3, dynamic: false, growthInterval: 2000 });
  return [
    property('overflow_check: finite gradients pass and stay as they are', !u.foundInf && u.grads.join() === '2,4,-8'),
    property('overflow_check: flags non-finite gradients (infinite, NaN)', bad.foundInf && nan.foundInf),
    property('update_loss_scale: halves on overflow, doubles after the interval', down.scale === 512 && up.scale === 2048 && up.goodSteps === 0),
    property('update_loss_scale: a static scale stays', stat.scale === 1024),
  ];
}

export function serveChecks(r: NativeOpRunner): Check[] {
  const rng = new Rng(61);
  const rows = 5, cols = 3, ldw = 7, oc = 4;
  const a = rng.f32(rows * cols), w = rng.f32(oc * ldw), row = rng.f32(oc);
  const got = r.matmulNt({ a, rows, cols, w, ldw, outCols: oc });
  const want = new Float64Array(rows * oc);
  for (let i = 0; i < rows; i++) for (let o = 0; o < oc; o++) for (let k = 0; k < cols; k++) want[i * oc + o] += a[i * cols + k] * w[o * ldw + k];
  const added = r.addRow({ x: got, rows, cols: oc, row, relu: true });
  const wantAdded = Array.from(want, (v, i) => Math.max(v + row[i % oc], 0));
  const ta = rng.f32(6 * oc), tb = rng.f32(9 * oc);
  const ia = Uint32Array.from([5, 0, 5, 2]), ib = Uint32Array.from([8, 8, 1, 0]);
  const gathered = r.gatherAddRelu({ a: ta, ia, b: tb, ib, cols: oc }).y;
  const wantGathered = Array.from({ length: ia.length * oc }, (_, i) => {
    const q = Math.floor(i / oc), j = i % oc;
    return Math.max(ta[ia[q] * oc + j] + tb[ib[q] * oc + j], 0);
  });
  return [
    check('matmul_nt (column block of a weight)', 'fp32', relError(got, want), 1e-6),
    check('add_row + ReLU', 'fp32', relError(added, wantAdded), 1e-6),
    check('gather_add_relu', 'fp32', relError(gathered, wantGathered), 1e-6),
  ];
}

/**
 * The first layer by parts (Network's FirstLayer::Parts): its ops against float64 references,
 * gather_add_relu's dropout against linear_forward's, and a whole training pass by parts against
 * the same pass per row (the same gradients, summed in another order).
 */
export function partsChecks(r: NativeOpRunner): Check[] {
  const rng = new Rng(67);
  const n = 300, cols = 24, nUsers = 7, nItems = 11;
  const dz = rng.f32(n * cols), users = rng.u32s(n, nUsers).sort(), items = rng.u32s(n, nItems);
  const sums = r.pairRowSums({ dz, users, items, nUsers, nItems, cols });
  const wantU = new Float64Array(nUsers * cols), wantI = new Float64Array(nItems * cols);
  for (let q = 0; q < n; q++)
    for (let j = 0; j < cols; j++) {
      wantU[users[q] * cols + j] += dz[q * cols + j];
      wantI[items[q] * cols + j] += dz[q * cols + j];
    }
  // Through a layer's ReLU and dropout (live where its output y > 0, times 1 / (1 - 0.5)).
  const ly = rng.f32(n * cols, -1, 1).map((v) => Math.max(v, 0));
  const through = r.pairRowSums({ dz, users, items, nUsers, nItems, cols, layer: { y: ly, dropout: 0.5, seed: 1, layer: 0 } });
  const wantLU = new Float64Array(nUsers * cols), wantB = new Float64Array(cols);
  for (let q = 0; q < n; q++)
    for (let j = 0; j < cols; j++) {
      const v = ly[q * cols + j] > 0 ? 2 * dz[q * cols + j] : 0;
      wantLU[users[q] * cols + j] += v;
      wantB[j] += v;
    }
  const rows = 9, k = 5, ldw = 13, oc = 6;
  const a = rng.f32(rows * k), w = rng.f32(k * ldw);
  const mm = r.matmulNn({ a, rows, cols: k, w, ldw, outCols: oc });
  const wantMm = new Float64Array(rows * oc);
  for (let i = 0; i < rows; i++) for (let o = 0; o < oc; o++) for (let q = 0; q < k; q++) wantMm[i * oc + o] += a[i * k + q] * w[q * ldw + o];

  // Dropout in gather_add_relu keeps the features linear_forward keeps for the same (layer, epoch,
  // position): a layer with zero weights and bias 1 shows them (y = 2 where kept).
  const g = 40, gc = 24, drop = { dropout: 0.5, seed: 4, layer: 0, epoch: 3, pos0: 77 };
  const ta = rng.f32(5 * gc, 0.1, 1), tb = rng.f32(6 * gc, 0.1, 1), ia = rng.u32s(g, 5), ib = rng.u32s(g, 6);
  const got = r.gatherAddRelu({ a: ta, ia, b: tb, ib, cols: gc, ...drop });
  const kept = r.linearForward({ w: new Float32Array(gc * 3), b: new Float32Array(gc).fill(1), in: 3, out: gc, x: rng.f32(g * 3), ...drop });
  const wantG = Array.from({ length: g * gc }, (_, i) => {
    const q = Math.floor(i / gc), j = i % gc;
    return kept[i] * (ta[ia[q] * gc + j] + tb[ib[q] * gc + j]);
  });

  // A training pass by parts against the same pass per row: every parameter's gradient.
  const net = { nUsers: 13, nItems: 17, factors: 8, layers: [16, 24, 8], dropout: 0.5 };
  const tn = 200, tu = rng.u32s(tn, net.nUsers).sort();
  const targs = {
    ...net, params: rng.f32(paramCount(net), -0.3, 0.3), users: tu, items: rng.u32s(tn, net.nItems),
    labels: Float32Array.from({ length: tn }, () => (rng.below(5) === 0 ? 1 : 0)), seed: 6, epoch: 1, pos0: 900, gradScale: 1 / tn,
  };
  const byRows = r.trainPass(targs), byParts = r.trainPass({ ...targs, firstLayer: 'parts' });
  let worst = Math.abs(byParts.loss - byRows.loss) / Math.abs(byRows.loss), worstName = 'loss';
  for (const t of paramLayout(net)) {
    const e = relError(byParts.grads.subarray(t.offset, t.offset + t.count), byRows.grads.subarray(t.offset, t.offset + t.count));
    if (e > worst) [worst, worstName] = [e, t.name];
  }
  return [
    check('pair_row_sums (per user, per item)', 'fp32', Math.max(relError(sums.userSums, wantU), relError(sums.itemSums, wantI)), 1e-6),
    check('pair_row_sums through a layer\'s ReLU and dropout, its bias gradient', 'fp32', Math.max(relError(through.userSums, wantLU), relError(through.gradB!, wantB)), 1e-6),
    check('matmul_nn (column block of a weight)', 'fp32', relError(mm, wantMm), 1e-6),
    check('gather_add_relu with dropout (linear_forward\'s mask)', 'fp32', relError(got.y, wantG), 1e-6),
    property('gather_add_relu: live-unit mask = (y > 0)', exactlyEqual(got.mask, liveBits(got.y, g, gc))),
    check(`train_pass, first layer by parts = per row (worst ${worstName})`, 'fp32', worst, 1e-5),
  ];
}

export function cpuOpChecks(r: NativeOpRunner): Check[] {
  return [
    philoxKat(r),
    ...sampleChecks(r),
    ...embedChecks(r),
    ...linearChecks(r),
    ...headChecks(r),
    ...adamChecks(r),
    ...evalChecks(r),
    ...halfChecks(r),
    ...lossScaleChecks(r),
    ...serveChecks(r),
    ...partsChecks(r),
  ];
}
