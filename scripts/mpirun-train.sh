#!/usr/bin/env bash
# Launches ncf-native training on N processes with mpirun, as the reference launches Horovod:
# one process per GPU (GPU = local rank), the global batch split across them, gradients summed
# with NCCL (CUDA) or MPI (CPU backend).
#
#   scripts/mpirun-train.sh N [--hostfile FILE] [train options...]
#
#   scripts/mpirun-train.sh 8 --amp --data ml-20m                        # 8 GPUs, one node
#   scripts/mpirun-train.sh 16 --hostfile hosts --amp --data /shared/ml-20m   # 2 nodes x 8 GPUs
#   scripts/mpirun-train.sh 2 --backend cpu --data synthetic:ml-1m -b 65536   # CPU, 2 processes
#
# The dataset is prepared once here (downloaded first if needed) and every rank reads that
# folder, so on several nodes it must be on a shared filesystem (or prepared on each node with
# the same command: preparation is deterministic, and ranks check they agree). Extra mpirun
# options go in $MPIRUN_ARGS; $MPIRUN picks another launcher binary.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cli="$here/dist/bin/ncf-native.js"
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
n=$1; shift
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "mpirun-train.sh: the first argument must be the number of processes, got '$n'" >&2; exit 2; }
hostfile=()
if [ "${1:-}" = "--hostfile" ]; then
  [ -f "${2:-}" ] || { echo "mpirun-train.sh: --hostfile needs an existing file" >&2; exit 2; }
  hostfile=(--hostfile "$2"); shift 2
fi

# Find --data (default ml-20m) and prepare it once; pass the prepared folder to every rank.
data=ml-20m; args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    --data=*) data=${1#--data=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
dir=$(node "$cli" prepare "$data" --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).dir))')

launcher=${MPIRUN:-mpirun}
command -v "$launcher" >/dev/null || { echo "mpirun-train.sh: $launcher not found (install Open MPI: openmpi-bin)" >&2; exit 1; }
# Open MPI: -x forwards the environment ncf-native reads to every rank (those that are set): the
# paths, the GPUs, every NCF_* variable (the cache, the kernel switches such as NCF_CUDA_AUTOTUNE,
# which every rank must share) and every NCCL_* one. (Local ranks inherit it anyway; ranks on
# other nodes get only what is forwarded.)
forward=()
for v in PATH LD_LIBRARY_PATH CUDA_VISIBLE_DEVICES $(compgen -e | grep -E '^(NCF|NCCL)_' || true); do
  [ -n "${!v:-}" ] && forward+=(-x "$v")
done
exec "$launcher" -np "$n" "${hostfile[@]}" "${forward[@]}" ${MPIRUN_ARGS:-} \
  node "$cli" train --data "$dir" "${args[@]}"
