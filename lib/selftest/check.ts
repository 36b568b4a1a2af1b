/**
 * Relative tolerances of a device op against the CPU's per GEMM precision: 1e-5 for fp32, 1e-2 for
 * TF32 (10-bit mantissa) and 2e-2 for fp16 inputs, both accumulating in fp32.
 */
export const TOLERANCE = { fp32: 1e-5, tf32: 1e-2, fp16: 2e-2 } as const;
export type GemmPrecision = keyof typeof TOLERANCE;

/** One line of the self-test table. */
export interface Check {
  /** The op or property checked. */
  name: string;
  /** fp32, tf32, fp16, exact or bitwise. */
  precision: string;
  /** The measured error (relative, or 0/1 for pass/fail properties). */
  error: number;
  tolerance: number;
  ok: boolean;
  note?: string;
}

export function check(name: string, precision: string, error: number, tolerance: number, note?: string): Check {
  return { name, precision, error, tolerance, ok: error <= tolerance, note };
}

export function property(name: string, ok: boolean, note?: string): Check {
  return { name, precision: 'exact', error: ok ? 0 : 1, tolerance: 0, ok, note };
}
