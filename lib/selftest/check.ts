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
