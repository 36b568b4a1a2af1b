/**
 * Works out how to read a delimited interactions file from its first lines: the delimiter
 * ("::", tab, comma, semicolon, pipe or runs of spaces), whether the first line is a header, and
 * which columns hold the user, the item and (optionally) the timestamp, chosen by name or
 * 0-based position. The parsing itself is native (prepareFile).
 */
import * as fs from 'node:fs';

import { InvalidArgumentError, ParseError } from '../errors';
import type { DelimitedFormat } from './sources';

export type ColumnSpec = string | number;

export interface ColumnOptions {
  delimiter?: string;
  /** true/false to say whether line 1 is a header; undefined detects it. */
  header?: boolean;
  userCol?: ColumnSpec;
  itemCol?: ColumnSpec;
  /** A column, or null for none; undefined picks a "timestamp"-like header or column 3 of 4+. */
  timeCol?: ColumnSpec | null;
}

const DELIMITERS = ['::', '\t', ',', ';', '|', ' '];
const USER_NAMES = /^(user|users|user_?id|uid|customer_?id|visitor_?id)$/i;
const ITEM_NAMES = /^(item|items|item_?id|iid|movie|movie_?id|product_?id|track_?id|article_?id)$/i;
const TIME_NAMES = /^(timestamp|time|ts|unix_?time|event_?time|date_?time)$/i;

function firstLines(file: string, n: number): string[] {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw new InvalidArgumentError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  try {
    if (fs.fstatSync(fd).isDirectory()) throw new InvalidArgumentError(`${file} is a directory, not a file`);
    const buf = Buffer.alloc(64 * 1024);
    const len = fs.readSync(fd, buf, 0, buf.length, 0);
    let text = buf.subarray(0, len).toString('utf8');
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    return text.split(/\r?\n/).filter((l) => l.trim() !== '').slice(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

export function splitLine(line: string, delimiter: string): string[] {
  if (delimiter === ' ') return line.trim().split(/[ \t]+/);
  return line.split(delimiter).map((f) => f.trim().replace(/^"(.*)"$/, '$1'));
}

function isInteger(s: string | undefined): boolean {
  return s !== undefined && /^[+-]?\d+$/.test(s.trim());
}

function detectDelimiter(lines: string[]): string {
  for (const d of DELIMITERS) {
    const counts = lines.map((l) => splitLine(l, d).length);
    if (counts[0] >= 2 && counts.every((c) => c === counts[0])) return d;
  }
  for (const d of DELIMITERS) if (splitLine(lines[0], d).length >= 2) return d;
  return ',';
}

function resolveColumn(what: string, option: string, spec: ColumnSpec, names: string[] | null, file: string): number {
  if (typeof spec === 'number' || /^\d+$/.test(spec)) {
    const i = Number(spec);
    if (!Number.isInteger(i) || i < 0 || i > 62) throw new InvalidArgumentError(`option '${option}' must be a column name or a 0-based index, got ${spec}`, option);
    return i;
  }
  if (!names)
    throw new InvalidArgumentError(`${file} has no header line, so the ${what} column must be given by 0-based position, not by name ('${spec}')`, option);
  const i = names.findIndex((n) => n.toLowerCase() === spec.toLowerCase());
  if (i < 0)
    throw new InvalidArgumentError(`${file} has no column named '${spec}' for the ${what} (its columns are: ${names.join(', ')})`, option);
  return i;
}

function byName(names: string[], re: RegExp): number {
  return names.findIndex((n) => re.test(n));
}

/** Inspects the file and returns how to parse it. */
export function detectFormat(file: string, opts: ColumnOptions = {}): DelimitedFormat {
  const lines = firstLines(file, 5);
  if (lines.length === 0) throw new ParseError(file, 'the file is empty');
  const delimiter = opts.delimiter === 'tab' ? '\t' : opts.delimiter === 'space' ? ' ' : opts.delimiter ?? detectDelimiter(lines);
  const first = splitLine(lines[0], delimiter);
  if (first.length < 2)
    throw new ParseError(file, `cannot find two columns in the first line with delimiter '${delimiter === '\t' ? '\\t' : delimiter}': "${lines[0].slice(0, 80)}"`, 1);

  let header = opts.header;
  if (header === undefined) {
    // A header when the chosen (or default) id columns of line 1 are not integers.
    const probeUser = typeof opts.userCol === 'number' ? opts.userCol : 0;
    const probeItem = typeof opts.itemCol === 'number' ? opts.itemCol : 1;
    header = typeof opts.userCol === 'string' && !/^\d+$/.test(opts.userCol) ? true : !(isInteger(first[probeUser]) && isInteger(first[probeItem]));
  }
  const names = header ? first : null;

  let userCol: number, itemCol: number, timeCol: number;
  if (opts.userCol !== undefined) userCol = resolveColumn('user', '--user-col', opts.userCol, names, file);
  else userCol = names && byName(names, USER_NAMES) >= 0 ? byName(names, USER_NAMES) : 0;
  if (opts.itemCol !== undefined) itemCol = resolveColumn('item', '--item-col', opts.itemCol, names, file);
  else itemCol = names && byName(names, ITEM_NAMES) >= 0 ? byName(names, ITEM_NAMES) : 1;
  if (opts.timeCol === null || opts.timeCol === 'none') timeCol = -1;
  else if (opts.timeCol !== undefined) timeCol = resolveColumn('timestamp', '--time-col', opts.timeCol, names, file);
  else if (names) timeCol = byName(names, TIME_NAMES);
  else timeCol = first.length >= 4 ? 3 : -1; // MovieLens layout: user, item, rating, timestamp

  if (userCol === itemCol) throw new InvalidArgumentError(`the user and item columns of ${file} are the same (${userCol})`, '--item-col');
  for (const [what, col] of [['user', userCol], ['item', itemCol], ['timestamp', timeCol]] as const)
    if (col >= first.length)
      throw new InvalidArgumentError(`${file}: the ${what} column ${col} does not exist (line 1 has ${first.length} columns)`);
  return { delimiter, header: !!header, userCol, itemCol, timeCol };
}
