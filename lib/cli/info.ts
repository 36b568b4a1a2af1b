/** `ncf-native info`: what this build and machine offer. */
import type { Command } from 'commander';

import { addon } from '../native';
import { cacheHome } from '../paths';
import { action } from './common';

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('show the build (BLAS, CUDA, MPI), the GPUs and the cache folder')
    .option('--json', 'print as JSON')
    .action(
      action((o: { json?: boolean }) => {
        const native = addon();
        const build = native.buildInfo();
        const cuda = native.cudaStatus();
        const info = { ...build, cuda, cache: cacheHome(), node: process.version };
        if (o.json) {
          process.stdout.write(JSON.stringify(info, null, 2) + '\n');
          return;
        }
        const lines = [
          `ncf-native ${build.version} (${build.compiler}), CPU GEMMs: ${build.blas}`,
          `CUDA backend: ${cuda.available ? `${cuda.build}; ${describeDevices(cuda.devices)}` : `unavailable: ${cuda.error}`}`,
          `multi-GPU (NCCL): ${cuda.nccl ? 'yes' : 'no'}; multi-process (MPI): ${build.mpiBuilt ? 'yes' : 'no (no MPI at build time)'}`,
          `cache: ${info.cache}`,
        ];
        process.stdout.write(lines.join('\n') + '\n');
      }),
    );
}

/** "8 x NVIDIA H100 (80 GiB, sm 9.0)": identical GPUs counted once. */
function describeDevices(devices: { name: string; memory: number; capability: string }[]): string {
  const counts = new Map<string, number>();
  for (const d of devices) {
    const key = `${d.name} (${(d.memory / 2 ** 30).toFixed(0)} GiB, sm ${d.capability})`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([key, n]) => (n > 1 ? `${n} x ${key}` : key)).join(', ');
}
