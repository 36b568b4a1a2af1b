/**
 * Argument checks with uniform messages ("option '--batch-size' must be a positive integer, got
 * 'abc'"), used by the module API and the CLI alike.
 */
import { InvalidArgumentError } from './errors';

function show(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  if (Array.isArray(v)) return `[${v.join(', ')}]`;
  return String(v);
}

export function integer(name: string, v: unknown, min = -Infinity, max = Infinity): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    const range =
      min === 1 && max === Infinity ? 'a positive integer'
      : min === 0 && max === Infinity ? 'a non-negative integer'
      : `an integer in ${min}..${max}`;
    throw new InvalidArgumentError(`option '${name}' must be ${range}, got ${show(v)}`, name);
  }
  return n;
}

export function number(name: string, v: unknown, min = -Infinity, max = Infinity, inclusiveMax = true): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  const ok = typeof n === 'number' && Number.isFinite(n) && n >= min && (inclusiveMax ? n <= max : n < max);
  if (!ok) {
    const range = max === Infinity ? `a number >= ${min}` : `a number in [${min}, ${max}${inclusiveMax ? ']' : ')'}`;
    throw new InvalidArgumentError(`option '${name}' must be ${range}, got ${show(v)}`, name);
  }
  return n as number;
}

export function oneOf<T extends string>(name: string, v: unknown, choices: readonly T[]): T {
  if (typeof v !== 'string' || !choices.includes(v as T))
    throw new InvalidArgumentError(`option '${name}' must be one of ${choices.join(', ')}, got ${show(v)}`, name);
  return v as T;
}

export function integerList(name: string, v: unknown, min = 1): number[] {
  const list = typeof v === 'string' ? v.split(/[\s,]+/).filter(Boolean) : v;
  if (!Array.isArray(list) || list.length === 0)
    throw new InvalidArgumentError(`option '${name}' must be a list of integers, got ${show(v)}`, name);
  return list.map((x) => integer(name, x, min));
}

export function string(name: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw new InvalidArgumentError(`option '${name}' must be a non-empty string`, name);
  return v;
}

/** Rejects keys of an options object that the function does not know (catches typos). */
export function knownKeys(what: string, opts: object, known: readonly string[]): void {
  for (const k of Object.keys(opts))
    if (!known.includes(k)) throw new InvalidArgumentError(`${what}: unknown option '${k}'`, k);
}
