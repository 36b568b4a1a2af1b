/**
 * A one-line progress bar on stderr, drawn only when stderr is a terminal (so logs and pipes stay
 * clean). Redraws are throttled to 10 per second.
 */
export interface ProgressBarOptions {
  label: string;
  total: number;
  /** Formats the counts, e.g. bytes as "12.3 MB". */
  format?: (n: number) => string;
  /** Unit of the rate shown after the bar, e.g. "B/s" or "samples/s". */
  rateUnit?: string;
  stream?: NodeJS.WriteStream;
}

export function humanBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function humanCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return n.toFixed(0);
}

export class ProgressBar {
  private readonly opts: Required<Omit<ProgressBarOptions, 'stream'>> & { stream: NodeJS.WriteStream };
  private readonly start = Date.now();
  private lastDraw = 0;
  private drawn = false;
  readonly enabled: boolean;

  constructor(opts: ProgressBarOptions) {
    this.opts = { format: (n) => humanCount(n), rateUnit: '/s', stream: process.stderr, ...opts };
    this.enabled = !!this.opts.stream.isTTY && process.env.NCF_NATIVE_NO_PROGRESS !== '1';
  }

  setTotal(total: number): void {
    this.opts.total = total;
  }

  update(done: number, force = false): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const { total, label, format, rateUnit, stream } = this.opts;
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const width = Math.max(10, Math.min(40, (stream.columns ?? 80) - 60));
    const filled = Math.round(frac * width);
    const secs = (now - this.start) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 && total > done ? (total - done) / rate : 0;
    const bar = '='.repeat(Math.max(0, filled - 1)) + (filled > 0 ? '>' : '') + ' '.repeat(width - filled);
    const text =
      `${label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${format(done)}/${format(total)}` +
      ` ${format(rate)}${rateUnit}` + (eta > 0 ? ` ETA ${eta.toFixed(0)}s` : '');
    stream.write(`\r${text.slice(0, (stream.columns ?? 120) - 1)}\x1b[K`);
    this.drawn = true;
  }

  /** Clears the line. */
  done(): void {
    if (this.enabled && this.drawn) this.opts.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}
