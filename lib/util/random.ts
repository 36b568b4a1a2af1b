/** Deterministic random inputs for the self-test and the benchmarks (xorshift32). */
export class Rng {
  private x: number;
  constructor(seed: number) {
    this.x = seed >>> 0 || 0x9e3779b9;
  }
  u32(): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x >>> 0;
    return this.x;
  }
  uniform(lo = -1, hi = 1): number {
    return lo + (hi - lo) * (this.u32() / 4294967296);
  }
  f32(n: number, lo = -1, hi = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.uniform(lo, hi);
    return a;
  }
  below(n: number): number {
    return this.u32() % n;
  }
  u32s(n: number, bound: number): Uint32Array {
    const a = new Uint32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.below(bound);
    return a;
  }
}

/** Largest |a - b| relative to the largest |b| (at least `floor`), and where it is. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-6): number {
  if (a.length !== b.length) return Infinity;
  let maxDiff = 0, maxRef = floor;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? Infinity : d;
    maxRef = Math.max(maxRef, Math.abs(b[i]));
  }
  return maxDiff / maxRef;
}

export function exactlyEqual(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

/**
 * Central finite difference of f with respect to buf[i]: (f(x + h) - f(x - h)) / 2h, restoring
 * buf[i] afterwards.
 */
export function centralDifference(buf: Float32Array, i: number, f: () => number, h: number): number {
  const keep = buf[i];
  buf[i] = keep + h;
  const up = f();
  buf[i] = keep - h;
  const down = f();
  buf[i] = keep;
  return (up - down) / (2 * h);
}
