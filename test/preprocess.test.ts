// Preprocessing on small hand-made files: exact outputs (filtering, id maps, stable time order,
// duplicates, held-out item, verified negatives), formats, and errors that name the line.
import * as fs from 'node:fs';
import * as path from 'node:path';

import t from 'tap';

import { Dataset, ParseError, prepare } from '../lib/index';
import { tmpdir, write } from './helpers';

const HAND = `user,item,rating,ts
100,5000,5,10
100,7,3,20
100,5000,4,30
100,42,2,30
100,9,1,30
7,7,5,5
7,5000,5,1
7,42,3,3
3,9,1,1
3,7,1,2
7,8888,1,0
`;

t.test('hand-made file: filter, maps, stable time order, duplicates, held-out item, negatives', async (t) => {
  const dir = tmpdir();
  const file = write(dir, 'hand.csv', HAND);
  const r = await prepare(file, { out: path.join(dir, 'out'), minRatings: 3, testNegatives: 5 });
  const d = Dataset.load(r.dir);
  t.same(Array.from(d.userIds), [100, 7], 'users in order of first appearance; user 3 (2 rows) dropped');
  t.same(Array.from(d.itemIds), [5000, 7, 42, 9, 8888], 'items in order of first appearance among kept rows');
  t.same(Array.from(d.offsets), [0, 3, 6]);
  t.same(Array.from(d.items), [0, 1, 2, 0, 2, 4], "each user's training items, ascending");
  // user 100: 42 and 9 share ts 30 and 9 comes later in the file, so 9 is the latest; the second
  // (100, 5000) is a duplicate of the earlier one and is dropped.
  t.same(Array.from(d.testItems), [3, 1], 'the latest item of each user is held out');
  t.same(Array.from(d.testNegatives), [4, 4, 4, 4, 4, 3, 3, 3, 3, 3], 'negatives are only items the user never had');
  t.equal(r.meta.counts.duplicates, 1);
  t.equal(r.meta.counts.droppedUsers, 1);
  t.equal(r.meta.counts.droppedRows, 2);
  t.equal(r.meta.counts.rows, 11);
});

t.test('default minimum of 20 ratings (counted before de-duplication)', async (t) => {
  const dir = tmpdir();
  const rows = ['u,i,r,t'];
  for (let k = 0; k < 20; k++) rows.push(`1,${k % 5},1,${k}`); // 20 rows, 5 distinct items
  for (let k = 0; k < 19; k++) rows.push(`2,${k},1,${k}`);
  for (let k = 0; k < 25; k++) rows.push(`3,${k + 100},1,${k}`);
  const r = await prepare(write(dir, 'm.csv', rows.join('\n')), { out: path.join(dir, 'o') });
  const d = Dataset.load(r.dir);
  t.same(Array.from(d.userIds), [1, 3], 'user 2 (19 rows) is dropped, user 1 (20 rows, 5 items) kept');
  t.equal(d.offsets[1] - d.offsets[0], 4, 'user 1 keeps 5 distinct items, one held out');
  t.equal(r.meta.counts.duplicates, 15);
});

t.test('sparse and very large ids keep their exact values', async (t) => {
  const dir = tmpdir();
  const ids = [9007199254740991, -5, 123456789012, 0];
  const rows = ['user,item,time'];
  for (const u of ids) for (let k = 0; k < 4; k++) rows.push(`${u},${Math.abs(u % 1000) * 10 + k},${k}`);
  const r = await prepare(write(dir, 's.csv', rows.join('\n')), { out: path.join(dir, 'o'), minRatings: 1 });
  const d = Dataset.load(r.dir);
  t.same(Array.from(d.userIds), ids);
  t.equal(d.nItems, 16);
  t.equal(d.userIndexOf(123456789012), 2);
});

