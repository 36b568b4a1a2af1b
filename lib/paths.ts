/**
 * Where ncf-native keeps downloads and prepared datasets: $NCF_NATIVE_HOME if set, else
 * $XDG_CACHE_HOME/ncf-native, else ~/.cache/ncf-native.
 */
import * as os from 'node:os';
import * as path from 'node:path';

export function cacheHome(): string {
  if (process.env.NCF_NATIVE_HOME) return path.resolve(process.env.NCF_NATIVE_HOME);
  const xdg = process.env.XDG_CACHE_HOME;
  return path.join(xdg ? path.resolve(xdg) : path.join(os.homedir(), '.cache'), 'ncf-native');
}

export function datasetsDir(): string {
  return path.join(cacheHome(), 'datasets');
}

export function downloadsDir(): string {
  return path.join(cacheHome(), 'downloads');
}
