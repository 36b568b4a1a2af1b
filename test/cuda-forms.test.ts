// The CUDA backend's kernel forms under host emulation (test/emulator.ts): hidden_forward's
// one-staging-buffer form against the CPU's chain, and --autotune, which times each form on the
// run's own steps and keeps the fastest. The emulator's times say nothing of a GPU's; these check
// the schedule, the choice, what runs after it, and that every form computes the same step.
import * as fs from 'node:fs';
import * as path from 'node:path';

import t from 'tap';

import { prepare } from '../lib/index';
import { skip } from './emulator';
import { cli, tmpdir } from './helpers';

t.test('selftest --device cuda with NCF_CUDA_HIDDEN_FORWARD=one-buffer: the forward kernel with one staging buffer', { skip }, async (t) => {
  // The one-buffer form at ml-20m's hidden layers (256-128-64): in TF32 both layers instead of the
  // first alone (32-row tiles), in fp16 128-row tiles instead of 64, the staging buffer refilled
  // once each tile's first product read it (with 2 blocks, 5 tiles each in TF32, 1 and 2 in fp16).
  // Where two buffers fit as much (the narrower shapes), it declines to the chain.
  const one = cli(['selftest', '--device', 'cuda', '--no-training'], tmpdir(), { NCF_CUDA_HIDDEN_FORWARD: 'one-buffer' });
  t.equal(one.status, 0, one.stdout + one.stderr);
  for (const precision of ['tf32', 'fp16'])
    for (const blocks of ['', ', 2 blocks']) {
      const at = `${precision}${blocks}`;
      t.match(one.stdout, new RegExp(`hidden_forward 256-128-64, 300 rows \\(fused kernel for 2 of 2 layers\\) \\[${at}\\] .* ok`));
      for (const how of ['evaluation', 'training'])
        t.match(one.stdout, new RegExp(`hidden_forward 256-128-64, 300 rows, ${how}, first layer from its parts \\(in the kernel\\) \\[${at}\\] .* ok`));
      t.match(one.stdout, new RegExp(`hidden_forward 64-48-32-16, 397 rows \\(op chain\\) \\[${at}\\]`));
      t.match(one.stdout, new RegExp(`hidden_forward 32-16, 33 rows \\(op chain\\) \\[${at}\\]`));
    }
  t.notMatch(one.stdout, /FAIL/);
  // Every run of the kernel had one staging buffer (one line per precision's op runner).
  const lines = one.stderr.split('\n').filter((l) => l.startsWith('ncf cuda hidden_forward: '));
  t.ok(lines.length > 0, 'the kernel ran');
  for (const l of lines) t.match(l, /^ncf cuda hidden_forward: (\d+) runs of the fused kernel, \d+ with the first layer from its parts, \1 with one staging buffer$/);
});

