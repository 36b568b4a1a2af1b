/** Latency statistics for the benchmarks. */
export interface LatencyStats {
  mean: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  n: number;
}

export function latencyStats(seconds: ArrayLike<number>): LatencyStats {
  const xs = Array.from(seconds).sort((a, b) => a - b);
  const q = (p: number) => xs[Math.min(xs.length - 1, Math.ceil(p * xs.length) - 1)];
  return { mean: xs.reduce((a, b) => a + b, 0) / xs.length, p50: q(0.5), p90: q(0.9), p95: q(0.95), p99: q(0.99), n: xs.length };
}

export function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}

export function millions(x: number): string {
  return `${(x / 1e6).toFixed(2)}M`;
}
