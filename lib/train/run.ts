/**
 * TrainingRun: what train() returns. It is a Promise of the summary (await it), an async iterator
 * of the epoch reports (for await ... of run), and an EventEmitter of 'start', 'epoch',
 * 'progress', 'prepare' and 'log' events, so callers pick the style they like.
 */
import { EventEmitter } from 'node:events';

import type { EpochReport, RunInfo, TrainSummary } from './types';
import type { PrepareEvent } from '../data/prepare';

export interface TrainingRunEvents {
  start: [RunInfo];
  epoch: [EpochReport];
  progress: [{ epoch: number; step: number; steps: number }];
  prepare: [PrepareEvent];
  log: [string];
}

export class TrainingRun extends EventEmitter<TrainingRunEvents> implements Promise<TrainSummary>, AsyncIterable<EpochReport> {
  private readonly promise: Promise<TrainSummary>;
  private readonly reports: EpochReport[] = [];
  private settled = false;
  private failure: unknown;
  private wake: (() => void)[] = [];
  private readonly abort = new AbortController();

  constructor(body: (run: TrainingRun, signal: AbortSignal) => Promise<TrainSummary>) {
    super();
    this.on('epoch', (r) => {
      this.reports.push(r);
      this.notify();
    });
    // Start on the next tick so that listeners attached right after train() see every event.
    this.promise = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => body(this, this.abort.signal))
      .finally(() => {
        this.settled = true;
        this.notify();
      });
    this.promise.catch((err) => {
      this.failure = err;
    });
  }

  /** Stops after the current step; the promise then resolves with the epochs done so far. */
  cancel(): void {
    this.abort.abort();
  }

  then<A = TrainSummary, B = never>(
    onfulfilled?: ((value: TrainSummary) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.promise.then(onfulfilled, onrejected);
  }

  catch<B = never>(onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<TrainSummary | B> {
    return this.promise.catch(onrejected);
  }

  finally(onfinally?: (() => void) | null): Promise<TrainSummary> {
    return this.promise.finally(onfinally);
  }

  readonly [Symbol.toStringTag] = 'TrainingRun';

  private notify(): void {
    const w = this.wake;
    this.wake = [];
    for (const f of w) f();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<EpochReport> {
    let i = 0;
    for (;;) {
      if (i < this.reports.length) {
        yield this.reports[i++];
        continue;
      }
      if (this.settled) {
        await this.promise.catch(() => undefined);
        if (this.failure !== undefined) throw this.failure;
        return;
      }
      await new Promise<void>((resolve) => this.wake.push(resolve));
    }
  }
}
