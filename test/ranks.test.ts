// Rank discovery from each launcher's environment.
import t from 'tap';

import { detectRanks } from '../lib/index';

t.test('launchers', async (t) => {
  t.same(detectRanks({}), { rank: 0, size: 1, localRank: 0, launcher: 'none' });
  t.same(detectRanks({ OMPI_COMM_WORLD_RANK: '3', OMPI_COMM_WORLD_SIZE: '8', OMPI_COMM_WORLD_LOCAL_RANK: '1' }), { rank: 3, size: 8, localRank: 1, launcher: 'openmpi' });
  t.same(detectRanks({ PMI_RANK: '5', PMI_SIZE: '6', MPI_LOCALRANKID: '2' }), { rank: 5, size: 6, localRank: 2, launcher: 'mpich' });
  t.same(detectRanks({ SLURM_PROCID: '9', SLURM_NTASKS: '16', SLURM_LOCALID: '1' }), { rank: 9, size: 16, localRank: 1, launcher: 'slurm' });
  t.same(detectRanks({ RANK: '1', WORLD_SIZE: '2' }), { rank: 1, size: 2, localRank: 1, launcher: 'env' });
  t.same(detectRanks({ RANK: '1', WORLD_SIZE: '4', LOCAL_RANK: '0' }), { rank: 1, size: 4, localRank: 0, launcher: 'env' });
  t.equal(detectRanks({ OMPI_COMM_WORLD_RANK: '0', OMPI_COMM_WORLD_SIZE: '2', SLURM_PROCID: '5', SLURM_NTASKS: '9' }).launcher, 'openmpi', 'mpirun inside a Slurm allocation');
  t.throws(() => detectRanks({ RANK: '4', WORLD_SIZE: '4' }), /RANK=4 is not below WORLD_SIZE=4/);
  t.throws(() => detectRanks({ RANK: 'x', WORLD_SIZE: '4' }), /environment variable RANK=x is not a non-negative integer/);
});
