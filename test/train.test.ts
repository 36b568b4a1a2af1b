// Training end to end on small synthetic data: HR@10 rises far above random ranking, the run is
// reported as events, an async iterator and a promise, checkpoints round-trip, the evaluation
// agrees with HR@10 recomputed here from the model's scores, and --resume continues a run.
import * as fs from 'node:fs';
import * as path from 'node:path';

import t from 'tap';

import { Dataset, loadModel, NeuMF, prepare, train, type EpochReport } from '../lib/index';
import { tmpdir } from './helpers';

const BASE = { batchSize: 2048, factors: 16, layers: [64, 64, 32, 16], evalAfter: 0, backend: 'cpu' as const, seed: 7 };

t.test('training on synthetic data: HR@10 rises far above random, and the run reports each epoch', async (t) => {
  const dir = tmpdir();
  const { dir: data } = await prepare('synthetic:small', { out: path.join(dir, 'data') });
  const run = train({ ...BASE, data, epochs: 6, checkpointDir: path.join(dir, 'ck'), logPath: path.join(dir, 'log.json') });
  const events: EpochReport[] = [];
  run.on('epoch', (r) => events.push(r));
  let starts = 0;
  run.on('start', () => starts++);
  const iterated: number[] = [];
  for await (const r of run) iterated.push(r.epoch);
  const s = await run;
  t.equal(starts, 1);
  t.same(iterated, [1, 2, 3, 4, 5, 6], 'the async iterator yields every epoch');
  t.same(events.map((e) => e.epoch), iterated, "and so do 'epoch' events");
  t.ok(s.epochs[0].hr! < s.bestHr, `HR@10 rises: ${s.epochs.map((e) => e.hr!.toFixed(3)).join(' ')}`);
  t.ok(s.bestHr > 0.3, `best HR@10 ${s.bestHr.toFixed(3)} is far above random ranking (~0.1)`);
  const untrained = await train({ ...BASE, data, mode: 'test' });
  t.ok(untrained.bestHr > 0.03 && untrained.bestHr < 0.2, `an untrained model ranks like chance: HR@10 ${untrained.bestHr.toFixed(3)}`);
  t.ok(s.epochs[5].loss < s.epochs[0].loss, 'the loss falls');
  t.ok(s.averageTrainThroughput > 0 && s.epochs.every((e) => e.samplesPerSecond > 0));
  t.equal(s.checkpointPath, path.join(dir, 'ck', 'model.safetensors'));
  const log = fs.readFileSync(path.join(dir, 'log.json'), 'utf8').trim().split('\n');
  t.ok(log.every((l) => l.startsWith('DLLL {')), 'the log is DLLogger JSON lines');
  const last = JSON.parse(log[log.length - 1].slice(5));
  t.equal(last.data.best_hr, s.bestHr);
  t.equal(JSON.parse(log[0].slice(5)).step, 'PARAMETER');
});

t.test('checkpoint round trip, --mode test, and HR@10 recomputed from the served model', async (t) => {
  const dir = tmpdir();
  const { dir: data } = await prepare('synthetic:tiny', { out: path.join(dir, 'data'), seed: 2 });
  const ckdir = path.join(dir, 'ck');
  const s = await train({ ...BASE, batchSize: 1024, data, epochs: 4, checkpointDir: ckdir });
  const ck = loadModel(path.join(ckdir, 'model.safetensors'));
  t.equal(ck.epoch, s.bestEpoch);
  t.equal(ck.hr, s.bestHr);
  t.equal(ck.dataDir, path.resolve(data));

  // Evaluating the saved model gives the best epoch's figures again.
  const again = await train({ ...BASE, mode: 'test', loadCheckpointPath: path.join(ckdir, 'model.safetensors') });
  t.equal(again.bestHr, s.bestHr, 'test mode reproduces the HR@10 of the saved epoch');
  t.equal(again.bestNdcg, s.bestNdcg);

  // The same HR@10 from scores: rank each user's positive among its 100 negatives here.
  const d = Dataset.load(data);
  const model = await NeuMF.load(path.join(ckdir, 'model.safetensors'), { device: 'cpu', data: false });
  const U = d.nUsers, L = 101;
  const users = new Uint32Array(U * L), items = new Uint32Array(U * L);
  for (let u = 0; u < U; u++) {
    users.fill(u, u * L, u * L + L);
    items[u * L] = d.testItems[u];
    items.set(d.testNegatives.subarray(u * 100, u * 100 + 100), u * L + 1);
  }
  const scores = await model.score(users, items);
  let hits = 0, dcg = 0;
  for (let u = 0; u < U; u++) {
    const pos = scores[u * L];
    const seen = new Set<number>([items[u * L]]);
    let rank = 0;
    for (let j = 1; j < L; j++) {
      const it = items[u * L + j];
      if (seen.has(it)) continue;
      seen.add(it);
      if (scores[u * L + j] >= pos) rank++;
    }
    if (rank < 10) {
      hits++;
      dcg += 1 / Math.log2(rank + 2);
    }
  }
  t.ok(Math.abs(hits / U - s.bestHr) <= 2 / U, `HR@10 from scores ${hits / U} matches ${s.bestHr} (ties of sigmoid scores aside)`);
  t.ok(Math.abs(dcg / U - s.bestNdcg) < 0.01);
  model.close();
});