t.test('formats: MovieLens u.data (tab), ratings.dat (::), named columns, no timestamps', async (t) => {
  const dir = tmpdir();
  const tab = Array.from({ length: 30 }, (_, k) => `${1 + (k % 2)}\t${10 + k}\t3\t${100 - k}`).join('\n');
  const a = await prepare(write(dir, 'ml-100k/u.data', tab), { out: path.join(dir, 'a'), minRatings: 5 });
  t.equal(a.meta.name, 'ml-100k', 'named after its folder');
  t.same(a.meta.source.format, { delimiter: '\t', header: false, userCol: 0, itemCol: 1, timeCol: 3 });
  const da = Dataset.load(a.dir);
  t.same(Array.from(da.testItems).map((i) => da.itemIds[i]), [10, 11], 'the smallest timestamp is first, so the largest is held out');

  const dat = Array.from({ length: 12 }, (_, k) => `${1 + (k % 3)}::${k}::5::${k}`).join('\n');
  const b = await prepare(write(dir, 'ratings.dat', dat), { out: path.join(dir, 'b'), minRatings: 2 });
  t.equal(b.meta.source.format?.delimiter, '::');
  t.equal(b.meta.counts.users, 3);

  const named = ['ts;product;customer', ...Array.from({ length: 9 }, (_, k) => `${50 - k};${k};${k % 3}`)].join('\n');
  const c = await prepare(write(dir, 'named.csv', named), {
    out: path.join(dir, 'c'), minRatings: 2, userCol: 'customer', itemCol: 'product', timeCol: 'ts',
  });
  t.same(c.meta.source.format, { delimiter: ';', header: true, userCol: 2, itemCol: 1, timeCol: 0 });
  const dc = Dataset.load(c.dir);
  t.same(Array.from(dc.testItems).map((i) => dc.itemIds[i]), [0, 1, 2], 'held out: the latest, i.e. the first lines');

  const plain = Array.from({ length: 8 }, (_, k) => `${k % 2},${k},1`).join('\n');
  const e = await prepare(write(dir, 'plain.csv', plain), { out: path.join(dir, 'e'), minRatings: 2 });
  t.equal(e.meta.source.format?.timeCol, -1, 'three columns without a header: no timestamp');
  const de = Dataset.load(e.dir);
  t.same(Array.from(de.testItems).map((i) => de.itemIds[i]), [6, 7], 'file order decides without timestamps');
});

t.test('deterministic for a seed; another seed draws other negatives', async (t) => {
  const dir = tmpdir();
  const rows = ['u,i,t'];
  for (let u = 0; u < 40; u++) for (let k = 0; k < 25; k++) rows.push(`${u},${(u * 31 + k * 7) % 500},${k}`);
  const file = write(dir, 'd.csv', rows.join('\n'));
  const a = Dataset.load((await prepare(file, { out: path.join(dir, 'a'), seed: 1 })).dir);
  const b = Dataset.load((await prepare(file, { out: path.join(dir, 'b'), seed: 1 })).dir);
  const c = Dataset.load((await prepare(file, { out: path.join(dir, 'c'), seed: 2 })).dir);
  t.same(Buffer.from(a.testNegatives.buffer), Buffer.from(b.testNegatives.buffer));
  t.notSame(Buffer.from(a.testNegatives.buffer), Buffer.from(c.testNegatives.buffer));
  for (let u = 0; u < a.nUsers; u++) {
    const seen = new Set([...a.items.subarray(a.offsets[u], a.offsets[u + 1]), a.testItems[u]]);
    const bad = a.testNegatives.subarray(u * 100, u * 100 + 100).filter((x) => seen.has(x));
    if (bad.length) t.fail(`user ${u} has seen items among its negatives`);
  }
});

t.test('re-running prepare on the same source and options does nothing', async (t) => {
  const dir = tmpdir();
  const file = write(dir, 'r.csv', HAND);
  const out = path.join(dir, 'o');
  const first = await prepare(file, { out, minRatings: 3, testNegatives: 5 });
  t.equal(first.skipped, false);
  const mtime = fs.statSync(path.join(out, 'meta.json')).mtimeMs;
  const again = await prepare(file, { out, minRatings: 3, testNegatives: 5 });
  t.equal(again.skipped, true);
  t.equal(fs.statSync(path.join(out, 'meta.json')).mtimeMs, mtime, 'nothing rewritten');
  const other = await prepare(file, { out, minRatings: 2, testNegatives: 5 });
  t.equal(other.skipped, false, 'other options prepare again');
});

