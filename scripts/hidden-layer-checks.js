#!/usr/bin/env node
// The hidden-layer tile kernels' op checks alone (lib/selftest/hidden-checks.ts: hidden_forward and
// hidden_backward against the CPU's chains), on the CUDA backend with 2 blocks, each looping over
// several tiles: a few seconds, for running under a checker where the whole self-test takes
// minutes (CI: the emulator built with AddressSanitizer or its racecheck; gpu-check.sh:
// compute-sanitizer's racecheck). The kernels' switches come from the environment
// (NCF_CUDA_HIDDEN_FORWARD=1 or one-buffer, NCF_CUDA_HIDDEN_BACKWARD=1).
//
//   node scripts/hidden-layer-checks.js [PRECISIONS]   # fp16,tf32 by default
//
// Prints a line per check; exits 1 if any failed. Needs dist/ (npm run build:ts).
'use strict';
const path = require('node:path');

const dist = path.join(__dirname, '..', 'dist', 'lib');
const { addon } = require(path.join(dist, 'native'));
const { hiddenLayerChecks } = require(path.join(dist, 'selftest', 'hidden-checks'));
const { Rng } = require(path.join(dist, 'util', 'random'));

const precisions = (process.argv[2] ?? 'fp16,tf32').split(',');
for (const p of precisions)
  if (p !== 'fp16' && p !== 'tf32') {
    console.error(`hidden-layer-checks: precision '${p}': expected fp16 or tf32 (comma-separated)`);
    process.exit(2);
  }
const n = addon();
const cpu = new n.OpRunner({ backend: 'cpu' });
let failed = 0;
for (const p of precisions) {
  const dev = new n.OpRunner({ backend: 'cuda', tf32: p === 'tf32', maxBlocks: 2 });
  for (const c of hiddenLayerChecks(dev, cpu, p, new Rng(7))) {
    if (!c.ok) ++failed;
    console.log(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name} [${p}]`);
  }
}
console.log(failed ? `${failed} hidden-layer checks FAILED` : 'all hidden-layer checks passed');
process.exitCode = failed ? 1 : 0;
