// The CUDA backend run by the host emulation (native/emu, cmake/NcfCudaEmu.cmake), on machines
// without a GPU: every CUDA op against its CPU twin (selftest --device cuda), training and
// serving through the CUDA backend (fused kernels and op chains) against the CPU backend. (The
// NCCL path under mpirun: cuda-nccl.test.ts; the kernel forms and --autotune: cuda-forms.test.ts.)
// This checks the kernels' indexing, launches, barriers and shuffles, the cuBLASLt layouts and
// that host code never touches device memory; it says nothing of speed, and cannot see races.
// test/emulator.ts builds ncf_cuda_emu.so (incrementally); the tests are skipped only where no
// CUDA headers exist. With NCF_CUDA_PLUGIN set it uses that build instead (CI's AddressSanitizer
// run does).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

import t from 'tap';

import { NeuMF, prepare } from '../lib/index';
import { paramCount } from '../lib/model/checkpoint';
import { addon } from '../lib/native';
import { Rng, relError } from '../lib/util/random';
import { built, skip } from './emulator';
import { cli, tmpdir } from './helpers';

t.test("the emulator's own checks: launches, shuffles, barriers, cuBLASLt's definition", { skip }, async (t) => {
  const exe = path.join(path.dirname(built.plugin!), 'ncf_cuda_emu_selftest');
  const r = spawnSync(exe, [], { encoding: 'utf8', timeout: 120_000 });
  t.equal(r.status, 0, r.stdout + r.stderr);
  t.match(r.stdout, /all \d+ emulator checks passed/);
});

