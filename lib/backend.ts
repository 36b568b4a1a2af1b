/**
 * Chooses the compute backend: "cuda" needs the CUDA plugin and a visible GPU, "cpu" always
 * works, "auto" takes CUDA when it is usable and says why not otherwise.
 */
import { BackendError } from './errors';
import { addon } from './native';

export type BackendName = 'cpu' | 'cuda';
export type BackendChoice = BackendName | 'auto';

export interface ResolvedBackend {
  name: BackendName;
  /** Why "auto" fell back to the CPU, for a one-line notice. */
  note?: string;
}

export function resolveBackend(choice: BackendChoice): ResolvedBackend {
  if (choice === 'cpu') return { name: 'cpu' };
  const status = addon().cudaStatus();
  if (status.available) return { name: 'cuda' };
  if (choice === 'cuda')
    throw new BackendError('ERR_UNAVAILABLE', `the CUDA backend is unavailable: ${status.error ?? 'unknown reason'}`);
  return { name: 'cpu', note: `using the CPU backend (CUDA: ${status.error ?? 'unavailable'})` };
}
