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
          `CUDA backend: ${cuda.available ? `${cuda.build}; ${cuda.devices.map((d) => `${d.name} (${(d.memory / 2 ** 30).toFixed(0)} GiB, sm ${d.capability})`).join(', ')}` : `unavailable: ${cuda.error}`}`,
          `multi-GPU (NCCL): ${cuda.nccl ? 'yes' : 'no'}; multi-process (MPI): ${build.mpiBuilt ? 'yes' : 'no (no MPI at build time)'}`,
          `cache: ${info.cache}`,
        ];
        process.stdout.write(lines.join('\n') + '\n');
      }),
    );
}
