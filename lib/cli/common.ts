/**
 * Shared pieces of the CLI: option parsers that reject bad values with a message naming the
 * option, the error handler that turns any failure into one line on stderr and an exit code, and
 * the renderers of progress (downloads, epochs) on a terminal.
 */
import { InvalidArgumentError as CommanderArgError } from 'commander';

import type { PrepareEvent } from '../data/prepare';
import { detectRanks, type RankInfo } from '../dist/ranks';
import { NcfError } from '../errors';
import { addon } from '../native';
import { ProgressBar, humanBytes, humanCount } from '../util/progress';
import type { TrainingRun } from '../train/run';

/** Exit codes: 0 success, 1 failure while running, 2 bad usage or input. */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export function intArg(min = 1, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^[+-]?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max)
      throw new CommanderArgError(max === Number.MAX_SAFE_INTEGER ? `expected an integer >= ${min}` : `expected an integer in ${min}..${max}`);
    return n;
  };
}

export function floatArg(min = -Infinity, max = Infinity) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max)
      throw new CommanderArgError(max === Infinity ? `expected a number >= ${min}` : `expected a number in [${min}, ${max}]`);
    return n;
  };
}

/** Collects repeated/variadic integer values (e.g. --layers 256 256 128 64). */
export function intListArg(v: string, prev: number[] | undefined): number[] {
  const parse = intArg(1);
  const vals = v.split(',').filter(Boolean).map(parse);
  return [...(prev ?? []), ...vals];
}

function usageLike(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ERR_INVALID_ARGUMENT' || code === 'ERR_PARSE' || code === 'ERR_EMPTY_DATA' || code === 'ERR_CHECKPOINT' || code === 'ERR_DATASET';
}

/** Prints an error as "ncf-native: <message>" and sets the exit code; aborts MPI jobs. */
export function reportError(err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  let ranks: RankInfo | undefined;
  try {
    ranks = detectRanks();
  } catch {
    ranks = undefined; // a malformed launcher variable is the error being reported
  }
  const who = ranks && ranks.size > 1 ? ` (rank ${ranks.rank})` : '';
  process.stderr.write(`ncf-native${who}: error: ${message}\n`);
  if (process.env.NCF_NATIVE_DEBUG && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
  const code = usageLike(err) ? EXIT_USAGE : EXIT_FAILURE;
  process.exitCode = code;
  if (who) {
    // Another rank may be waiting on us in a collective: end the whole job.
    try {
      addon().abortDistributed(code);
    } catch {
      /* MPI never started */
    }
  }
}

/** Wraps a command's action so that failures are reported and set the exit code. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      reportError(err);
    }
  };
}

/** Renders prepare events: a download progress bar and one line per phase. */
export function prepareReporter(quiet = false): (e: PrepareEvent) => void {
  let bar: ProgressBar | undefined;
  return (e) => {
    if (e.phase === 'download') {
      bar ??= new ProgressBar({ label: `downloading ${e.file}`, total: e.total, format: humanBytes, rateUnit: '/s' });
      bar.setTotal(e.total);
      bar.update(e.received, e.received === e.total);
      return;
    }
    bar?.done();
    bar = undefined;
    if (quiet) return;
    if (e.phase === 'extract') process.stderr.write(`extracting ${e.file}\n`);
    else if (e.phase === 'parse') process.stderr.write(`reading ${e.file}\n`);
    else if (e.phase === 'generate') process.stderr.write(`generating synthetic ${e.shape} data\n`);
    else if (e.phase === 'write') process.stderr.write(`writing ${e.dir}\n`);
  };
}

/** Prints a training run's log lines and draws its progress bar on a terminal. */
export function followRun(run: TrainingRun, opts: { progress: boolean; logToStderr?: boolean }): void {
  let bar: ProgressBar | undefined;
  let samplesPerEpoch = 0;
  run.on('start', (info) => {
    samplesPerEpoch = info.samplesPerEpoch;
  });
  run.on('prepare', prepareReporter());
  run.on('progress', ({ epoch, step, steps }) => {
    if (!opts.progress) return;
    if (!bar) bar = new ProgressBar({ label: `epoch ${epoch}`, total: samplesPerEpoch, format: humanCount, rateUnit: ' samples/s' });
    bar.update(Math.round((step / steps) * samplesPerEpoch), step === steps);
    if (step === steps) {
      bar.done();
      bar = undefined;
    }
  });
  run.on('log', (line) => {
    bar?.done();
    bar = undefined;
    (opts.logToStderr ? process.stderr : process.stdout).write(line + '\n');
  });
}

export { NcfError };
