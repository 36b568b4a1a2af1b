#!/usr/bin/env bash
# Where a training step, an evaluation and a batch of scores spend their GPU time: Nsight
# Compute's duration and DRAM bytes of every kernel in a window of launches, summed per kernel
# and divided by the steps in the window. For a machine with an NVIDIA GPU and ncu; the device
# tool's machine via ../shared/gpu/remote.sh.
#
#   [NCU_DETAIL=REGEX] bash scripts/gpu-profile.sh [NAME=ENV ...]
# Each NAME=ENV runs the training and evaluation profiles with that environment (e.g.
# chain=NCF_CUDA_FUSED=0 fused=NCF_CUDA_FUSED=1); without any, once as the defaults are. One table per profile goes to
# ${OUT:-gpu-profile}/profile.txt, the raw CSVs beside it.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-profile}
mkdir -p "$out"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ncf-gpu-profile.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
cli="node dist/bin/ncf-native.js"
export NCF_NATIVE_NO_PROGRESS=1 NCF_NATIVE_HOME="$scratch/home"
step_limit=${STEP_LIMIT:-150}

if [ ! -f build/Release/ncf_cuda.so ]; then
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')
  npm run build:native -- --CDNCF_CUDA=ON --CDNCF_CUDA_ARCHS="$arch" -p "$(nproc)" >"$scratch/build.log" 2>&1 ||
    { tail -40 "$scratch/build.log"; exit 1; }
fi
# The synthetic ml-20m data once, so that each profile starts from the cache.
timeout "$step_limit" $cli bench eval --synthetic ml-20m --repeats 1 --out "$scratch/warm.json" >/dev/null 2>&1

# profile NAME SKIP COUNT COMMAND...: kernel durations and DRAM bytes of launches SKIP .. SKIP+COUNT.
profile() {
  local name=$1 skip=$2 count=$3; shift 3
  timeout "$step_limit" ncu --csv --print-kernel-base function --launch-skip "$skip" --launch-count "$count" \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum "$@" >"$out/$name.csv" 2>"$scratch/$name.err" ||
    { echo "== $name: ncu failed"; tail -5 "$scratch/$name.err"; return; }
  python3 - "$name" "$out/$name.csv" <<'EOF' | tee -a "$out/profile.txt"
import csv, sys
name, path = sys.argv[1:]
rows = [r for r in csv.reader(l for l in open(path) if l.startswith('"'))]
head, rows = rows[0], rows[1:]
k, m, u, v = (head.index(c) for c in ("Kernel Name", "Metric Name", "Metric Unit", "Metric Value"))
scale = {"ns": 1e-6, "nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0, "byte": 1e-9, "Kbyte": 1e-6, "Mbyte": 1e-3, "Gbyte": 1.0}
per = {}
launches = {}
for r in rows:
    e = per.setdefault(r[k], {"ms": 0.0, "gb": 0.0})
    val = float(r[v].replace(",", "")) * scale.get(r[u], 1.0)
    if r[m] == "gpu__time_duration.sum":
        e["ms"] += val
        launches[r[k]] = launches.get(r[k], 0) + 1
    else:
        e["gb"] += val
steps = max(1, launches.get("adam_kernel", 0) or launches.get("eval_rank_kernel", 0) or 1)
total = sum(e["ms"] for e in per.values())
print(f"== {name}: {sum(launches.values())} launches, {steps} steps (adam or eval_rank launches); per step:")
print(f"{'kernel':58s} {'calls':>6s} {'ms':>8s} {'share':>6s} {'GB':>7s} {'TB/s':>6s}")
for kname, e in sorted(per.items(), key=lambda x: -x[1]["ms"]):
    ms = e["ms"] / steps
    print(f"{kname[:58]:58s} {launches.get(kname, 0) / steps:6.1f} {ms:8.3f} {100 * e['ms'] / total:5.1f}% {e['gb'] / steps:7.3f} "
          f"{(e['gb'] / e['ms'] if e['ms'] else 0):6.2f}")
print(f"{'total':58s} {'':6s} {total / steps:8.3f}")
EOF
}

# PROFILES="train-amp eval-amp ...": only those (train-amp, train-tf32, eval-amp, infer-fp16).
wanted() { [ -z "${PROFILES:-}" ] || [[ " $PROFILES " == *" $1 "* ]]; }
variants=("$@"); [ $# -gt 0 ] || variants=("default=")
for v in "${variants[@]}"; do
  label=${v%%=*}; envs=${v#*=}
  wanted train-amp && profile "train-amp-$label" 400 300 env $envs $cli bench train --synthetic ml-20m --amp -e 1 --out "$scratch/t.json"
  wanted train-tf32 && profile "train-tf32-$label" 400 300 env $envs $cli bench train --synthetic ml-20m -e 1 --out "$scratch/t.json"
  wanted eval-amp && profile "eval-amp-$label" 0 400 env $envs $cli bench eval --synthetic ml-20m --amp --repeats 1 --out "$scratch/e.json"
done
# NCU_DETAIL=REGEX: Nsight Compute's throughput, occupancy, issue and stall sections of the
# kernels whose names match, a few launches each in an --amp training epoch after warm-up, with
# NCU_DETAIL_ENV's switches (e.g. "NCF_CUDA_HIDDEN_FORWARD=1 NCF_CUDA_HIDDEN_BACKWARD=1" and
# NCU_DETAIL="hidden_" for the hidden layers' kernels).
if [ -n "${NCU_DETAIL:-}" ]; then
  echo "== detail: kernels matching $NCU_DETAIL, --amp training ${NCU_DETAIL_ENV:-}" | tee -a "$out/profile.txt"
  # shellcheck disable=SC2086  # NCU_DETAIL_ENV splits into its assignments
  timeout "$step_limit" env ${NCU_DETAIL_ENV:-} ncu --kernel-name "regex:$NCU_DETAIL" --launch-skip "${NCU_DETAIL_SKIP:-40}" \
    --launch-count "${NCU_DETAIL_COUNT:-6}" --section SpeedOfLight --section Occupancy --section WarpStateStats \
    --section ComputeWorkloadAnalysis $cli bench train --synthetic ml-20m --amp -e 1 --out "$scratch/d.json" 2>&1 |
    grep -E '^  [a-zA-Z_].*\(|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Registers Per|Achieved Occupancy|Warp Cycles Per Issued|Issue Slots Busy|Executed Ipc A|stalled' |
    cut -c1-240 | tee -a "$out/profile.txt"
fi
wanted infer-fp16 && profile "infer-fp16" 0 400 $cli bench infer --batch-sizes 1048576 --precision fp16 --seconds 0.2 --topk-users 0 --out "$scratch/i.json"
echo "== done"
