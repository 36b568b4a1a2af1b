/**
 * The CUDA backend under host emulation for the tests (native/emu, cmake/NcfCudaEmu.cmake):
 * builds ncf_cuda_emu.so incrementally, or takes NCF_CUDA_PLUGIN's build (CI's AddressSanitizer
 * run), and points the CUDA backend at it. `skip` says why the CUDA tests cannot run (no CUDA
 * headers), else false.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..', '..');

function buildEmulator(): { plugin?: string; skip?: string } {
  const sdk = process.env.NCF_CUDA_SDK ?? path.resolve(root, '..', 'shared', 'cuda-sdk');
  const args = ['cmake-js', 'build', '--log-level', 'warn', '-O', 'build-emu', '-T', 'ncf_cuda_emu', '--CDNCF_CUDA=OFF',
    '--CDNCF_CUDA_EMU=ON', '--CDNCF_MPI=OFF', ...(fs.existsSync(sdk) ? [`--CDNCF_CUDA_SDK=${sdk}`] : [])];
  const r = spawnSync('npx', args, { cwd: root, encoding: 'utf8', timeout: 600_000 });
  const out = `${r.stdout}${r.stderr}`;
  if (r.status !== 0) {
    const missing = /NCF_CUDA_EMU=ON but (\S+) was not found/.exec(out);
    if (missing) return { skip: `no CUDA headers for the emulator (${missing[1]}); set NCF_CUDA_SDK` };
    throw new Error(`building ncf_cuda_emu.so failed:\n${out}`);
  }
  return { plugin: path.join(root, 'build-emu', 'Release', 'ncf_cuda_emu.so') };
}

export const built: { plugin?: string; skip?: string } = process.env.NCF_CUDA_PLUGIN ? { plugin: process.env.NCF_CUDA_PLUGIN } : buildEmulator();
// Device memory is unreadable by host code outside kernels and copies, as on a GPU (cuda_emu.h).
process.env.NCF_EMU_PROTECT ??= '1';
export const skip: string | false = built.skip ?? false;
if (built.plugin) process.env.NCF_CUDA_PLUGIN = built.plugin;

