/**
 * Checks of a device backend (CUDA) against the CPU backend: every op on the same random inputs,
 * with a tolerance per precision: bitwise where both compute the same integer or IEEE-exact
 * result (random streams, sampling, Adam, fp16 conversion), 1e-5 relative for fp32 GEMMs,
 * 1e-2 for TF32 (10-bit mantissa) and 2e-2 for fp16 inputs, both accumulating in fp32.
 */
import type { NativeOpRunner } from '../native';
import { type Check, type GemmPrecision, TOLERANCE, check, property } from './check';
import { inPositionOrder, liveBits, tinyCsr } from './cpu-checks';
import { Rng, exactlyEqual, relError } from '../util/random';
import { paramCount, paramLayout } from '../model/checkpoint';
import { hiddenLayerChecks } from './hidden-checks';

export function compareOps(dev: NativeOpRunner, cpu: NativeOpRunner, precision: GemmPrecision): Check[] {
  const fp16 = precision === 'fp16';
  const tol = TOLERANCE[precision];
  const rng = new Rng(precision === 'fp32' ? 101 : precision === 'tf32' ? 102 : 103);
  const checks: Check[] = [];

  if (precision === 'fp32') {
    const counters = rng.u32s(4 * 4096, 0xffffffff);
    const key = { keyLo: rng.u32(), keyHi: rng.u32() };
    checks.push(property('philox: cuRAND device API = host', exactlyEqual(dev.philox({ ...key, counters }), cpu.philox({ ...key, counters }))));
    const csr = tinyCsr(rng, 300, 500, 60);
    for (const verify of [false, true]) {
      const a = { ...csr, nItems: 500, negatives: 4, verify, seed: 9, epoch: 2, pos0: 1000, n: 20000 };
      const d = dev.sampleBatch(a), c = cpu.sampleBatch(a);
      checks.push(property(`sample_batch${verify ? ' (verified negatives)' : ''}, grouped by user`, exactlyEqual(d.users, c.users) && exactlyEqual(d.items, c.items) && exactlyEqual(d.labels, c.labels) && exactlyEqual(d.positions, c.positions)));
    }
    // A user with more rows in a batch than the GPU ranks by position (4096): the same rows, grouped,
    // that user's in some order.
    const heavy = { offsets: Uint32Array.from([0, 3, 2003, 2010]), items: Uint32Array.from([...[5, 9, 11], ...Array.from({ length: 2000 }, (_, i) => i), ...[1, 2, 3, 4, 6, 7, 8]]) };
    const hb = { ...heavy, nItems: 2000, negatives: 4, verify: false, seed: 4, epoch: 1, pos0: 0, n: 10050 };
    const hd = dev.sampleBatch(hb), hc = cpu.sampleBatch(hb);
    const byPosition = (b: typeof hd) => inPositionOrder(b);
    const pd = byPosition(hd), pc = byPosition(hc);
    checks.push(property('sample_batch: a user with 10,000 rows in one batch (past the 4,096 the GPU ranks), grouped, the same rows', exactlyEqual(hd.users, hc.users) && exactlyEqual(pd.users, pc.users) && exactlyEqual(pd.items, pc.items) && exactlyEqual(pd.labels, pc.labels)));
    // A length and mirror bounds off multiples of 4: the CUDA kernel's 16-byte path, its tail and
    // the mirror's partial groups.
    const n = (1 << 14) + 3;
    const adam = { params: rng.f32(n), grads: rng.f32(n, -0.1, 0.1), m: rng.f32(n, -0.01, 0.01), v: rng.f32(n, 0, 0.01), lr: 0.0045, beta1: 0.25, beta2: 0.5, eps: 1e-8, step: 7 };
    const ad = dev.adamStep(adam), ac = cpu.adamStep(adam);
    checks.push(property('adam_step', exactlyEqual(ad.params, ac.params) && exactlyEqual(ad.m, ac.m) && exactlyEqual(ad.v, ac.v)));
    const scaledAdam = { ...adam, grads: adam.grads.map((g) => g * 4096), lossScale: 4096 };
    const asd = dev.adamStep(scaledAdam), asc = cpu.adamStep(scaledAdam);
    checks.push(property('adam_step, gradients unscaled as read', exactlyEqual(asd.params, asc.params) && exactlyEqual(asd.m, asc.m) && exactlyEqual(asd.v, asc.v)));
    const mirror = Uint32Array.from([1001, 9003]), am = dev.adamStep({ ...adam, mirror });
    checks.push(property("adam_step's fp16 mirror = the updated parameters in fp16", exactlyEqual(am.half!, cpu.halfRoundTrip(ac.params.subarray(1001, 9003))) && exactlyEqual(am.params, ac.params)));
    const half = rng.f32(4096, -70000, 70000);
    half.set([65504, 65520, 1e-8, 6e-8, 0.1, NaN, -Infinity], 0);
    checks.push(property('fp16 conversion', exactlyEqual(dev.halfRoundTrip(half).map((x) => (Number.isNaN(x) ? -1 : x)), cpu.halfRoundTrip(half).map((x) => (Number.isNaN(x) ? -1 : x)))));
    const users = 2000, L = 101;
    const logits = rng.f32(users * L);
    for (let u = 0; u < users; u += 7) logits[u * L + 3] = logits[u * L]; // ties
    const masked = Uint8Array.from({ length: users * L }, (_, i) => (i % L !== 0 && rng.below(20) === 0 ? 1 : 0));
    const ed = dev.evalRank({ logits, masked, nUsers: users, listLen: L, k: 10 }), ec = cpu.evalRank({ logits, masked, nUsers: users, listLen: L, k: 10 });
    checks.push(check('eval_rank', 'exact', Math.abs(ed.hits - ec.hits) + Math.abs(ed.dcg - ec.dcg) / Math.max(1, ec.dcg), 1e-12));
    const lsd = dev.updateLossScale({ scale: 1024, foundInf: false, goodSteps: 1999, dynamic: true, growthInterval: 2000 });
    const uc = dev.overflowCheck({ grads: Float32Array.from([2, Infinity]), scale: 2 });
    const ok = dev.overflowCheck({ grads: Float32Array.from([2, -3]), scale: 2 });
    // Longer gradients (the GPU reads 16 bytes at a time, the last n % 4 one by one): a non-finite
    // value in the vector part, in the tail, or none.
    const long = (at: number, v: number) => { const g = rng.f32(1003); if (at >= 0) g[at] = v; return dev.overflowCheck({ grads: g, scale: 8 }).foundInf; };
    const longOk = long(517, Infinity) && long(1002, NaN) && !long(-1, 0);
    checks.push(property('loss scaling ops', lsd.scale === 2048 && uc.foundInf && !ok.foundInf && uc.grads[0] === 2 && longOk));
  }

  // Embeddings: the model's MLP width, and one that is not a multiple of 8 (value by value).
  const U = 500, I = 300, f = 64, n = 4096;
  for (const h of [128, 12]) {
    const t = { mlpUser: rng.f32(U * h), mlpItem: rng.f32(I * h), half: h };
    // Users in order, as in a training batch (runs of ~8 rows per user), items at random.
    const users = rng.u32s(n, U).sort(), items = rng.u32s(n, I);
    const ef = dev.embedForward({ ...t, users, items, fp16 }), cf = cpu.embedForward({ ...t, users, items });
    checks.push(check(`embed_forward (half ${h})`, fp16 ? 'fp16' : 'exact', relError(ef, cf), fp16 ? 1e-3 : 0));
    if (fp16) checks.push(property(`embed_forward (half ${h}) from fp16 table copies = from the tables`, exactlyEqual(dev.embedForward({ ...t, users, items, fp16, halfTables: true }), ef)));
    const dMlpIn = fp16 ? cpu.halfRoundTrip(rng.f32(n * 2 * h)) : rng.f32(n * 2 * h);
    const eb = dev.embedBackward({ ...t, users, items, dMlpIn, fp16 }), cb = cpu.embedBackward({ ...t, users, items, dMlpIn });
    checks.push(check(`embed_backward (half ${h}; atomics vs ordered sums)`, 'fp32', Math.max(relError(eb.mlpUser, cb.mlpUser), relError(eb.mlpItem, cb.mlpItem)), 1e-5));
  }

  // Hidden layers, with dropout, at the model's widths and at widths that are not multiples of 8
  // (the element-wise kernels' value-by-value paths).
  for (const [inW, out] of [[256, 256], [256, 128], [128, 64], [40, 20]] as const) {
    const rows = 3000;
    const x = rng.f32(rows * inW), w = rng.f32(out * inW, -0.1, 0.1), b = rng.f32(out, -0.1, 0.1);
    const args = { w, b, in: inW, out, dropout: 0.5, seed: 77, layer: 1, epoch: 4, pos0: 12345 };
    const xin = fp16 ? cpu.halfRoundTrip(x) : x;
    const yd = dev.linearForward({ ...args, x: xin, fp16 }), yc = cpu.linearForward({ ...args, x: xin });
    const maskSame = yd.every((v, i) => (v === 0) === (yc[i] === 0) || Math.abs(yc[i]) < 1e-3);
    checks.push(check(`linear_forward ${inW}->${out} + dropout`, precision, relError(yd, yc), tol));
    checks.push(property(`dropout mask ${inW}->${out} identical`, maskSame));
    const dy = rng.f32(rows * out);
    const yref = fp16 ? cpu.halfRoundTrip(yc) : yc;
    const bd = dev.linearBackward({ ...args, x: xin, y: yref, dy: fp16 ? cpu.halfRoundTrip(dy) : dy, fp16 });
    const bc = cpu.linearBackward({ ...args, x: xin, y: yref, dy: fp16 ? cpu.halfRoundTrip(dy) : dy });
    checks.push(check(`linear_backward ${inW}->${out}`, precision, Math.max(relError(bd.gradW, bc.gradW), relError(bd.gradB, bc.gradB), relError(bd.dx!, bc.dx!)), tol));
    checks.push(property(`live-unit mask ${inW}->${out} = (y > 0)`, exactlyEqual(dev.liveUnits({ ...args, x: xin, fp16 }), liveBits(yd, rows, out))));
    // Through the layer below (the CUDA backend's DRELU_BGRAD epilogue where its check passed).
    const yBelow = xin.map((v) => Math.max(v, 0));
    const below = { y: yBelow, dropout: 0.5, seed: 77, layer: 0, mask: liveBits(yBelow, rows, inW) };
    const dd = dev.linearBackward({ ...args, x: xin, y: yref, dy: fp16 ? cpu.halfRoundTrip(dy) : dy, fp16, below });
    const dc = cpu.linearBackward({ ...args, x: xin, y: yref, dy: fp16 ? cpu.halfRoundTrip(dy) : dy, below });
    checks.push(check(`linear_backward ${inW}->${out} through the layer below`, precision, Math.max(relError(dd.dx!, dc.dx!), relError(dd.gradBBelow!, dc.gradBBelow!)), tol));
  }

  // Output unit and loss, 5003 rows (the last warp has rows past the end): the model's widths
  // (16-byte GMF loads and atomics), and odd ones (one factor per lane, features past a lane's
  // registers; a last layer wider than 64, whose dropout is a separate pass on the GPU). Few
  // users and items, so the table gradients' atomics collide.
  for (const [hf, width] of [[f, 64], [133, 20], [32, 72]] as const) {
    const rows = 5003, shape = hf === f && width === 64 ? '' : ` ${hf}+${width} features`;
    const mlp = rng.f32(rows * width, 0, 1), w = rng.f32(hf + width, -0.3, 0.3), b = rng.f32(1);
    const labels = Float32Array.from({ length: rows }, () => (rng.below(5) === 0 ? 1 : 0));
    const mlpIn = fp16 ? cpu.halfRoundTrip(mlp) : mlp;
    // Users in order at the model's widths, as in a training batch (warps of one user's rows and
    // warps across users), at random at the odd ones.
    const users = hf === f ? rng.u32s(rows, 700).sort() : rng.u32s(rows, 700);
    const args = { mfUser: rng.f32(700 * hf), mfItem: rng.f32(300 * hf), users, items: rng.u32s(rows, 300), mlp: mlpIn, w, b, factors: hf };
    const hd = dev.headForwardBackward({ ...args, labels, gradScale: 1 / rows, fp16 });
    const hc = cpu.headForwardBackward({ ...args, labels, gradScale: 1 / rows });
    const hTol = fp16 ? 2e-3 : 1e-5;
    checks.push(check(`head_forward_backward${shape}`, fp16 ? 'fp16' : 'fp32', Math.max(Math.abs(hd.lossSum - hc.lossSum) / hc.lossSum, relError(hd.gradW, hc.gradW), relError(hd.gradB, hc.gradB), relError(hd.dMlp, hc.dMlp), relError(hd.gradMfUser, hc.gradMfUser), relError(hd.gradMfItem, hc.gradMfItem)), hTol));
    const top = { below: { dropout: 0.5, seed: 8, layer: 2 } }, reluArgs = { ...args, mlp: args.mlp.map((v, i) => (i % 3 === 0 ? 0 : v)) };
    const td2 = dev.headForwardBackward({ ...reluArgs, labels, gradScale: 1 / rows, fp16, ...top });
    const tc2 = cpu.headForwardBackward({ ...reluArgs, labels, gradScale: 1 / rows, ...top });
    checks.push(check(`head_forward_backward${shape} through the last hidden layer`, fp16 ? 'fp16' : 'fp32', Math.max(relError(td2.dMlp, tc2.dMlp), relError(td2.gradBBelow!, tc2.gradBBelow!), relError(td2.gradW, tc2.gradW)), hTol));
    const fd = dev.headForward({ ...args, fp16 }), fc = cpu.headForward(args);
    checks.push(check(`head_forward${shape}`, fp16 ? 'fp16' : 'fp32', relError(fd, fc), hTol));
  }

  // The split first layer of evaluation: fp32 tables, fp32 or fp16 output.
  const parts = { a: rng.f32(700 * 256), b: rng.f32(300 * 256), ia: rng.u32s(5000, 700), ib: rng.u32s(5000, 300), cols: 256 };
  const gd = dev.gatherAddRelu({ ...parts, fp16 }).y, gc = cpu.gatherAddRelu(parts).y;
  checks.push(check('gather_add_relu', fp16 ? 'fp16' : 'exact', relError(gd, gc), fp16 ? 1e-3 : 0));
  const oddCols = { a: rng.f32(70 * 30), b: rng.f32(30 * 30), ia: rng.u32s(500, 70), ib: rng.u32s(500, 30), cols: 30 };
  checks.push(check('gather_add_relu (30 columns)', 'exact', relError(dev.gatherAddRelu(oddCols).y, cpu.gatherAddRelu(oddCols).y), 0));
  if (fp16) {
    // fp16 tables (--amp evaluation's parts) against the CPU on the same values rounded to fp16.
    for (const [name, p] of [['', parts], [' (30 columns)', oddCols]] as const) {
      const rounded = { ...p, a: cpu.halfRoundTrip(p.a), b: cpu.halfRoundTrip(p.b) };
      checks.push(check(`gather_add_relu, fp16 tables${name}`, 'fp16', relError(dev.gatherAddRelu({ ...p, fp16, halfTables: true }).y, cpu.gatherAddRelu(rounded).y), 1e-3));
    }
  }

  // The first layer by parts: its output with dropout and live units, the gradient sums per user
  // (a batch's rows grouped by user, and runs that cross 16-row tiles) and per item.
  const dropArgs = { dropout: 0.5, seed: 12, layer: 0, epoch: 1, pos0: 333 };
  const gdd = dev.gatherAddRelu({ ...parts, fp16, ...dropArgs }), gcd = cpu.gatherAddRelu({ ...parts, ...dropArgs });
  checks.push(check('gather_add_relu with dropout', fp16 ? 'fp16' : 'exact', relError(gdd.y, gcd.y), fp16 ? 1e-3 : 0));
  checks.push(property('gather_add_relu with dropout: live-unit mask = (y > 0)', exactlyEqual(gdd.mask, liveBits(gdd.y, 5000, 256))));
  if (fp16) {
    // fp16 tables and output (--amp training by parts): on CUDA in half2 arithmetic, which with
    // dropout 0.5's scale of 2 stores exactly the CPU's values (on the tables rounded to fp16)
    // rounded to fp16.
    const rounded = { ...parts, a: cpu.halfRoundTrip(parts.a), b: cpu.halfRoundTrip(parts.b) };
    const hd = dev.gatherAddRelu({ ...parts, fp16, halfTables: true, ...dropArgs }), hc = cpu.gatherAddRelu({ ...rounded, ...dropArgs });
    checks.push(check('gather_add_relu, fp16 tables with dropout', 'exact', relError(hd.y, cpu.halfRoundTrip(hc.y)), 0));
    checks.push(property('gather_add_relu, fp16 tables with dropout: live-unit mask = (y > 0)', exactlyEqual(hd.mask, liveBits(hd.y, 5000, 256))));
  }
  // Users in ascending order (a training batch) take the path that writes each user's sum once,
  // other orders the atomics; fp16 per-user sums are --amp's.
  for (const [name, cols, sorted] of [['', 256, true], [', users unsorted', 256, false], [' (30 columns)', 30, true]] as const) {
    const sn = 3001, su = rng.u32s(sn, 400), si = rng.u32s(sn, 250), sdz = rng.f32(sn * cols);
    if (sorted) su.sort();
    const sargs = { dz: fp16 ? cpu.halfRoundTrip(sdz) : sdz, users: su, items: si, nUsers: 400, nItems: 250, cols };
    const sc = cpu.pairRowSums(sargs);
    for (const halfUserSums of fp16 ? [false, true] : [false]) {
      const sd = dev.pairRowSums({ ...sargs, fp16, halfUserSums });
      const err = Math.max(relError(sd.userSums, sc.userSums), relError(sd.itemSums, sc.itemSums));
      checks.push(check(`pair_row_sums${name}${halfUserSums ? ', fp16 per-user sums' : ''}`, halfUserSums ? 'fp16' : 'fp32', err, halfUserSums ? 1e-3 : 1e-6));
    }
  }
  // Through the first layer's ReLU and dropout, with its bias gradient: on CUDA as the sums read
  // the gradient for users in order (a pass first otherwise, and on the CPU).
  for (const [name, sorted] of [['', true], [', users unsorted', false]] as const) {
    const sn = 3001, cols = 256, su = rng.u32s(sn, 400), si = rng.u32s(sn, 250);
    if (sorted) su.sort();
    const y = rng.f32(sn * cols, -1, 1).map((v) => Math.max(v, 0)), dz = rng.f32(sn * cols);
    const yIn = fp16 ? cpu.halfRoundTrip(y) : y;
    const layer = { y: yIn, dropout: 0.5, seed: 5, layer: 0, mask: liveBits(yIn, sn, cols) };
    const sargs = { dz: fp16 ? cpu.halfRoundTrip(dz) : dz, users: su, items: si, nUsers: 400, nItems: 250, cols, layer };
    const sc = cpu.pairRowSums(sargs), sd = dev.pairRowSums({ ...sargs, fp16 });
    const err = Math.max(relError(sd.userSums, sc.userSums), relError(sd.itemSums, sc.itemSums), relError(sd.gradB!, sc.gradB!));
    // (fp32: 2e-6, the bias gradient being summed over items' sums on CUDA, over rows on the CPU)
    checks.push(check(`pair_row_sums through the layer's ReLU and dropout${name}`, fp16 ? 'fp16' : 'fp32', err, fp16 ? 1e-3 : 2e-6));
  }

  checks.push(...hiddenLayerChecks(dev, cpu, precision, rng));

  // The fused forward pass of evaluation and serving (split_forward, from the first layer's parts
  // to the logits) against the CPU's chain of ops; fp32 without TF32 has no fused form.
  const net = { nUsers: 90, nItems: 60, factors: 64, layers: [256, 256, 128, 64], dropout: 0 };
  const netParams = rng.f32(paramCount(net), -0.5, 0.5), pu = rng.u32s(300, 90), pi = rng.u32s(300, 60);
  const sd = dev.splitForward({ ...net, params: netParams, users: pu, items: pi, fp16 });
  const sc = cpu.splitForward({ ...net, params: netParams, users: pu, items: pi });
  const fusedExpected = precision !== 'fp32' && process.env.NCF_CUDA_FUSED !== '0';
  checks.push(check(`split_forward (${sd.fused ? 'fused kernel' : 'op chain'})`, precision, relError(sd.logits, sc.logits), tol));
  checks.push(property(`split_forward ran ${fusedExpected ? 'fused' : 'as the op chain'}`, sd.fused === fusedExpected));
  if (fp16) {
    const hd = dev.splitForward({ ...net, params: netParams, users: pu, items: pi, fp16, fused: false, halfParts: true });
    checks.push(check('split_forward (op chain, fp16 parts)', precision, relError(hd.logits, sc.logits), tol));
  }
  // The fused data path of a training step (train_pass: all but the weight-gradient GEMMs, which
  // follow it) against the CPU's chain of ops, tensor by tensor. Below fp32 a pre-activation near
  // zero can take the other side of the ReLU than on the CPU, which moves the gradients of the
  // layers under it by far more than rounding; the device's own chain of ops shows the same, so
  // each tensor must be within its tolerance or within 3x the device chain's error.
  const tnet = { nUsers: 90, nItems: 60, factors: 64, layers: [256, 256, 128, 64], dropout: 0.5 };
  const tn = 200, tu = rng.u32s(tn, 90), ti = rng.u32s(tn, 60);
  const tl = Float32Array.from({ length: tn }, () => (rng.below(5) === 0 ? 1 : 0));
  const targs = { ...tnet, params: rng.f32(paramCount(tnet), -0.1, 0.1), users: tu, items: ti, labels: tl, seed: 5, epoch: 2, pos0: 4321, gradScale: 1 / tn, lossScale: fp16 ? 1024 : 0 };
  const td = dev.trainPass({ ...targs, fp16 }), tchain = dev.trainPass({ ...targs, fp16, fused: false }), tc = cpu.trainPass(targs);
  let worst = Math.abs(td.loss - tc.loss) / Math.abs(tc.loss) / tol, worstName = 'loss';
  for (const t of paramLayout(tnet)) {
    const part = (g: Float32Array) => g.subarray(t.offset, t.offset + t.count);
    const ratio = relError(part(td.grads), part(tc.grads)) / Math.max(tol, 3 * relError(part(tchain.grads), part(tc.grads)));
    if (ratio > worst) [worst, worstName] = [ratio, t.name];
  }
  checks.push(check(`train_pass (${td.fused ? 'fused kernel' : 'op chain'}): error / allowed, worst ${worstName}`, precision, worst, 1));
  checks.push(property(`train_pass ran ${fusedExpected ? 'fused' : 'as the op chain'}`, td.fused === fusedExpected));
  // The op chain with the first layer by parts, against the CPU's by parts, held to the same bound
  // (the device's per-row chain on the same rows sets the allowance for pre-activations near
  // zero); with the rows in ascending user order too, as training batches come (the per-user
  // sums' path for them). 2,000 rows: the parts' rounding differs from the per-row GEMM's, so
  // their ReLU decisions near zero differ independently of the chain's, and with 200 rows one
  // such decision could outweigh a whole tensor's allowance.
  const pn = 2000, partUsers = rng.u32s(pn, 90), partItems = rng.u32s(pn, 60);
  const plabels = Float32Array.from({ length: pn }, () => (rng.below(5) === 0 ? 1 : 0));
  const partsArgs = { ...targs, users: partUsers, items: partItems, labels: plabels, gradScale: 1 / pn };
  for (const sorted of [false, true]) {
    const pargs = sorted ? { ...partsArgs, users: Uint32Array.from(partUsers).sort() } : partsArgs;
    const tp = dev.trainPass({ ...pargs, fp16, fused: false, firstLayer: 'parts' }), tcp = cpu.trainPass({ ...pargs, firstLayer: 'parts' });
    const rd = dev.trainPass({ ...pargs, fp16, fused: false }), rc = cpu.trainPass(pargs);
    let worstParts = Math.abs(tp.loss - tcp.loss) / Math.abs(tcp.loss) / tol, worstPartsName = 'loss';
    for (const t of paramLayout(tnet)) {
      const part = (g: Float32Array) => g.subarray(t.offset, t.offset + t.count);
      const ratio = relError(part(tp.grads), part(tcp.grads)) / Math.max(tol, 3 * relError(part(rd.grads), part(rc.grads)));
      if (ratio > worstParts) [worstParts, worstPartsName] = [ratio, t.name];
    }
    checks.push(check(`train_pass (op chain, first layer by parts${sorted ? ', users ascending' : ''}): error / allowed, worst ${worstPartsName}`, precision, worstParts, 1));
  }

  if (precision === 'tf32') {
    const odd = { nUsers: 40, nItems: 30, factors: 8, layers: [48, 40, 24], dropout: 0 }; // widths not multiples of 16
    const oddParams = rng.f32(paramCount(odd), -0.5, 0.5), ou = rng.u32s(100, 40), oi = rng.u32s(100, 30);
    const od = dev.splitForward({ ...odd, params: oddParams, users: ou, items: oi });
    const oc = cpu.splitForward({ ...odd, params: oddParams, users: ou, items: oi });
    checks.push(check(`split_forward 48-40-24 (${od.fused ? 'fused kernel' : 'op chain'})`, precision, relError(od.logits, oc.logits), tol));
  }

  if (!fp16) {
    const r2 = 2000, cols = 128, ldw = 256, oc = 256;
    const a = rng.f32(r2 * cols), ww = rng.f32(oc * ldw, -0.1, 0.1), row = rng.f32(oc);
    const md = dev.matmulNt({ a, rows: r2, cols, w: ww, ldw, outCols: oc }), mc = cpu.matmulNt({ a, rows: r2, cols, w: ww, ldw, outCols: oc });
    checks.push(check('matmul_nt', precision, relError(md, mc), tol));
    const nd = dev.matmulNn({ a: mc, rows: r2, cols: oc, w: ww, ldw, outCols: cols }), nc = cpu.matmulNn({ a: mc, rows: r2, cols: oc, w: ww, ldw, outCols: cols });
    checks.push(check('matmul_nn', precision, relError(nd, nc), tol));
    const ad2 = dev.addRow({ x: mc, rows: r2, cols: oc, row, relu: true }), ac2 = cpu.addRow({ x: mc, rows: r2, cols: oc, row, relu: true });
    if (precision === 'fp32') checks.push(check('add_row', 'exact', relError(ad2, ac2), 0));
  }
  return checks;
}
