// Serving: NeuMF.load, score, recommend (full catalog with the split first layer, candidates,
// seen items excluded, original ids), and the example HTTP service against good and bad requests.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';

import t from 'tap';

import { createRecommendServer } from '../examples/http-server';
import { Dataset, NeuMF, prepare, train } from '../lib/index';
import { tmpdir } from './helpers';

async function trainedModel() {
  const dir = tmpdir();
  const { dir: data } = await prepare('synthetic:tiny', { out: path.join(dir, 'data'), seed: 4 });
  await train({ data, batchSize: 1024, epochs: 3, evalAfter: 3, factors: 16, layers: [64, 32, 16], backend: 'cpu', seed: 1, checkpointDir: path.join(dir, 'ck') });
  return { data, checkpoint: path.join(dir, 'ck', 'model.safetensors') };
}

t.test('recommend agrees with brute-force scoring of every item', async (t) => {
  const { data, checkpoint } = await trainedModel();
  const model = await NeuMF.load(checkpoint, { device: 'cpu' });
  t.teardown(() => model.close());
  const d = Dataset.load(data);
  t.equal(model.dataset?.dir, path.resolve(data), "the checkpoint's dataset is found");
  for (const userIndex of [0, 17, 299]) {
    const user = d.userIds[userIndex];
    const items = Array.from(d.itemIds);
    const scores = await model.score(items.map(() => user), items);
    const seen = new Set([...d.items.subarray(d.offsets[userIndex], d.offsets[userIndex + 1]), d.testItems[userIndex]].map((i) => d.itemIds[i]));
    const ranked = items.map((item, i) => ({ item, s: scores[i] })).sort((a, b) => b.s - a.s || a.item - b.item);
    const all = await model.recommend(user, { k: 5 });
    t.same(all.items, ranked.slice(0, 5).map((r) => r.item), `user ${user}: full-catalog top 5 = brute force`);
    all.scores.forEach((s, i) => t.ok(Math.abs(s - ranked[i].s) < 1e-5));
    const unseen = await model.recommend(user, { k: 5, excludeSeen: true });
    t.same(unseen.items, ranked.filter((r) => !seen.has(r.item)).slice(0, 5).map((r) => r.item), 'seen items excluded');
    const cands = [items[3], items[50], items[7], items[120]];
    const c = model.recommendSync(user, { k: 2, candidates: cands });
    t.same(c.items, ranked.filter((r) => cands.includes(r.item)).slice(0, 2).map((r) => r.item), 'ranks only the candidates');
  }
  const many = await model.recommend([d.userIds[1], d.userIds[2]], { k: 3 });
  t.equal(many.length, 2);
  t.same(many[1], await model.recommend(d.userIds[2], { k: 3 }));
  const huge = await model.recommend(d.userIds[0], { k: 10000, excludeSeen: true });
  t.equal(huge.items.length, d.nItems - (d.offsets[1] - d.offsets[0]) - 1, 'k beyond the catalog returns every unseen item');
  await t.rejects(model.recommend(123456789), /unknown user id 123456789/);
  await t.rejects(model.score([d.userIds[0]], [999999]), /unknown item id 999999/);
  await t.rejects(model.recommend(d.userIds[0], { k: 0 }), /option 'k' must be an integer in 1\.\.100000, got 0/);
});

t.test('scoring with and without precomputed user parts of the first layer agrees', async (t) => {
  const { data, checkpoint } = await trainedModel();
  const split = await NeuMF.load(checkpoint, { device: 'cpu' });
  const full = await NeuMF.load(checkpoint, { device: 'cpu', userPartsMemory: 0 });
  t.teardown(() => [split, full].forEach((m) => m.close()));
  const d = Dataset.load(data);
  const users = Array.from({ length: 3000 }, (_, i) => d.userIds[(i * 7) % d.nUsers]);
  const items = Array.from({ length: 3000 }, (_, i) => d.itemIds[(i * 13) % d.nItems]);
  const a = await split.score(users, items), b = await full.score(users, items);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  t.ok(worst < 1e-5, `the two first-layer paths agree: max |difference| ${worst.toExponential(2)}`);
  t.same((await full.recommend(d.userIds[5], { k: 5 })).items, (await split.recommend(d.userIds[5], { k: 5 })).items);
  await t.rejects(NeuMF.load(checkpoint, { device: 'cpu', userPartsMemory: -1 }), /userPartsMemory/);
});

t.test('without its dataset a model takes dense indices', async (t) => {
  const { checkpoint } = await trainedModel();
  const model = await NeuMF.load(checkpoint, { device: 'cpu', data: false });
  t.teardown(() => model.close());
  t.equal(model.usesOriginalIds, false);
  const r = await model.recommend(3, { k: 4 });
  t.equal(r.items.length, 4);
  t.ok(r.items.every((i) => i >= 0 && i < model.config.nItems));
  await t.rejects(model.recommend(3, { excludeSeen: true }), /excludeSeen needs the dataset/);
  await t.rejects(model.recommend(300), /user 300 is not a user index in 0\.\.299/);
});

async function get(base: string, p: string, method = 'GET'): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = http.request(base + p, { method }, (res) => {
      let s = '';
      res.on('data', (c) => (s += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(s) }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('the example HTTP service', async (t) => {
  const { checkpoint } = await trainedModel();
  const model = await NeuMF.load(checkpoint, { device: 'cpu' });
  const server = createRecommendServer(model, { maxK: 50 });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.close();
    model.close();
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const user = model.dataset!.userIds[7];
  const ok = await get(base, `/recommend?user=${user}&k=6`);
  t.equal(ok.status, 200);
  const want = await model.recommend(user, { k: 6, excludeSeen: true });
  t.same(ok.body, { user, items: want.items.map((item, i) => ({ item, score: want.scores[i] })) }, 'the same answer as model.recommend');
  const withSeen = await get(base, `/recommend?user=${user}&k=6&exclude_seen=false`);
  t.same((withSeen.body.items as { item: number }[]).map((x) => x.item), (await model.recommend(user, { k: 6 })).items);
  const bad: [string, number, RegExp][] = [
    ['/recommend?user=424242', 404, /unknown user id 424242/],
    ['/recommend?user=abc', 400, /'user' must be an integer, got 'abc'/],
    ['/recommend', 400, /missing query parameter 'user'/],
    [`/recommend?user=${user}&k=0`, 400, /'k' must be in 1\.\.50, got 0/],
    [`/recommend?user=${user}&k=51`, 400, /'k' must be in 1\.\.50, got 51/],
    [`/recommend?user=${user}&k=2.5`, 400, /'k' must be an integer/],
    [`/recommend?user=${user}&exclude_seen=maybe`, 400, /'exclude_seen' must be true or false/],
    ['/nothing', 404, /no such endpoint \/nothing/],
  ];
  for (const [p, status, msg] of bad) {
    const r = await get(base, p);
    t.equal(r.status, status, `${p} -> ${status}`);
    t.match(String(r.body.error), msg);
  }
  t.equal((await get(base, '/recommend?user=1', 'POST')).status, 405);
  t.equal((await get(base, '/health')).status, 200, 'still serving after bad requests');
});