t.test('--autotune times each kernel form on the run\'s own steps and batches, then runs the fastest', { skip }, async (t) => {
  const home = tmpdir();
  const dir = tmpdir();
  const { dir: data } = await prepare('synthetic:tiny', { out: path.join(dir, 'data'), seed: 2 });
  // 58,500 samples an epoch: 28 steps of 2,048 rows and one of 1,156, two epochs; evaluation
  // after each epoch in 15 batches of 20 users (2,020 rows).
  const run = (name: string, extra: string[], env: Record<string, string> = {}, shape = ['-e', '2', '--layers', '64', '32', '16']) => {
    const ck = path.join(dir, name);
    const r = cli(['train', '--data', data, '-b', '2048', '--eval-after', '0', '--seed', '3', '--factors', '16', ...shape,
      '--valid-users-per-batch', '20', '--backend', 'cuda', '--checkpoint-dir', ck, '--json', ...extra], home, env);
    t.equal(r.status, 0, r.status === 0 ? `${name} trains` : r.stderr);
    return { summary: JSON.parse(r.stdout), stderr: r.stderr };
  };
  const chain = run('amp-chain', ['--amp']);
  const tuned = run('amp-tuned', ['--amp', '--autotune']);
  // The tile kernels asked for: the forms they start from, and steps as CUDA Graphs (each form's
  // steps are graphs of their own).
  const fromBoth = run('amp-tuned-graphs', ['--amp', '--xla'], { NCF_CUDA_HIDDEN_FORWARD: '1', NCF_CUDA_HIDDEN_BACKWARD: '1', NCF_CUDA_AUTOTUNE: '1' });
  // Where the emulated chain is the fastest, the chosen forms run: each launch of gather_add_relu
  // (which hidden_forward's forms take inside the tile kernel) made 60 ms slower.
  const slowed = run('amp-tuned-slowed', ['--amp', '--autotune'], { NCF_EMU_SLOW_KERNEL: 'gather_add_relu:60' });
  // fp32 without TF32: the tile kernels decline every run, hidden_forward's too, though asked for
  // (the form the tuning starts from).
  const declined = run('fp32-tuned', ['--no-tf32', '--autotune'], { NCF_CUDA_HIDDEN_FORWARD: '1' });
  const forms = ['the op chain', 'hidden_forward', 'hidden_forward (one buffer)', 'hidden_backward', 'hidden_forward + hidden_backward',
    'hidden_forward (one buffer) + hidden_backward'];
  // (At these widths two staging buffers take every layer: the one-buffer forms decline.)
  const oneBuffer = (f: string) => f.startsWith('hidden_forward (one buffer)');
  // "<what> of <rows> rows: <chosen> (<ms> ms; <form> <ms> ms | <form> declined; ...; medians of 3 runs each)"
  const decision = (stderr: string, what: string) => {
    const m = new RegExp(`^ncf cuda autotune: ${what} of (\\d+) rows: (.+?) \\(([\\d.]+) ms((?:; .+?)*); medians of 3 runs each\\)$`, 'm').exec(stderr);
    if (!m) return undefined;
    const others = m[4].split('; ').slice(1).map((s) => /^(.+?) (?:([\d.]+) ms|declined)$/.exec(s)!);
    return { rows: Number(m[1]), chosen: m[2], ms: Number(m[3]), others: others.map((o) => ({ form: o[1], ms: o[2] === undefined ? undefined : Number(o[2]) })) };
  };
  const counts = (stderr: string, op: string) => Number(new RegExp(`ncf cuda ${op}: (\\d+) runs of the fused kernel`).exec(stderr)?.[1] ?? 0);
  for (const [name, r] of [['amp', tuned], ['amp from both kernels, graphs', fromBoth], ['amp, gather_add_relu slowed', slowed]] as const) {
    t.match(r.summary.info.kernels, /, kernel forms timed on the first steps$/, `${name}: the run says its forms are tuned`);
    const steps = decision(r.stderr, 'training steps'), batches = decision(r.stderr, 'evaluation batches');
    t.same(r.summary.autotune?.map((l: string) => `ncf cuda autotune: ${l}`), r.stderr.split('\n').filter((l) => l.startsWith('ncf cuda autotune: ')),
      `${name}: the summary has the decisions`);
    t.ok(steps && batches, `${name}: a decision for the steps and for the batches`);
    if (!steps || !batches) continue;
    t.equal(steps.rows, 2048, 'tuned on the full batches');
    t.same([steps.chosen, ...steps.others.map((o) => o.form)].sort(), [...forms].sort(), 'the steps raced every form');
    t.same([batches.chosen, ...batches.others.map((o) => o.form)].sort(), ['hidden_forward', 'hidden_forward (one buffer)', 'the op chain'],
      'the batches raced the forms of hidden_forward against the chain');
    for (const d of [steps, batches]) {
      t.notOk(oneBuffer(d.chosen), `${name}: the one-buffer forms are not chosen`);
      for (const o of d.others) {
        if (oneBuffer(o.form)) t.equal(o.ms, undefined, `${name}: ${o.form} declined`);
        else t.ok(o.ms !== undefined && o.ms >= d.ms, `${d.chosen} (${d.ms} ms) is the fastest: ${o.form} ${o.ms} ms`);
      }
    }
    // Of the 58 steps, 18 tuned: a warm-up of each of the 6 forms (the two one-buffer ones
    // declining there; the forward pass of one then ran as the chain, its backward pass in
    // hidden_backward), then 3 timed steps of each of the 4 others. The other 40 (38 full, 2 of the
    // last shape) ran the chosen forms. Of the 30 evaluation batches, 3 + 3 x 2 tuned, 21 as chosen.
    const forward = (f: string) => f.startsWith('hidden_forward'), backward = (f: string) => f.endsWith('hidden_backward');
    t.equal(counts(r.stderr, 'hidden_forward'), 8 + (forward(steps.chosen) ? 40 : 0) + 4 + (forward(batches.chosen) ? 21 : 0),
      `${name}: hidden_forward ran in the tuning and then as chosen (${steps.chosen}; ${batches.chosen})`);
    t.equal(counts(r.stderr, 'hidden_backward'), 9 + (backward(steps.chosen) ? 40 : 0), `${name}: and hidden_backward`);
    t.notMatch(r.stderr, /with one staging buffer/, `${name}: no run of hidden_forward with one staging buffer`);
    r.summary.epochs.forEach((e: { loss: number; hr: number }, i: number) => {
      const c = chain.summary.epochs[i];
      // (Every form computes the same step; only the order of sums differs.)
      t.ok(Math.abs(e.loss - c.loss) < 1e-3 * c.loss, `${name}: epoch ${i + 1} loss ${e.loss} vs the chain's ${c.loss}`);
      t.ok(Math.abs(e.hr - c.hr) <= 0.01, `${name}: epoch ${i + 1} HR@10 ${e.hr} vs the chain's ${c.hr}`);
    });
  }
  for (const what of ['training steps', 'evaluation batches'])
    t.match(decision(slowed.stderr, what)?.chosen, /^hidden_forward/, `with gather_add_relu slowed, the ${what} chose a form with hidden_forward`);
  const graphs = /ncf cuda graph: (\d+) steps launched as graphs, (\d+) uncaptured; (\d+) instantiations/.exec(fromBoth.stderr);
  // An uncaptured first step per form (the two one-buffer forms, declining there, never ran again)
  // and for the last shape; a graph for each of the 4 forms that raced and for the last shape.
  t.same(graphs?.slice(2).map(Number), [7, 5], 'a graph per form in the race and one for the last shape, each after an uncaptured first step');
  // TF32 at ml-20m's hidden layers (256-128-64), one epoch: two staging buffers take the first layer
  // alone, one buffer both; every form races (6 x 4 of the 29 steps, 3 x 4 of the 15 batches).
  const wide = ['-e', '1', '--layers', '256', '256', '128', '64'];
  const wideChain = run('tf32-wide-chain', [], {}, wide), wideTuned = run('tf32-wide-tuned', ['--autotune'], {}, wide);
  const wideSteps = decision(wideTuned.stderr, 'training steps'), wideBatches = decision(wideTuned.stderr, 'evaluation batches');
  t.ok(wideSteps && wideBatches, 'TF32, 256-128-64: a decision for the steps and for the batches');
  if (wideSteps && wideBatches) {
    t.same([wideSteps.chosen, ...wideSteps.others.map((o) => o.form)].sort(), [...forms].sort(), 'TF32, 256-128-64: the steps raced every form');
    t.ok(wideSteps.others.every((o) => o.ms !== undefined && o.ms >= wideSteps.ms), 'none declined, the fastest chosen');
    t.same([wideBatches.chosen, ...wideBatches.others.map((o) => o.form)].sort(), ['hidden_forward', 'hidden_forward (one buffer)', 'the op chain']);
    t.ok(wideBatches.others.every((o) => o.ms !== undefined && o.ms >= wideBatches.ms), 'none declined, the fastest chosen');
    // After the tuning: 5 steps (4 full, the last shape) and 3 batches of the chosen forms.
    const runs = (pick: (f: string) => boolean, tuning: number) => tuning + (pick(wideSteps.chosen) ? 5 : 0) + (pick(wideBatches.chosen) ? 3 : 0);
    const forward = (f: string) => f.startsWith('hidden_forward');
    t.equal(counts(wideTuned.stderr, 'hidden_forward'), runs(forward, 16 + 8), `hidden_forward's runs (${wideSteps.chosen}; ${wideBatches.chosen})`);
    t.match(wideTuned.stderr, new RegExp(`ncf cuda hidden_forward: .*, ${runs(oneBuffer, 8 + 4)} with one staging buffer`), 'and those with one staging buffer');
  }
  const [w, wc] = [wideTuned.summary.epochs[0], wideChain.summary.epochs[0]];
  t.ok(Math.abs(w.loss - wc.loss) < 1e-3 * wc.loss && Math.abs(w.hr - wc.hr) <= 0.01, `TF32, 256-128-64: loss ${w.loss}, HR@10 ${w.hr} vs the chain's ${wc.loss}, ${wc.hr}`);
  const none = decision(declined.stderr, 'training steps');
  t.same(none && [none.chosen, none.others.map((o) => o.ms)], ['the op chain', [undefined, undefined, undefined, undefined, undefined]],
    'without TF32 every tile kernel declines: the chain');
  t.notMatch(declined.stderr, /ncf cuda hidden_/, 'and no tile kernel ran');
  t.notMatch(chain.stderr, /autotune/, 'nothing tuned without --autotune');
  t.notOk('autotune' in chain.summary, 'and the summary has no decision');
  t.notMatch(chain.summary.info.kernels, /timed/);
  // bench train reports the decision and writes it into its figures.
  const out = path.join(dir, 'bench.json');
  const bench = cli(['bench', 'train', '--synthetic', 'tiny', '-e', '1', '-b', '2048', '--backend', 'cuda', '--autotune', '--out', out], home);
  t.equal(bench.status, 0, bench.status === 0 ? 'bench train --autotune runs' : bench.stderr);
  t.match(bench.stdout, /^autotune: training steps of 2048 rows: .+ ms/m);
  t.match(JSON.parse(fs.readFileSync(out, 'utf8')).autotune, [/^training steps of 2048 rows: /]);
  // A run too short to time every form says so at its end: 3 evaluations of one 30,300-row batch.
  const evalOut = path.join(dir, 'bench-eval.json');
  const short = cli(['bench', 'eval', '--synthetic', 'tiny', '-b', '2048', '--repeats', '3', '--backend', 'cuda', '--autotune', '--out', evalOut], home);
  t.equal(short.status, 0, short.status === 0 ? 'bench eval --autotune runs' : short.stderr);
  t.match(short.stderr, /^ncf cuda autotune: evaluation batches of 30300 rows: not decided, the run ended after 3 of them \(timing 3 forms takes up to 12\)$/m);
  t.notOk('autotune' in JSON.parse(fs.readFileSync(evalOut, 'utf8')), 'and its figures name no choice');
});