t.test('--resume continues from the saved state; cancel() stops a run', async (t) => {
  const dir = tmpdir();
  const { dir: data } = await prepare('synthetic:tiny', { out: path.join(dir, 'data'), seed: 2 });
  const ckdir = path.join(dir, 'ck');
  const full = await train({ ...BASE, batchSize: 1024, data, epochs: 4 });
  await train({ ...BASE, batchSize: 1024, data, epochs: 2, checkpointDir: ckdir });
  const resumed = await train({ ...BASE, batchSize: 1024, data, epochs: 4, checkpointDir: ckdir, resume: true });
  t.same(resumed.epochs.map((e) => e.epoch), [3, 4], 'resumes after epoch 2');
  t.ok(Math.abs(resumed.epochs[1].loss - full.epochs[3].loss) < 1e-6, `epoch 4 loss equals the uninterrupted run's (${resumed.epochs[1].loss} vs ${full.epochs[3].loss})`);
  t.equal(resumed.epochs[1].hr, full.epochs[3].hr);

  const run = train({ ...BASE, batchSize: 256, data, epochs: 50 });
  run.on('epoch', (r) => {
    if (r.epoch === 2) run.cancel();
  });
  const s = await run;
  t.equal(s.cancelled, true);
  t.ok(s.epochs.length <= 3, `stopped after ${s.epochs.length} epochs`);
});

t.test('a batch too large for the data is refused with a suggestion', async (t) => {
  const dir = tmpdir();
  const { dir: data } = await prepare('synthetic:tiny', { out: path.join(dir, 'data') });
  await t.rejects(train({ data, backend: 'cpu' }), /batch size 1048576 is not smaller than one epoch of synthetic-tiny \(58500 samples: 11700 positives x 5\), so every epoch would be a single step; use a smaller batch for this dataset, e\.g\. -b 512/);
  await t.rejects(train({ data, backend: 'cpu', epochs: 0 }), /option 'epochs' must be an integer in 1\.\.100000, got 0/);
  await t.rejects(train({ data, backend: 'cpu', bogus: 1 } as never), /train: unknown option 'bogus'/);
});

t.test('the first layer by parts trains like the first layer per row', async (t) => {
  const dir = tmpdir();
  const { dir: data } = await prepare('synthetic:small', { out: path.join(dir, 'data') });
  const saved = process.env.NCF_FIRST_LAYER;
  t.teardown(() => {
    if (saved === undefined) delete process.env.NCF_FIRST_LAYER;
    else process.env.NCF_FIRST_LAYER = saved;
  });
  const runWith = async (mode: string) => {
    process.env.NCF_FIRST_LAYER = mode;
    return train({ ...BASE, data, epochs: 2 });
  };
  // 2,048 rows per batch against 2,000 users and 1,000 items: per row unless forced.
  delete process.env.NCF_FIRST_LAYER;
  const auto = await train({ ...BASE, data, epochs: 1, mode: 'test' });
  t.match(auto.info.kernels, /first layer per row/);
  const rows = await runWith('rows'), parts = await runWith('parts');
  t.match(parts.info.kernels, /first layer by parts/);
  rows.epochs.forEach((r, i) => {
    const p = parts.epochs[i];
    t.ok(Math.abs(p.loss - r.loss) < 1e-3 * r.loss, `epoch ${i + 1} loss by parts ${p.loss} vs per row ${r.loss}`);
    t.ok(Math.abs(p.hr! - r.hr!) <= 0.02, `epoch ${i + 1} HR@10 by parts ${p.hr} vs per row ${r.hr}`);
  });
  process.env.NCF_FIRST_LAYER = 'columns';
  await t.rejects(train({ ...BASE, data, epochs: 1 }), /NCF_FIRST_LAYER is 'columns': expected parts, rows or auto/);
});
