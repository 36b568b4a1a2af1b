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
