/**
 * Reading and writing safetensors files (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length, a JSON header mapping tensor names to dtype, shape and byte
 * offsets (plus optional "__metadata__" strings), then the raw little-endian data. Only F32
 * tensors are written; reading validates every offset, size and shape before touching data.
 * Writes are atomic: a temporary file is written, fsynced and renamed over the target.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { CheckpointError } from '../errors';

export interface TensorEntry {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

const MAX_HEADER = 100 * 1024 * 1024;

export function writeSafetensors(file: string, tensors: TensorEntry[], metadata: Record<string, string> = {}): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw new CheckpointError(file, `tensor ${t.name} has ${t.data.length} values for shape [${t.shape}]`);
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8; // keep the data 8-byte aligned
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));

  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, len);
    fs.writeSync(fd, json);
    for (const t of tensors) {
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      let off = 0;
      while (off < bytes.length) off += fs.writeSync(fd, bytes, off, Math.min(bytes.length - off, 1 << 26));
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (err) {
    try {
      fs.closeSync(fd);
    } catch {
      /* already closed */
    }
    fs.rmSync(tmp, { force: true });
    throw new CheckpointError(file, `cannot write: ${(err as Error).message}`);
  }
}

export function readSafetensors(file: string): SafetensorsFile {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    throw new CheckpointError(file, (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message);
  }
  if (buf.length < 8) throw new CheckpointError(file, 'too short to be a safetensors file');
  const n = buf.readBigUInt64LE(0);
  if (n > BigInt(Math.min(MAX_HEADER, buf.length - 8))) throw new CheckpointError(file, 'header length is beyond the file: not a safetensors file or truncated');
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + Number(n)).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new CheckpointError(file, 'the header is not valid JSON: not a safetensors file or damaged');
  }
  const dataStart = 8 + Number(n);
  const dataLen = buf.length - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  const spans: [number, number, string][] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      for (const [k, s] of Object.entries((v ?? {}) as Record<string, unknown>)) if (typeof s === 'string') metadata[k] = s;
      continue;
    }
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (t.dtype !== 'F32') throw new CheckpointError(file, `tensor ${name} has dtype ${String(t.dtype)}; only F32 is supported`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d) && d >= 0))
      throw new CheckpointError(file, `tensor ${name} has an invalid shape`);
    const offs = t.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isInteger(d) && d >= 0) || offs[0] > offs[1] || offs[1] > dataLen)
      throw new CheckpointError(file, `tensor ${name} has data offsets outside the file (truncated?)`);
    const count = (t.shape as number[]).reduce((a, b) => a * b, 1);
    if (offs[1] - offs[0] !== count * 4) throw new CheckpointError(file, `tensor ${name}: ${offs[1] - offs[0]} bytes do not match shape [${t.shape}]`);
    spans.push([offs[0], offs[1], name]);
    const data = new Float32Array(count);
    new Uint8Array(data.buffer).set(buf.subarray(dataStart + offs[0], dataStart + offs[1]));
    tensors.set(name, { shape: t.shape as number[], data });
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++)
    if (spans[i][0] < spans[i - 1][1]) throw new CheckpointError(file, `tensors ${spans[i - 1][2]} and ${spans[i][2]} overlap`);
  return { metadata, tensors };
}