t.test('selftest --device cuda: every CUDA op matches its CPU twin', { skip }, async (t) => {
  const r = cli(['selftest', '--device', 'cuda'], tmpdir());
  t.equal(r.status, 0, r.stdout + r.stderr);
  t.match(r.stdout, /selftest on cuda \(CUDA emulation on the host/);
  t.match(r.stdout, /all \d+ checks passed/);
  t.notMatch(r.stdout, /FAIL/);
  // Each check also with every grid-stride kernel on at most 2 blocks, looping over its work as
  // only full size does otherwise (an output unit that kept only its last row's loss passes the
  // uncapped checks and fails these).
  t.match(r.stdout, /head_forward_backward \[fp16, 2 blocks\] .* ok/);
  // The hidden-layer tile kernels switched on: their op checks against the CPU's chains, also
  // with 2 blocks each looping over several tiles.
  const h = cli(['selftest', '--device', 'cuda', '--no-training'], tmpdir(), { NCF_CUDA_HIDDEN_FORWARD: '1', NCF_CUDA_HIDDEN_BACKWARD: '1' });
  t.equal(h.status, 0, h.stdout + h.stderr);
  t.match(h.stdout, /hidden_forward 256-128-64, 300 rows \(fused kernel for 2 of 2 layers\) \[fp16, 2 blocks\] .* ok/);
  t.match(h.stdout, /hidden_backward 64-48-32-16, 397 rows \(fused kernel\) \[tf32, 2 blocks\] .* ok/);
  t.match(h.stdout, /hidden_forward 256-128-64, 300 rows \(fused kernel for 1 of 2 layers\) \[tf32\] .* ok/, 'TF32 at ml-20m\'s layers: two staging buffers fit the first layer alone');
  t.notMatch(h.stdout, /FAIL/);
  t.notMatch(h.stderr, /one staging buffer/);
  const bad = cli(['selftest', '--device', 'cuda', '--no-training'], tmpdir(), { NCF_CUDA_MAX_BLOCKS: 'two' });
  t.not(bad.status, 0, 'a cap that is not a count is refused');
  t.match(bad.stderr, /NCF_CUDA_MAX_BLOCKS is 'two': expected a count/);
  // A mistyped switch stops the run, naming it and what it takes, instead of running the default.
  for (const [name, value, expected] of [['NCF_CUDA_HIDDEN_FORWARD', 'one_buffer', '0, 1 or one-buffer'], ['NCF_CUDA_GRAPH', 'on', '0 or 1'],
    ['NCF_CUDA_GEMM_TUNE', 'some', '0, 1 or all'], ['NCF_CUDA_DRELU', 'yes', '0, 1 or mask']]) {
    const typo = cli(['selftest', '--device', 'cuda', '--no-training'], tmpdir(), { [name]: value });
    t.not(typo.status, 0, `${name}=${value} is refused`);
    t.match(typo.stderr, `${name} is '${value}': expected ${expected} (or unset)`);
  }
});

t.test('training and serving on the CUDA backend track the CPU backend', { skip }, async (t) => {
  const home = tmpdir();
  const dir = tmpdir();
  const { dir: data } = await prepare('synthetic:tiny', { out: path.join(dir, 'data'), seed: 2 });
  const run = (backend: string, name: string, extra: string[] = [], env: Record<string, string> = {}) => {
    const ck = path.join(dir, name);
    const r = cli(['train', '--data', data, '-b', '2048', '-e', '2', '--eval-after', '0', '--seed', '3', '--factors', '16',
      '--layers', '64', '32', '16', '--backend', backend, '--checkpoint-dir', ck, '--log-path', path.join(ck, 'log.json'), '--json', ...extra], home, env);
    t.equal(r.status, 0, r.status === 0 ? `${name} trains` : r.stderr);
    return { summary: JSON.parse(r.stdout), checkpoint: path.join(ck, 'model.safetensors'), stderr: r.stderr };
  };
  const cpu = run('cpu', 'cpu');
  const gpu = run('cuda', 'cuda', ['--no-tf32']); // the op chains (no fused form without TF32)
  const fused = { NCF_CUDA_FUSED: '1' };
  const tf32 = run('cuda', 'tf32', [], fused); // the fused kernels, TF32
  const amp = run('cuda', 'amp', ['--amp'], fused); // the fused kernels, fp16
  const ampChain = run('cuda', 'amp-chain', ['--amp']); // the op chains (the default), fp16
  // The same with each op's GPU time from CUDA events (tables on stderr), which must change nothing.
  const ampTimed = run('cuda', 'amp-timed', ['--amp'], { NCF_CUDA_OP_TIMES: '1' });
  // The op chains with the layers' masking in the DRELU_BGRAD epilogue instead of a separate pass
  // (the first layer per row: by parts, with two hidden layers, no layer's input gradient goes
  // through a layer below).
  const rows = { NCF_FIRST_LAYER: 'rows' };
  const ampEpilogue = run('cuda', 'amp-epilogue', ['--amp'], { ...rows, NCF_CUDA_DRELU: '1' });
  // The same with every GEMM's algorithm tuned among the (emulated) heuristic's candidates: the
  // tuning reruns each GEMM in place (its C, the DRELU_BGRAD bias gradient), which must change nothing.
  const tuneLog = { NCF_CUDA_GEMM_TUNE: 'all', NCF_CUDA_GEMM_LOG: '1' };
  const ampTuned = run('cuda', 'amp-tuned', ['--amp'], { ...rows, NCF_CUDA_DRELU: '1', ...tuneLog });
  // The DRELU epilogue alone, the bias gradient from a column-sum pass (logged, to see it ran).
  const ampMask = run('cuda', 'amp-drelu-mask', ['--amp'], { ...rows, NCF_CUDA_DRELU: 'mask', ...tuneLog });
  const tf32Mask = run('cuda', 'tf32-drelu-mask', [], { ...rows, NCF_CUDA_DRELU: 'mask', ...tuneLog });
  const tf32Rows = run('cuda', 'tf32-rows', [], rows);
  // And with the batch left in position order (the GPU's switch for measuring the grouping).
  const ampUngrouped = run('cuda', 'amp-ungrouped', ['--amp'], { NCF_CUDA_GROUPED: '0' });
  // And with the first layer per row (2,048 rows against 500 users and items run it by parts).
  const ampRows = run('cuda', 'amp-rows', ['--amp'], rows);
  // And with the per-user gradient sums by atomics, and the last layer's dropout as a pass.
  const ampSwitched = run('cuda', 'amp-switched', ['--amp'], { NCF_CUDA_SUMS_BY_USER: '0', NCF_CUDA_HEAD_DROPOUT: '0', NCF_CUDA_HALF_MATH: '0' });
  // And each step captured as a CUDA Graph and launched as one (the emulator records the captured
  // work and runs it at the graph's launch, with the arguments of its capture).
  const ampGraph = run('cuda', 'amp-graph', ['--amp', '--xla']);
  // And every grid-stride kernel (sampling, sorting, the gather, the sums, the output unit,
  // evaluation, Adam) on at most 2 blocks: each thread, warp or block loops over many rows, users
  // or items, which at this size they do only with the grid capped (at full size on a GPU, the
  // output unit's and evaluation's warps do).
  const ampCapped = run('cuda', 'amp-max-blocks', ['--amp'], { NCF_CUDA_MAX_BLOCKS: '2' });
  const gpuGraph = run('cuda', 'cuda-graph', ['--no-tf32'], { NCF_CUDA_GRAPH: '1' });
  // And the hidden layers after the first in one kernel each way (hidden_forward, also in the
  // evaluation, and hidden_backward), by parts (hidden_forward taking the first layer from its
  // parts, with the steps as graphs), and both per row with the steps as graphs (the kernels'
  // arguments must survive a capture and its updates) and at most 3 blocks in every grid:
  // each tile kernel's block looping over about 11 tiles of the 2048-row batches, as each block
  // of a GPU does at full size.
  const hiddenForward = { NCF_CUDA_HIDDEN_FORWARD: '1' }, hiddenBackward = { NCF_CUDA_HIDDEN_BACKWARD: '1' };
  const ampForward = run('cuda', 'amp-hidden-forward', ['--amp', '--xla'], hiddenForward);
  const ampBackward = run('cuda', 'amp-hidden-backward', ['--amp'], hiddenBackward);
  const ampHiddenRows = run('cuda', 'amp-hidden-rows', ['--amp', '--xla'], { ...hiddenForward, ...hiddenBackward, ...rows, NCF_CUDA_MAX_BLOCKS: '3' });
  // And both in TF32 (TF32 Tensor Cores in the kernels; forward, the first layer's weights alone fit).
  const tf32Hidden = run('cuda', 'tf32-hidden', [], { ...hiddenForward, ...hiddenBackward });
  // And hidden_backward taking the first layer's per-user sums (by parts, in user order: it does
  // by default) on at most 2 blocks, each walking its ~8 tiles of 128 rows with users' runs open
  // across them and reaching its range's edges, as steps captured as graphs; and with
  // NCF_CUDA_HIDDEN_SUMS=0, pair_row_sums taking them.
  const ampSumsCapped = run('cuda', 'amp-hidden-sums-capped', ['--amp', '--xla'], { ...hiddenBackward, NCF_CUDA_MAX_BLOCKS: '2' });
  const ampNoSums = run('cuda', 'amp-hidden-no-sums', ['--amp'], { ...hiddenBackward, NCF_CUDA_HIDDEN_SUMS: '0' });
  // And with NCF_CUDA_HIDDEN_PARTS=0: gather_add_relu writing the first layer's output for
  // hidden_forward to read, where by default hidden_forward computes it from its parts.
  const noParts = { ...hiddenForward, NCF_CUDA_HIDDEN_PARTS: '0' };
  const ampNoParts = run('cuda', 'amp-hidden-no-parts', ['--amp'], noParts);
  const tf32NoParts = run('cuda', 'tf32-hidden-no-parts', [], { ...noParts, ...hiddenBackward });
  // And with the first capture, or the first instantiation, failing (the emulator's injected
  // faults): the steps go on op by op, the failed one included.
  const faults = ['capture', 'instantiate'].map((f) => run('cuda', `amp-graph-${f}-fault`, ['--amp', '--xla'], { NCF_EMU_GRAPH_FAULT: f }));
  t.match(amp.summary.info.kernels, /^fused training, fused evaluation$/);
  t.match(ampChain.summary.info.kernels, /^op chain training \(first layer by parts\), op chain evaluation$/);
  t.match(ampRows.summary.info.kernels, /^op chain training \(first layer per row\), op chain evaluation$/);
  t.match(gpu.summary.info.backend, /cuda/);
  t.match(ampTuned.stderr, /ncf gemm tune \[.*\] m=2048 n=16 k=32 epilogue RELU_BIAS: picked \d of 3/, 'the tuning log names each tuned GEMM');
  t.match(ampTuned.stderr, /ncf gemm tune {3}2: [\d.]+ ms, workspace 0, waves 1\.00, algo 2 /, 'and each candidate');
  t.notMatch(ampEpilogue.stderr, /ncf gemm tune/, 'no log without NCF_CUDA_GEMM_LOG');
  for (const r of [ampEpilogue, ampMask, tf32Mask]) t.notMatch(r.stderr, /epilogue is unavailable/, 'the epilogue passed its check');
  t.match(ampTuned.stderr, / epilogue DRELU_BGRAD: picked /, 'the DRELU_BGRAD epilogue ran');
  for (const r of [ampMask, tf32Mask]) t.match(r.stderr, / epilogue DRELU: picked /, 'the DRELU epilogue ran');
  // Exactly the same: the emulator's runs are deterministic (its warp order alternates with the
  // process's launch count) and tuning reruns the emulated host GEMM, launching no kernel, so a
  // rerun that disturbed C or the epilogue's outputs would show here.
  const curve = (s: { epochs: { loss: number; hr: number; ndcg: number }[] }) => s.epochs.map((e) => [e.loss, e.hr, e.ndcg]);
  t.same(curve(ampTuned.summary), curve(ampEpilogue.summary), 'tuned GEMMs train exactly like the untuned (one host GEMM)');
  t.same(curve(ampTimed.summary), curve(ampChain.summary), 'timing the ops changes nothing');
  t.notMatch(ampChain.stderr, /ncf op times/, 'no op times without NCF_CUDA_OP_TIMES');
  // Every step after the first of each shape (the full batch, the epoch's last) as a graph: a
  // graph that kept its first capture's arguments (the batch's position, Adam's step) would train
  // differently, and so would one that ran its work at capture and again at launch.
  t.same(curve(ampGraph.summary), curve(ampChain.summary), 'steps as CUDA Graphs train exactly like steps launched op by op (--amp)');
  t.same(curve(gpuGraph.summary), curve(gpu.summary), 'and in fp32');
  for (const r of [ampGraph, gpuGraph]) {
    t.match(r.summary.info.kernels, /, steps as CUDA Graphs$/, 'the run says its steps are graphs');
    const counts = /ncf cuda graph: (\d+) steps launched as graphs, (\d+) uncaptured; (\d+) instantiations, (\d+) updates/.exec(r.stderr);
    t.ok(counts, 'the graphs are counted');
    if (counts) {
      const [graphs, direct, inst, updates] = counts.slice(1).map(Number);
      t.equal(direct, 2, 'two steps ran uncaptured: the first of each shape');
      t.equal(inst, 2, 'one executable graph per shape');
      t.ok(graphs > 10 && updates === graphs - inst, `the other ${graphs} steps ran as graphs, updated ${updates} times`);
    }
  }
  t.notMatch(ampChain.stderr, /ncf cuda graph/, 'no graphs without --xla or NCF_CUDA_GRAPH');
  for (const r of faults) {
    t.same(curve(r.summary), curve(ampChain.summary), 'a step whose graph failed runs op by op, once: the same training');
    t.match(r.stderr, /a training step could not run as a CUDA Graph \(.+\); the steps run op by op from here/, 'and says so');
    t.match(r.stderr, /ncf cuda graph: 0 steps launched as graphs, 58 uncaptured; 0 instantiations, 0 updates/);
  }
  t.notMatch(ampChain.summary.info.kernels, /Graphs/);
  for (const r of [ampBackward, ampHiddenRows, tf32Hidden, ampSumsCapped, ampNoSums]) t.match(r.stderr, /ncf cuda hidden_backward: 58 runs of the fused kernel/, 'every step took its hidden layers back in one kernel');
  for (const r of [ampBackward, tf32Hidden, ampSumsCapped]) t.match(r.stderr, /hidden_backward: .*, 58 with the per-user sums/, 'and, by parts, the per-user sums');
  for (const r of [ampHiddenRows, ampNoSums]) t.match(r.stderr, /hidden_backward: .*, 0 with the per-user sums/, 'but not per row or switched off');
  // 58 training steps, and the evaluation's batches after each epoch.
  for (const r of [ampForward, ampHiddenRows, tf32Hidden, ampNoParts, tf32NoParts]) t.match(r.stderr, /ncf cuda hidden_forward: (5[89]|[6-9]\d) runs of the fused kernel/, 'every step and evaluation took its hidden layers forward in one kernel');
  for (const r of [ampForward, tf32Hidden]) t.match(r.stderr, /hidden_forward: (\d+) runs of the fused kernel, \1 with the first layer from its parts/, 'every one from the first layer\'s parts');
  for (const r of [ampNoParts, tf32NoParts]) t.match(r.stderr, /hidden_forward: .*, 0 with the first layer from its parts/, 'but not switched off');
  t.notMatch(ampBackward.stderr, /hidden_forward/, 'each switch alone');
  t.notMatch(ampForward.stderr, /hidden_backward/);
  t.notMatch(ampChain.stderr, /hidden_/, 'and neither kernel without them');
  checkOpTimes(t, ampTimed.stderr);
  cpu.summary.epochs.forEach((e: { loss: number; hr: number }, i: number) => {
    const g = gpu.summary.epochs[i], f = tf32.summary.epochs[i], a = amp.summary.epochs[i], c = ampChain.summary.epochs[i];
    const p = ampEpilogue.summary.epochs[i], u = ampUngrouped.summary.epochs[i], w = ampRows.summary.epochs[i];
    const sw = ampSwitched.summary.epochs[i], am = ampMask.summary.epochs[i], tm = tf32Mask.summary.epochs[i];
    const tr = tf32Rows.summary.epochs[i], hf = ampForward.summary.epochs[i], hb = ampBackward.summary.epochs[i];
    const hr = ampHiddenRows.summary.epochs[i], th = tf32Hidden.summary.epochs[i], cb = ampCapped.summary.epochs[i];
    const sc = ampSumsCapped.summary.epochs[i], ns = ampNoSums.summary.epochs[i];
    const np = ampNoParts.summary.epochs[i], tp = tf32NoParts.summary.epochs[i];
    t.ok(Math.abs(g.loss - e.loss) < 1e-3 * e.loss, `epoch ${i + 1} loss fp32 ${g.loss} vs cpu ${e.loss}`);
    t.ok(Math.abs(g.hr - e.hr) <= 0.03, `epoch ${i + 1} HR@10 fp32 ${g.hr} vs cpu ${e.hr}`);
    t.ok(Math.abs(f.loss - e.loss) < 1e-2 * e.loss, `epoch ${i + 1} loss tf32 ${f.loss} vs cpu ${e.loss}`);
    t.ok(Math.abs(f.hr - e.hr) <= 0.03, `epoch ${i + 1} HR@10 tf32 ${f.hr} vs cpu ${e.hr}`);
    t.ok(Math.abs(a.loss - e.loss) < 3e-2 * e.loss, `epoch ${i + 1} loss amp ${a.loss} vs cpu ${e.loss}`);
    t.ok(Math.abs(c.loss - e.loss) < 3e-2 * e.loss, `epoch ${i + 1} loss amp, op chains ${c.loss} vs cpu ${e.loss}`);
    t.ok(Math.abs(p.loss - w.loss) < 1e-2 * w.loss, `epoch ${i + 1} loss amp, DRELU_BGRAD epilogue ${p.loss} vs masking pass ${w.loss}`);
    t.ok(Math.abs(am.loss - w.loss) < 1e-2 * w.loss, `epoch ${i + 1} loss amp, DRELU epilogue ${am.loss} vs masking pass ${w.loss}`);
    t.ok(Math.abs(tm.loss - tr.loss) < 1e-3 * tr.loss, `epoch ${i + 1} loss tf32, DRELU epilogue ${tm.loss} vs masking pass ${tr.loss}`);
    t.ok(Math.abs(u.loss - c.loss) < 1e-2 * c.loss, `epoch ${i + 1} loss amp, position order ${u.loss} vs grouped ${c.loss}`);
    t.ok(Math.abs(w.loss - c.loss) < 1e-2 * c.loss, `epoch ${i + 1} loss amp, first layer per row ${w.loss} vs by parts ${c.loss}`);
    // (The kernels round, drop and mask each value as the chain does: only the sums' order differs.)
    t.ok(Math.abs(hf.loss - c.loss) < 1e-3 * c.loss, `epoch ${i + 1} loss amp, hidden_forward ${hf.loss} vs the chain ${c.loss}`);
    t.ok(Math.abs(hf.hr - c.hr) <= 0.01, `epoch ${i + 1} HR@10 amp, hidden_forward ${hf.hr} vs the chain ${c.hr}`);
    t.ok(Math.abs(hb.loss - c.loss) < 1e-3 * c.loss, `epoch ${i + 1} loss amp, hidden_backward ${hb.loss} vs the chain ${c.loss}`);
    t.ok(Math.abs(sc.loss - c.loss) < 1e-3 * c.loss, `epoch ${i + 1} loss amp, hidden_backward with its sums on 2 blocks ${sc.loss} vs the chain ${c.loss}`);
    t.ok(Math.abs(ns.loss - hb.loss) < 1e-4 * hb.loss, `epoch ${i + 1} loss amp, hidden_backward, sums by pair_row_sums ${ns.loss} vs in the kernel ${hb.loss}`);
    // (hidden_forward rounds, drops and masks the first layer's values as gather_add_relu does, and
    // multiplies the same tiles: the self-test checks that bit for bit. Only the order of the
    // atomics' sums later in the step differs, with the emulator's warp order, which alternates
    // with the launch count.)
    t.ok(Math.abs(np.loss - hf.loss) < 1e-4 * hf.loss, `epoch ${i + 1} loss amp, hidden_forward from gather_add_relu ${np.loss} vs from the parts ${hf.loss}`);
    t.ok(Math.abs(np.hr - hf.hr) <= 0.01, `epoch ${i + 1} HR@10 amp, hidden_forward from gather_add_relu ${np.hr} vs from the parts ${hf.hr}`);
    t.ok(Math.abs(tp.loss - th.loss) < 1e-4 * th.loss, `epoch ${i + 1} loss tf32, both kernels, from gather_add_relu ${tp.loss} vs from the parts ${th.loss}`);
    t.ok(Math.abs(hr.loss - w.loss) < 1e-3 * w.loss, `epoch ${i + 1} loss amp per row, both kernels in 3 blocks ${hr.loss} vs the chain ${w.loss}`);
    t.ok(Math.abs(th.loss - e.loss) < 1e-2 * e.loss, `epoch ${i + 1} loss tf32, both kernels ${th.loss} vs cpu ${e.loss}`);
    t.ok(Math.abs(th.hr - e.hr) <= 0.03, `epoch ${i + 1} HR@10 tf32, both kernels ${th.hr} vs cpu ${e.hr}`);
    // (Only the order of the atomics' sums differs.)
    t.ok(Math.abs(cb.loss - c.loss) < 1e-4 * c.loss, `epoch ${i + 1} loss amp, every grid at 2 blocks ${cb.loss} vs uncapped ${c.loss}`);
    t.ok(Math.abs(cb.hr - c.hr) <= 0.01, `epoch ${i + 1} HR@10 amp, every grid at 2 blocks ${cb.hr} vs uncapped ${c.hr}`);
    t.ok(Math.abs(sw.loss - c.loss) < 1e-2 * c.loss, `epoch ${i + 1} loss amp, sums by atomics and a dropout pass ${sw.loss} vs ${c.loss}`);
  });

  // One checkpoint served by both backends: same scores, same top-K.
  const onCpu = await NeuMF.load(gpu.checkpoint, { device: 'cpu' });
  const onGpu = await NeuMF.load(gpu.checkpoint, { device: 'cuda', precision: 'fp32' });
  const onGpuHalf = await NeuMF.load(gpu.checkpoint, { device: 'cuda', precision: 'fp16' });
  t.teardown(() => [onCpu, onGpu, onGpuHalf].forEach((m) => m.close()));
  const users = onCpu.dataset!.userIds.slice(0, 40), items = onCpu.dataset!.itemIds;
  const pu = Array.from({ length: 4000 }, (_, i) => users[i % users.length]);
  const pi = Array.from({ length: 4000 }, (_, i) => items[(i * 7) % items.length]);
  const sc = await onCpu.score(pu, pi), sg = await onGpu.score(pu, pi), sh = await onGpuHalf.score(pu, pi);
  let dg = 0, dh = 0;
  for (let i = 0; i < sc.length; i++) {
    dg = Math.max(dg, Math.abs(sg[i] - sc[i]));
    dh = Math.max(dh, Math.abs(sh[i] - sc[i]));
  }
  t.ok(dg < 1e-5, `fp32 scores agree: max |difference| ${dg.toExponential(2)}`);
  t.ok(dh < 2e-2, `fp16 scores agree: max |difference| ${dh.toExponential(2)}`);
  for (const user of users.slice(0, 10)) {
    const a = await onCpu.recommend(user, { k: 10, excludeSeen: true });
    const b = await onGpu.recommend(user, { k: 10, excludeSeen: true });
    b.scores.forEach((s, i) => t.ok(Math.abs(s - a.scores[i]) < 1e-5, `user ${user} rank ${i + 1}: ${s} vs ${a.scores[i]}`));
    const same = a.items.every((item, i) => item === b.items[i] || Math.abs(a.scores[i] - b.scores[i]) < 1e-5);
    t.ok(same, `user ${user}: the same top 10 (${a.items.join(',')} vs ${b.items.join(',')})`);
  }
});

// The op-time tables of a run with NCF_CUDA_OP_TIMES=1 (native/cuda/op_times.cuh): one per
// training epoch and evaluation, every op of a step once per step, each GEMM nested in its op,
// and no nested op longer than the op around it.
function checkOpTimes(t: tap.Test, stderr: string): void {
  type Row = { depth: number; label: string; calls: number; ms: number };
  const tables: { name: string; rows: Row[] }[] = [];
  for (const line of stderr.split('\n')) {
    const head = /^ncf op times, (.+?): ([\d.]+) ms in ops, ([\d.]+) ms from the first op's start/.exec(line);
    if (head) {
      tables.push({ name: head[1], rows: [] });
      t.ok(Number(head[2]) <= Number(head[3]) + 1e-3, `${head[1]}: time in ops ${head[2]} ms within the ${head[3]} ms stretch`);
      continue;
    }
    const row = /^ncf op times {3}( *)(\S.*?)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%$/.exec(line);
    if (row && tables.length) tables[tables.length - 1].rows.push({ depth: row[1].length / 2, label: row[2], calls: Number(row[3]), ms: Number(row[4]) });
  }
  const names = tables.map((x) => x.name);
  t.same(names.filter((n) => n.startsWith('training')), ['training epoch 1', 'training epoch 2'], 'a table per training epoch');
  const evaluations = tables.filter((x) => x.name === 'evaluation');
  t.ok(evaluations.length >= 2, `a table per evaluation (${names.join(', ')})`);
  for (const e of evaluations) t.ok(e.rows.some((r) => r.depth === 0 && r.label === 'eval_rank'), 'evaluation: eval_rank ran');
  for (const name of ['training epoch 1', 'training epoch 2']) {
    const table = tables.find((x) => x.name === name)?.rows ?? [];
    const top = (label: string) => table.find((r) => r.depth === 0 && r.label === label);
    const steps = top('adam_step')?.calls ?? 0;
    t.ok(steps > 0, `${name}: adam_step ran (${steps} steps)`);
    for (const op of ['sample_batch', 'gather_add_relu', 'head_forward_backward', 'pair_row_sums', 'overflow_check'])
      t.equal(top(op)?.calls, steps, `${name}: ${op} once a step`);
    t.equal(top('linear_forward')?.calls, steps, `${name}: linear_forward once a step (--layers 64 32 16: one layer after the first)`);
    const i = table.findIndex((r) => r.depth === 0 && r.label === 'linear_forward');
    t.match(table[i + 1]?.label ?? '', /^gemm m=\d+ n=16 k=32 f16 RELU_BIAS$/, `${name}: linear_forward's GEMM nested under it`);
    // Each nested op's total against the op it runs in (the nearest shallower row above it).
    table.forEach((r, j) => {
      if (r.depth === 0) return;
      let p = j - 1;
      while (table[p].depth >= r.depth) --p;
      t.ok(r.ms <= table[p].ms + 1e-3, `${name}: ${r.label} (${r.ms} ms) within ${table[p].label} (${table[p].ms} ms)`);
    });
  }
}

t.test('the op chains run by default and NCF_CUDA_FUSED=1 runs the fused kernels, which agree with them', { skip }, async (t) => {
  const net = { nUsers: 50, nItems: 40, factors: 16, layers: [64, 32, 16], dropout: 0.5 };
  const rng = new Rng(11);
  const params = rng.f32(paramCount(net), -0.1, 0.1), users = rng.u32s(100, 50), items = rng.u32s(100, 40);
  const labels = Float32Array.from({ length: 100 }, (_, i) => (i % 5 === 0 ? 1 : 0));
  const step = { ...net, params, users, items, labels, seed: 1, epoch: 0, pos0: 0, gradScale: 0.01 };
  const runOn = (fusedEnv: string | undefined) => {
    if (fusedEnv === undefined) delete process.env.NCF_CUDA_FUSED;
    else process.env.NCF_CUDA_FUSED = fusedEnv;
    try {
      const dev = new (addon().OpRunner)({ backend: 'cuda', tf32: true });
      return { split: dev.splitForward({ ...net, params, users, items }), train: dev.trainPass(step) };
    } finally {
      delete process.env.NCF_CUDA_FUSED;
    }
  };
  const fused = runOn('1'), chain = runOn(undefined), off = runOn('0');
  t.ok(fused.split.fused && fused.train.fused, 'with NCF_CUDA_FUSED=1 the fused kernels run');
  t.ok(!chain.split.fused && !chain.train.fused, 'by default the op chains run');
  t.ok(!off.split.fused && !off.train.fused, 'with NCF_CUDA_FUSED=0 the op chains run');
  t.ok(relError(fused.split.logits, chain.split.logits) < 1e-2, `logits: ${relError(fused.split.logits, chain.split.logits).toExponential(2)}`);
  t.ok(relError(fused.train.grads, chain.train.grads) < 1e-2, `gradients: ${relError(fused.train.grads, chain.train.grads).toExponential(2)}`);
  t.ok(Math.abs(fused.train.loss - chain.train.loss) < 1e-3 * chain.train.loss, `loss ${fused.train.loss} vs ${chain.train.loss}`);
});
