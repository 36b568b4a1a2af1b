// The command line as a user meets it: help, the main path (prepare, train, test, recommend), and
// bad input, which must end with a message saying what is wrong and a non-zero exit code
// (2 for bad usage or input, 1 for failures while running).
import * as fs from 'node:fs';
import * as path from 'node:path';

import t from 'tap';

import { formatSwitches, kernelSwitches } from '../lib/util/switches';
import { cli, interactionsCsv, tmpdir, write } from './helpers';

t.test('help and version', async (t) => {
  const home = tmpdir();
  const help = cli(['--help'], home);
  t.equal(help.status, 0);
  for (const cmd of ['prepare', 'train', 'test', 'bench', 'recommend', 'selftest', 'info']) t.match(help.stdout, cmd);
  const th = cli(['train', '--help'], home);
  for (const opt of ['--data', '-e, --epochs', '-b, --batch-size', '--valid-users-per-batch', '-f, --factors', '--layers', '-n, --negative-samples', '-l, --learning-rate', '-k, --topk', '--seed', '-t, --target', '--amp', '--valid-negative', '--beta1', '--beta2', '--eps', '--dropout', '--loss-scale', '--checkpoint-dir', '--load-checkpoint-path', '--mode', '--no-neg-trick', '--eval-after', '--log-path', '--verbose', '--backend', '--resume', '--threads'])
    t.match(th.stdout, opt, `train has ${opt}`);
  t.match(cli(['--version'], home).stdout, /^\d+\.\d+\.\d+/);
});

t.test('prepare, train, test and recommend on a CSV', async (t) => {
  const home = tmpdir();
  const dir = tmpdir();
  const csv = write(dir, 'ratings.csv', interactionsCsv(60, 80, (u) => 20 + (u % 7)));
  const prep = cli(['prepare', csv, '--out', path.join(dir, 'data')], home);
  t.equal(prep.status, 0, prep.stderr);
  t.match(prep.stdout, /60 users, 80 items/);
  t.match(cli(['prepare', csv, '--out', path.join(dir, 'data')], home).stdout, /already prepared/);

  const ck = path.join(dir, 'ck');
  const tr = cli(['train', '--data', path.join(dir, 'data'), '-b', '512', '-e', '3', '--eval-after', '1', '--seed', '3', '--checkpoint-dir', ck, '--log-path', path.join(dir, 'log.json'), '--amp', '--xla', '--autotune', '--backend', 'cpu'], home, { NCF_FIRST_LAYER: 'parts' });
  t.equal(tr.status, 0, tr.stderr);
  t.match(tr.stdout, /; seed 3; switches (\S+ )*NCF_FIRST_LAYER=parts\b/, 'the run names the kernel switches it was started with');
  t.match(tr.stdout, /--amp: the CPU backend trains in fp32/);
  t.match(tr.stdout, /--xla: training steps run op by op here/, '--xla (steps as CUDA Graphs) says where it does not apply');
  t.match(tr.stdout, /--autotune: nothing to tune here/, 'and --autotune');
  t.match(tr.stdout, /epoch 1\/3  train [\d.]+ s  loss [\d.]+  [\d.]+K samples\/s/);
  t.match(tr.stdout, /epoch 3\/3  train [\d.]+ s  eval [\d.]+ s  hr@10 [\d.]+  ndcg [\d.]+/);
  t.match(tr.stdout, /model saved to .*model\.safetensors/);

  const te = cli(['test', '--checkpoint', path.join(ck, 'model.safetensors'), '--backend', 'cpu'], home);
  t.equal(te.status, 0, te.stderr);
  t.match(te.stdout, /hr@10 [\d.]+  ndcg [\d.]+/);

  const rec = cli(['recommend', '--checkpoint', path.join(ck, 'model.safetensors'), '--user', '5', '-k', '4', '--json', '--device', 'cpu'], home);
  t.equal(rec.status, 0, rec.stderr);
  const out = JSON.parse(rec.stdout) as { user: number; items: number[]; scores: number[] }[];
  t.equal(out[0].user, 5);
  t.equal(out[0].items.length, 4);
  const seen = new Set(fs.readFileSync(csv, 'utf8').split('\n').filter((l) => l.startsWith('5,')).map((l) => Number(l.split(',')[1])));
  t.ok(out[0].items.every((i) => !seen.has(i)), 'seen items are excluded by default');
  t.ok(out[0].scores.every((s, i) => i === 0 || s <= out[0].scores[i - 1]), 'best first');
  const unknown = cli(['recommend', '--checkpoint', path.join(ck, 'model.safetensors'), '--user', '999999', '--device', 'cpu'], home);
  t.equal(unknown.status, 2);
  t.match(unknown.stderr, /unknown user id 999999/);
});

