/**
 * The kernel switches a run was started with: every NCF_CUDA_* variable and NCF_FIRST_LAYER in
 * the environment (the native backends read them; NCF_NATIVE_* only say where files go). Training
 * summaries and benchmarks record them, so that a figure says which kernels made it.
 */
export function kernelSwitches(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const switches: Record<string, string> = {};
  for (const name of Object.keys(env).sort())
    if ((name.startsWith('NCF_CUDA_') || name === 'NCF_FIRST_LAYER') && env[name] !== undefined && env[name] !== '') switches[name] = env[name]!;
  return switches;
}

/** "NAME=value NAME=value", or '' without switches. */
export function formatSwitches(switches: Record<string, string>): string {
  return Object.entries(switches)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}
