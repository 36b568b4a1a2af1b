/**
 * `ncf-native selftest`: on the CPU, every CPU op against independent references plus a short
 * training run; on CUDA, every CUDA op against its CPU twin at each precision plus training runs
 * whose losses must track the CPU's. Returns the table; the CLI exits non-zero on any failure.
 */
import { BackendError } from '../errors';
import { addon } from '../native';
import type { Check, GemmPrecision } from './check';
import { compareOps } from './compare-checks';
import { cpuOpChecks } from './cpu-checks';
import { compareTrainingChecks, cpuTrainingChecks } from './training-checks';

const CAPPED_BLOCKS = 2;

export interface SelftestResult {
  device: 'cpu' | 'cuda';
  deviceName: string;
  checks: Check[];
  ok: boolean;
}

export async function selftest(device: 'cpu' | 'cuda', opts: { threads?: number; training?: boolean } = {}): Promise<SelftestResult> {
  const native = addon();
  const cpu = new native.OpRunner({ backend: 'cpu', threads: opts.threads ?? 0 });
  const checks: Check[] = [];
  let deviceName = cpu.info.device;
  if (device === 'cpu') {
    checks.push(...cpuOpChecks(cpu));
    if (opts.training !== false) checks.push(...(await cpuTrainingChecks(opts.threads)));
  } else {
    const status = native.cudaStatus();
    if (!status.available) throw new BackendError('ERR_UNAVAILABLE', `the CUDA backend is unavailable: ${status.error}`);
    for (const precision of ['fp32', 'tf32', 'fp16'] as GemmPrecision[]) {
      // The fused kernels are checked too, though training and serving run the op chains unless
      // NCF_CUDA_FUSED=1 (NCF_CUDA_FUSED=0 leaves them out here as well). Every check runs twice:
      // with the kernels' own grids, and with at most 2 blocks, so that each kernel whose threads,
      // warps or blocks loop with the grid's stride loops here as it does only at full size.
      for (const maxBlocks of [undefined, CAPPED_BLOCKS]) {
        const dev = new native.OpRunner({ backend: 'cuda', tf32: precision === 'tf32', fused: process.env.NCF_CUDA_FUSED !== '0', ...(maxBlocks ? { maxBlocks } : {}) });
        deviceName = dev.info.device;
        const label = maxBlocks ? `${precision}, ${maxBlocks} blocks` : precision;
        checks.push(...compareOps(dev, cpu, precision).map((c) => ({ ...c, name: `${c.name} [${label}]` })));
      }
    }
    if (opts.training !== false) checks.push(...(await compareTrainingChecks('cuda')));
  }
  return { device, deviceName, checks, ok: checks.every((c) => c.ok) };
}

export function formatSelftest(r: SelftestResult): string {
  const w = Math.max(...r.checks.map((c) => c.name.length));
  const lines = [`selftest on ${r.device} (${r.deviceName})`, `${'check'.padEnd(w)}  precision  error      tolerance  result`];
  for (const c of r.checks)
    lines.push(
      `${c.name.padEnd(w)}  ${c.precision.padEnd(9)}  ${c.error.toExponential(2).padEnd(9)}  ${c.tolerance.toExponential(0).padEnd(9)}  ${c.ok ? 'ok' : 'FAIL'}${c.note ? `  (${c.note})` : ''}`,
    );
  const failed = r.checks.filter((c) => !c.ok).length;
  lines.push(failed ? `${failed} of ${r.checks.length} checks FAILED` : `all ${r.checks.length} checks passed`);
  return lines.join('\n');
}