// bench train and bench eval on the CPU backend: one line per figure and a JSON file of them. The
// training batch must be smaller than an epoch (a one-step epoch trains badly); evaluation trains
// nothing, so its default batch does not stop a small dataset.
t.test('bench train and bench eval: figures and their JSON', async (t) => {
  const home = tmpdir();
  const dir = tmpdir();
  const trainOut = path.join(dir, 'train.json'), evalOut = path.join(dir, 'eval.json');
  const tr = cli(['bench', 'train', '--synthetic', 'tiny', '-b', '4096', '-e', '2', '--backend', 'cpu', '--out', trainOut], home);
  t.equal(tr.status, 0, tr.status === 0 ? 'bench train runs' : tr.stderr);
  t.match(tr.stdout, /^epoch 1: [\d.]+M samples in [\d.]+ s = [\d.]+M samples\/s, loss [\d.]+ \(warm-up\)$/m);
  t.match(tr.stdout, /^train throughput: [\d.]+M samples\/s$/m);
  const tf = JSON.parse(fs.readFileSync(trainOut, 'utf8'));
  t.equal(tf.epochs.length, 2);
  t.ok(tf.trainSamplesPerSecond > 0 && tf.trainSamplesPerSecond === tf.epochs[1].samplesPerSecond, 'the mean leaves the warm-up out');
  const ev = cli(['bench', 'eval', '--synthetic', 'tiny', '--repeats', '2', '--backend', 'cpu', '--out', evalOut], home);
  t.equal(ev.status, 0, ev.status === 0 ? 'bench eval runs with the default batch' : ev.stderr);
  t.match(ev.stdout, /^eval throughput: [\d.]+M samples\/s$/m);
  const ef = JSON.parse(fs.readFileSync(evalOut, 'utf8'));
  t.equal(ef.evals.length, 2);
  t.ok(ef.evals.every((e: { hr: number }) => e.hr >= 0 && e.hr <= 1));
  t.ok(ef.batchSize <= 58500, `the trainer behind it holds at most one epoch's batch (${ef.batchSize})`);
  const big = cli(['bench', 'train', '--synthetic', 'tiny', '--backend', 'cpu', '--out', trainOut], home);
  t.equal(big.status, 2);
  t.match(big.stderr, /batch size 1048576 is not smaller than one epoch of synthetic-tiny/);
});

t.test('bad input: clear messages and exit codes', async (t) => {
  const home = tmpdir();
  const dir = tmpdir();
  const cases: { args: string[]; status: number; msg: RegExp }[] = [
    { args: ['train', '--bogus'], status: 2, msg: /error: unknown option '--bogus'/ },
    { args: ['frobnicate'], status: 2, msg: /error: unknown command 'frobnicate'/ },
    { args: ['train', '-b', 'abc'], status: 2, msg: /option '-b, --batch-size <n>' argument 'abc' is invalid\. expected an integer in 1\.\./ },
    { args: ['train', '--dropout', '1.5'], status: 2, msg: /argument '1\.5' is invalid\. expected a number in \[0, 0\.999\]/ },
    { args: ['prepare', path.join(dir, 'nope.csv')], status: 2, msg: /source '.*nope\.csv' is not ml-20m, ml-1m, synthetic\[:SHAPE\] or an existing file or folder/ },
    { args: ['prepare', write(dir, 'ids.csv', 'user,item\n1,2\nbob,3\n')], status: 2, msg: /ids\.csv:3: user id \(column 0\) is not an integer/ },
    { args: ['prepare', write(dir, 'cols.csv', 'a,b\n1,2\n'), '--item-col', 'movie'], status: 2, msg: /cols\.csv has no column named 'movie' for the item \(its columns are: a, b\)/ },
    { args: ['prepare', write(dir, 'empty.csv', '\n\n')], status: 2, msg: /empty\.csv: the file is empty/ },
    { args: ['prepare', write(dir, 'few.csv', '1,2\n1,3\n')], status: 2, msg: /no user has at least 20 interactions/ },
    { args: ['prepare', 'synthetic:huge'], status: 2, msg: /unknown synthetic shape 'huge' \(choose from ml-20m, ml-1m, ml-100k, small, tiny\)/ },
    { args: ['train', '--data', 'synthetic:tiny', '--backend', 'cpu'], status: 2, msg: /batch size 1048576 is not smaller than one epoch of synthetic-tiny/ },
    { args: ['train', '--data', path.join(dir, 'missing-dir')], status: 2, msg: /missing-dir' is not ml-20m, ml-1m/ },
    { args: ['test', '--checkpoint', write(dir, 'junk.safetensors', 'not a checkpoint at all')], status: 2, msg: /junk\.safetensors: header length is beyond the file/ },
    { args: ['recommend', '--checkpoint', path.join(dir, 'none.safetensors'), '--user', '1'], status: 2, msg: /none\.safetensors: no such file/ },
    { args: ['recommend', '--checkpoint', 'x', '--user', 'abc'], status: 2, msg: /option '--user' must be a comma-separated list of integer ids, got 'abc'/ },
  ];
  for (const c of cases) {
    const r = cli(c.args, home);
    t.equal(r.status, c.status, `${c.args.join(' ')} exits ${c.status}`);
    t.match(r.stderr, c.msg, `${c.args.join(' ')}: ${r.stderr.trim().split('\n')[0]}`);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

t.test('the kernel switches a run records: NCF_CUDA_* and NCF_FIRST_LAYER, set and not empty', async (t) => {
  const env = { NCF_CUDA_MAX_BLOCKS: '2', NCF_FIRST_LAYER: 'rows', NCF_NATIVE_HOME: '/x', NCF_CUDA_GRAPH: '', PATH: '/bin', NCF_CUDA_HIDDEN_FORWARD: '1' };
  t.same(kernelSwitches(env), { NCF_CUDA_HIDDEN_FORWARD: '1', NCF_CUDA_MAX_BLOCKS: '2', NCF_FIRST_LAYER: 'rows' });
  t.equal(formatSwitches(kernelSwitches(env)), 'NCF_CUDA_HIDDEN_FORWARD=1 NCF_CUDA_MAX_BLOCKS=2 NCF_FIRST_LAYER=rows');
  t.equal(formatSwitches(kernelSwitches({ PATH: '/bin' })), '');
});
