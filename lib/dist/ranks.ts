/**
 * This process's place in a multi-process job, read from the launcher's environment: Open MPI
 * (OMPI_COMM_WORLD_*), MPICH / Intel MPI (PMI_* and MPI_LOCALRANKID), Slurm (SLURM_PROCID,
 * SLURM_NTASKS, SLURM_LOCALID) or the generic RANK / WORLD_SIZE / LOCAL_RANK. A process started
 * without a launcher is rank 0 of 1. Each rank uses GPU number local rank.
 */
import { InvalidArgumentError } from '../errors';

export interface RankInfo {
  rank: number;
  size: number;
  localRank: number;
  launcher: 'openmpi' | 'mpich' | 'slurm' | 'env' | 'none';
}

type Env = Record<string, string | undefined>;

function int(env: Env, key: string): number | undefined {
  const v = env[key];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`environment variable ${key}=${v} is not a non-negative integer`, key);
  return n;
}

export function detectRanks(env: Env = process.env): RankInfo {
  const pick = (
    launcher: RankInfo['launcher'],
    rankKey: string,
    sizeKey: string,
    localKeys: string[],
  ): RankInfo | undefined => {
    const rank = int(env, rankKey), size = int(env, sizeKey);
    if (rank === undefined || size === undefined) return undefined;
    let localRank: number | undefined;
    for (const k of localKeys) localRank ??= int(env, k);
    if (size < 1 || rank >= size) throw new InvalidArgumentError(`${rankKey}=${rank} is not below ${sizeKey}=${size}`, rankKey);
    return { rank, size, localRank: localRank ?? rank, launcher };
  };
  return (
    pick('openmpi', 'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', ['OMPI_COMM_WORLD_LOCAL_RANK']) ??
    pick('mpich', 'PMI_RANK', 'PMI_SIZE', ['MPI_LOCALRANKID', 'PMI_LOCAL_RANK']) ??
    pick('slurm', 'SLURM_PROCID', 'SLURM_NTASKS', ['SLURM_LOCALID']) ??
    pick('env', 'RANK', 'WORLD_SIZE', ['LOCAL_RANK']) ?? { rank: 0, size: 1, localRank: 0, launcher: 'none' }
  );
}
