/**
 * The dataset a training run uses: a prepared folder is loaded as is; anything else (ml-20m,
 * ml-1m, synthetic data, a file) is prepared first. In a multi-process job rank 0 prepares while
 * the other ranks wait at a barrier, then every rank loads the same folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { readMeta } from '../data/cache';
import { Dataset } from '../data/dataset';
import { prepare, type PrepareEvent, type PrepareOptions } from '../data/prepare';
import type { RankInfo } from '../dist/ranks';
import { addon } from '../native';

export async function loadTrainingData(
  spec: string | Dataset,
  ranks: RankInfo,
  prepareOptions: Omit<PrepareOptions, 'onProgress' | 'signal'>,
  onProgress: (e: PrepareEvent) => void,
): Promise<Dataset> {
  if (spec instanceof Dataset) return spec;
  const asDir = path.resolve(spec);
  if (fs.existsSync(asDir) && fs.statSync(asDir).isDirectory() && readMeta(asDir)) return Dataset.load(asDir);
  if (ranks.size === 1) return Dataset.load((await prepare(spec, { ...prepareOptions, onProgress })).dir);
  // Rank 0 prepares; a failure there aborts the job (see the CLI), so the others never wait forever.
  let dir = '';
  if (ranks.rank === 0) dir = (await prepare(spec, { ...prepareOptions, onProgress })).dir;
  addon().barrier();
  if (ranks.rank !== 0) dir = (await prepare(spec, { ...prepareOptions })).dir; // up to date now: no work
  return Dataset.load(dir);
}
