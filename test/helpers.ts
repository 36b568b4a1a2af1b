/** Helpers shared by the tests: temporary folders, running the CLI, small files and zips. */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

export const CLI = path.join(__dirname, '..', 'bin', 'ncf-native.js');

// Every test process gets its own cache folder, so tests never touch the user's cache.
process.env.NCF_NATIVE_HOME ??= fs.mkdtempSync(path.join(os.tmpdir(), 'ncf-test-home-'));

export function tmpdir(prefix = 'ncf-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Runs the CLI with its cache in `home`; returns status, stdout and stderr. */
export function cli(args: string[], home: string, env: Record<string, string> = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, NCF_NATIVE_HOME: home, NCF_NATIVE_NO_PROGRESS: '1', ...env },
    timeout: 600_000,
  });
}

/** Whether Open MPI's mpirun is installed. */
export const haveMpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;

/**
 * Runs a command (node on the CLI, or mpirun around it) with its cache in `home`, as root if need
 * be and with more ranks than cores allowed, as the tests' MPI jobs need; `env` adds variables.
 */
export function runJob(cmd: string, args: string[], home: string, env: Record<string, string> = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, {
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...process.env, NCF_NATIVE_HOME: home, NCF_NATIVE_NO_PROGRESS: '1', OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', OMPI_MCA_rmaps_base_oversubscribe: '1', ...env },
  });
}

export function write(dir: string, name: string, text: string): string {
  const p = path.join(dir, name);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, text);
  return p;
}

/** Interactions where user u rated `perUser(u)` distinct items, one per line, as CSV text. */
export function interactionsCsv(users: number, items: number, perUser: (u: number) => number, header = true): string {
  const lines = header ? ['userId,movieId,rating,timestamp'] : [];
  for (let u = 1; u <= users; u++)
    for (let k = 0; k < perUser(u); k++) lines.push(`${u},${((u * 7 + k * 13) % items) + 1},4.0,${1000 + k}`);
  return lines.join('\n') + '\n';
}

/** A zip archive (stored, no compression) holding the given files. */
export function makeZip(files: Record<string, string | Buffer>): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, content] of Object.entries(files)) {
    const data = Buffer.isBuffer(content) ? content : Buffer.from(content);
    const nameBuf = Buffer.from(name);
    const crc = zlib.crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0, 6);
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt32LE(0, 10);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    local.writeUInt16LE(0, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0, 8);
    central.writeUInt16LE(0, 10);
    central.writeUInt32LE(0, 12);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBuf.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBuf, data);
    centrals.push(central, nameBuf);
    offset += 30 + nameBuf.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(files).length, 8);
  end.writeUInt16LE(Object.keys(files).length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}