t.test('bad input: errors name the file and line, and leave an existing dataset intact', async (t) => {
  const dir = tmpdir();
  const out = path.join(dir, 'o');
  await prepare(write(dir, 'good.csv', HAND), { out, minRatings: 3, testNegatives: 5 });
  const before = fs.readFileSync(path.join(out, 'train_items.u32'));

  const bad = write(dir, 'bad.csv', 'user,item,rating,ts\n1,2,3,4\n1,abc,3,5\n');
  const e1 = await prepare(bad, { out }).catch((e: unknown) => e);
  t.type(e1, ParseError);
  t.equal((e1 as ParseError).line, 3);
  t.match((e1 as Error).message, /bad\.csv:3: item id \(column 1\) is not an integer \(of magnitude below 2\^53\) in "1,abc,3,5"/);
  t.same(fs.readFileSync(path.join(out, 'train_items.u32')), before, 'the dataset already written is unchanged');

  const short = write(dir, 'short.csv', '1,2,3,4\n5,6,7,8\n9\n');
  await t.rejects(prepare(short, { out: path.join(dir, 's') }), /short\.csv:3: expected at least 4 fields separated by ',', found 1/);
  const time = write(dir, 'time.csv', 'u,i,r,timestamp\n1,2,3,yesterday\n');
  await t.rejects(prepare(time, { out: path.join(dir, 't') }), /time\.csv:2: timestamp \(column 3\) is not a number/);
  await t.rejects(prepare(write(dir, 'empty.csv', ''), { out: path.join(dir, 'e') }), /empty\.csv: the file is empty/);
  await t.rejects(prepare(write(dir, 'header.csv', 'user,item\n'), { out: path.join(dir, 'h') }), /no interactions/);
  await t.rejects(prepare(write(dir, 'few.csv', HAND), { out: path.join(dir, 'f') }), /no user has at least 20 interactions \(the most any user has is 5\); lower --min-ratings/);
  await t.rejects(prepare(path.join(dir, 'missing.csv')), /source '.*missing\.csv' is not ml-20m, ml-1m, synthetic\[:SHAPE\] or an existing file or folder/);
  await t.rejects(prepare(write(dir, 'cols.csv', HAND), { userCol: 'customer' }), /has no column named 'customer' for the user \(its columns are: user, item, rating, ts\)/);
  await t.rejects(prepare(write(dir, 'nohdr.csv', '1,2\n3,4\n'), { itemCol: 'item' }), /has no header line, so the item column must be given by 0-based position/);
  await t.rejects(prepare(write(dir, 'opt.csv', HAND), { minRatings: 0 }), /option 'minRatings' must be a positive integer, got 0/);
});

t.test('synthetic shapes are exact', async (t) => {
  const dir = tmpdir();
  const r = await prepare('synthetic:ml-1m', { out: path.join(dir, 'ml1m'), seed: 4 });
  t.same(r.meta.counts, {
    users: 6040, items: 3706, trainPositives: 1000209 - 6040, testPositives: 6040, rows: 1000209, droppedUsers: 0,
    droppedRows: 0, duplicates: 0,
  });
  const d = Dataset.load(r.dir);
  let min = Infinity;
  for (let u = 0; u < d.nUsers; u++) min = Math.min(min, d.offsets[u + 1] - d.offsets[u] + 1);
  t.ok(min >= 20, `every user has at least 20 interactions (min ${min})`);
  const pop = new Uint32Array(d.nItems);
  for (const i of d.items) pop[i]++;
  const sorted = Array.from(pop).sort((a, b) => b - a);
  const top1pct = sorted.slice(0, Math.ceil(d.nItems / 100)).reduce((a, b) => a + b, 0) / d.nTrain;
  t.ok(top1pct > 0.05, `heavy-tailed popularity: the top 1% of items hold ${(top1pct * 100).toFixed(1)}% of interactions`);
});
