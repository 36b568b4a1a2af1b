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
  for (const [v, why] of [[-1, /must be a count from 0 to 1000000/], [1.5, /must be an integer/], ['2', /must be a number/]] as const)
    t.throws(() => new native.OpRunner({ backend: 'cpu', maxBlocks: v as number }), { code: 'ERR_INVALID_ARGUMENT', message: why }, `maxBlocks ${String(v)}`);
  t.doesNotThrow(() => new native.OpRunner({ backend: 'cpu', maxBlocks: 2 }), 'a backend without such kernels takes and ignores it');
});
