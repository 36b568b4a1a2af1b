// Every CPU op against independent references (known-answer vectors, hand-computed values, float64
// loops, finite differences), and a short training run: `ncf-native selftest --device cpu`.
import t from 'tap';

import { selftest } from '../lib/selftest/selftest';
import './helpers';

t.test('selftest --device cpu: every check passes', async (t) => {
  const r = await selftest('cpu');
  t.ok(r.checks.length >= 25, 'runs the full set of checks');
  for (const c of r.checks) t.ok(c.ok, `${c.name}: error ${c.error} <= ${c.tolerance}${c.note ? ` (${c.note})` : ''}`);
});

t.test("an op runner's maxBlocks must be a count", async (t) => {
  const { addon } = await import('../lib/native');
  const native = addon();
  const range = /must be a count from 0 to 999999 \(as NCF_CUDA_MAX_BLOCKS\)/;
  for (const [v, why] of [[-1, range], [1000000, range], [1.5, /must be an integer/], ['2', /must be a number/]] as const)
    t.throws(() => new native.OpRunner({ backend: 'cpu', maxBlocks: v as number }), { code: 'ERR_INVALID_ARGUMENT', message: why }, `maxBlocks ${String(v)}`);
  t.doesNotThrow(() => new native.OpRunner({ backend: 'cpu', maxBlocks: 2 }), 'a backend without such kernels takes and ignores it');
});

t.test("hiddenBackward's per-user sums: dz[0] summed per user; users checked", async (t) => {
  const { addon } = await import('../lib/native');
  const native = addon();
  const cpu = new native.OpRunner({ backend: 'cpu' });
  const rows = 7, widths = [16, 8];
  const layers = [{ in: 16, out: 8, w: Float32Array.from({ length: 128 }, (_, i) => Math.sin(i)), b: new Float32Array(8) }];
  const y = Float32Array.from({ length: rows * 16 }, (_, i) => Math.max(0, Math.cos(i)));
  const below = [{ y, dropout: 0, seed: 1, layer: 0 }];
  const dz = Float32Array.from({ length: rows * widths[1] }, (_, i) => Math.sin(3 * i));
  const users = Uint32Array.from([0, 0, 2, 2, 2, 3, 5]);
  const r = cpu.hiddenBackward({ dz, layers, below, users, nUsers: 7 });
  t.equal(r.userSumsFused, false, 'the CPU has no fused form: pair_row_sums took them');
  const want = new Float32Array(7 * 16);
  users.forEach((u, row) => { for (let j = 0; j < 16; ++j) want[u * 16 + j] += r.dz[0][row * 16 + j]; });
  t.ok(r.userSums!.every((v, i) => Math.abs(v - want[i]) <= 1e-6 * (1 + Math.abs(want[i]))), 'each user the sum of its rows; users without rows zero');
  t.throws(() => cpu.hiddenBackward({ dz, layers, below, users: Uint32Array.from([0, 2, 1, 3, 4, 5, 6]), nUsers: 7 }),
    { code: 'ERR_INVALID_ARGUMENT', message: /users.*ascending order/ }, 'users out of order');
  t.throws(() => cpu.hiddenBackward({ dz, layers, below, users, nUsers: 5 }), { code: 'ERR_INVALID_ARGUMENT', message: /users below nUsers/ }, 'a user past nUsers');
  t.throws(() => cpu.hiddenBackward({ dz, layers, below, users: users.subarray(1), nUsers: 7 }), { code: 'ERR_INVALID_ARGUMENT', message: /one per row of dz/ }, 'a user per row');
});
