// The CUDA backend's NCCL path under mpirun, on the host emulation (test/emulator.ts): two ranks
// train exactly like one process, one rank through NCCL changes nothing, and --autotune's
// decisions agreed across ranks.
import * as path from 'node:path';

import t from 'tap';

import { loadModel, prepare } from '../lib/index';
import { skip } from './emulator';
import { CLI, haveMpirun, runJob, tmpdir } from './helpers';

t.test('mpirun -np 2 over (emulated) NCCL trains exactly like one process', { skip: skip || (haveMpirun ? false : 'mpirun is not installed') }, async (t) => {
  const home = tmpdir();
  const dir = tmpdir();
  const { dir: data, meta } = await prepare('synthetic:tiny', { out: path.join(dir, 'data'), seed: 1 });
  const batch = Math.ceil((meta.counts.trainPositives * 5) / 2) + 1; // two steps, split unevenly
  // fp32 GEMMs: with TF32 the first layer by parts rounds each rank's per-user gradient sums to
  // TF32 before its GEMMs, where one process rounds their total, so the ranks' sum differs from
  // one process's by TF32's precision, not by the order of fp32 additions this test bounds.
  const args = (ck: string) => [CLI, 'train', '--data', data, '-b', String(batch), '-e', '1', '--eval-after', '0', '--seed', '5',
    '--eps', '1e-3', '--no-tf32', '--backend', 'cuda', '--checkpoint-dir', path.join(dir, ck), '--log-path', path.join(dir, ck, 'log.json'), '--json'];
  const one = runJob(process.execPath, args('one'), home);
  t.equal(one.status, 0, one.stderr);
  const single = runJob('mpirun', ['-np', '1', process.execPath, ...args('single'), '--distributed'], home);
  t.equal(single.status, 0, single.stderr);
  // --xla across ranks: the steps are not captured (NCCL inside a graph is untested), and it says so.
  const two = runJob('mpirun', ['-np', '2', '--oversubscribe', process.execPath, ...args('two'), '--xla'], home);
  t.equal(two.status, 0, two.stderr);
  t.match(two.stderr, /2 ranks over nccl/);
  t.match(two.stderr, /--xla: training steps run op by op here/);
  t.notMatch(two.stderr, /ncf cuda graph|could not run as a CUDA Graph/);
  const s1 = JSON.parse(one.stdout), s2 = JSON.parse(two.stdout), sd = JSON.parse(single.stdout);
  t.match(sd.info.communicator, /^nccl /, 'one rank with --distributed goes through NCCL');
  t.equal(sd.epochs[0].loss, s1.epochs[0].loss, 'NCCL with one rank: the same loss as no communicator');
  const p = (ck: string) => loadModel(path.join(dir, ck, 'last.safetensors')).params;
  t.same(Array.from(p('single')), Array.from(p('one')), 'NCCL with one rank: identical parameters');
  t.ok(Math.abs(s1.epochs[0].loss - s2.epochs[0].loss) < 1e-6 * s1.epochs[0].loss, `loss ${s1.epochs[0].loss} vs ${s2.epochs[0].loss}`);
  const a = p('one'), b = p('two');
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
  t.ok(maxDiff < 1e-5, `parameters agree after two steps: max |difference| ${maxDiff.toExponential(2)}`);

  // --autotune across ranks: each rank times its own steps (1,024 rows, 28 a epoch and one of
  // 578), and at each epoch's and evaluation's end the ranks pool their times and take the same
  // forms. gather_add_relu and the chain's per-user sums made 60 ms slower a launch, so that both
  // tile kernels win by far on each rank (and hidden_forward in the evaluation).
  const tunedArgs = (ck: string) => [CLI, 'train', '--data', data, '-b', '2048', '-e', '2', '--eval-after', '0', '--seed', '3', '--factors', '16',
    '--layers', '64', '32', '16', '--valid-users-per-batch', '20', '--amp', '--backend', 'cuda', '--checkpoint-dir', path.join(dir, ck), '--json'];
  const slow = { NCF_EMU_SLOW_KERNEL: 'gather_add_relu:60,pair_row_sums_by_user:60' };
  const tuned = runJob('mpirun', ['-np', '2', '--oversubscribe', process.execPath, ...tunedArgs('tuned-two'), '--autotune'], home, slow);
  t.equal(tuned.status, 0, tuned.status === 0 ? 'two ranks train with --autotune' : tuned.stderr);
  const agreed = tuned.stderr.split('\n').filter((l) => l.startsWith('ncf cuda autotune: '));
  t.match(agreed, [/^ncf cuda autotune: training steps of 1024 rows: hidden_forward \+ hidden_backward \([\d.]+ ms; .*; medians of 3 runs each, means over 2 ranks\)$/,
    /^ncf cuda autotune: evaluation batches of \d+ rows: hidden_forward \([\d.]+ ms; the op chain [\d.]+ ms; hidden_forward \(one buffer\) declined; medians of 3 runs each, means over 2 ranks\)$/],
  'rank 0 says what the ranks agreed on, once each');
  t.equal(agreed.length, 2, 'and nothing else');
  // Each rank: 9 tuning steps with hidden_backward (two forms of 4 steps, and the warm-up of the
  // one-buffer form that declined), the other 11 of epoch 1 with its own choice (with 2 ranks on 2
  // cores, a rank's times are noisy and the ranks may differ), and epoch 2's 29 with the agreed forms.
  const backward = (tuned.stderr.match(/ncf cuda hidden_backward: \d+ runs/g) ?? []).map((l) => Number(/\d+/.exec(l)![0]));
  t.equal(backward.length, 2, 'each rank counts its hidden_backward runs');
  for (const b of backward) t.ok(b === 9 + 29 || b === 9 + 11 + 29, `a rank took hidden_backward in every step after the agreement (${b} runs)`);
  const oneChain = JSON.parse(runJob(process.execPath, tunedArgs('chain-one'), home).stdout);
  const pooled = JSON.parse(tuned.stdout);
  t.same(pooled.autotune, agreed.map((l) => l.slice('ncf cuda autotune: '.length)), 'the summary has the agreed forms');
  pooled.epochs.forEach((e: { loss: number }, i: number) =>
    t.ok(Math.abs(e.loss - oneChain.epochs[i].loss) < 1e-3 * oneChain.epochs[i].loss, `epoch ${i + 1} loss ${e.loss} vs one process's chain ${oneChain.epochs[i].loss}`));
  // Every rank tunes, or none.
  const mixed = runJob('mpirun', ['-np', '1', process.execPath, ...tunedArgs('mixed'), '--autotune', ':', '-np', '1', process.execPath, ...tunedArgs('mixed')], home);
  t.not(mixed.status, 0, 'ranks that disagree on --autotune stop');
  t.match(mixed.stderr, /kernel forms are to be tuned \(--autotune or NCF_CUDA_AUTOTUNE=1\) on 1 of 2 ranks: give every rank the same/);
});
