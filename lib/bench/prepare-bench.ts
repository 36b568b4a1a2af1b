/**
 * `bench prepare`: seconds to preprocess an ml-20m-style ratings.csv (20,000,263 rows with a
 * header, user,item,rating,timestamp), the way `prepare` reads any CSV. The CSV is generated once
 * (synthetic data with ml-20m's shape) and kept in the cache.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { prepare } from '../data/prepare';
import { addon } from '../native';
import { cacheHome } from '../paths';

export interface PrepareBenchOptions {
  csv?: string;
  shape: string;
  repeats: number;
  threads?: number;
  out?: string;
  print: (line: string) => void;
}

export async function benchPrepare(b: PrepareBenchOptions): Promise<Record<string, unknown>> {
  let csv = b.csv;
  if (!csv) {
    csv = path.join(cacheHome(), 'bench', `${b.shape}-ratings.csv`);
    if (!fs.existsSync(csv)) {
      fs.mkdirSync(path.dirname(csv), { recursive: true });
      b.print(`writing ${csv} (synthetic ${b.shape} ratings)`);
      const tmp = `${csv}.tmp-${process.pid}`;
      await addon().writeSyntheticCsv({ shape: b.shape, seed: 1, path: tmp });
      fs.renameSync(tmp, csv);
    }
  }
  const bytes = fs.statSync(csv).size;
  const out = path.join(cacheHome(), 'bench', `prepared-${path.basename(csv, '.csv')}`);
  const runs: number[] = [];
  let rows = 0;
  for (let r = 0; r < b.repeats; r++) {
    const t0 = process.hrtime.bigint();
    const res = await prepare(csv, { out, force: true, threads: b.threads });
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    runs.push(s);
    rows = res.meta.counts.rows;
    b.print(`prepare ${path.basename(csv)}: ${rows} rows (${(bytes / 1e6).toFixed(0)} MB) in ${s.toFixed(2)} s = ${(rows / s / 1e6).toFixed(2)}M rows/s`);
  }
  const best = Math.min(...runs);
  b.print(`prepare time: ${best.toFixed(2)} s (best of ${runs.length})`);
  const figures = { benchmark: 'prepare', csv, rows, bytes, seconds: runs, bestSeconds: best };
  if (b.out) fs.writeFileSync(b.out, JSON.stringify(figures, null, 2) + '\n');
  return figures;
}
