#!/usr/bin/env bash
# The GPU checks in one run, for a machine with an NVIDIA GPU (and the device tool's machine, via
# ../shared/gpu/remote.sh): build with CUDA, run the CUDA self-test, then the benchmarks of
# training (TF32 and --amp), evaluation and inference on synthetic ml-20m-shaped data, and the
# NCCL path with one rank against the single-process path. Outputs go to ${OUT:-gpu-check}/.
#
#   bash scripts/gpu-check.sh [quick]      (quick: self-test and one --amp training benchmark)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check}
mkdir -p "$out"
cli="node dist/bin/ncf-native.js"
step() { echo "== $*" | tee -a "$out/summary.txt"; }
run() { "$@" 2>&1 | tee -a "$out/log.txt"; return "${PIPESTATUS[0]}"; }

step "build (CUDA on)"
run npm run build:native -- --CDNCF_CUDA=ON -p "$(nproc)" || { step "build failed"; exit 1; }
run $cli info | tee -a "$out/summary.txt"
step "selftest --device cuda"
run $cli selftest --device cuda --json > "$out/selftest-cuda.json"
node -e 'const r=require(process.argv[1]);for(const c of r.checks)console.log(`${c.ok?"ok  ":"FAIL"} ${c.name} ${c.error.toExponential(2)} <= ${c.tolerance}${c.note?"  "+c.note:""}`)' "$PWD/$out/selftest-cuda.json" | tee -a "$out/summary.txt"
step "bench train --amp"
run $cli bench train --synthetic ml-20m --amp -e 3 --out "$out/bench-train-amp.json" | tee -a "$out/summary.txt"
[ "${1:-}" = quick ] && exit 0
step "bench train (TF32)"
run $cli bench train --synthetic ml-20m -e 3 --out "$out/bench-train-tf32.json" | tee -a "$out/summary.txt"
step "bench train --amp --no-neg-trick (memory)"
run $cli bench train --synthetic ml-20m --amp --no-neg-trick -e 2 --out "$out/bench-train-verified.json" | tail -3 | tee -a "$out/summary.txt"
step "bench eval"
run $cli bench eval --synthetic ml-20m --out "$out/bench-eval.json" | tail -2 | tee -a "$out/summary.txt"
step "bench infer"
run $cli bench infer --out "$out/bench-infer.json" | tee -a "$out/summary.txt"
step "accuracy: HR@10 with and without --amp (synthetic ml-20m, 5 epochs)"
run $cli train --data synthetic --amp -e 5 --eval-after 0 --seed 1 --checkpoint-dir "$out/ck-amp" --log-path "$out/amp.log" --no-progress | tail -3 | tee -a "$out/summary.txt"
run $cli train --data synthetic -e 5 --eval-after 0 --seed 1 --checkpoint-dir "$out/ck-tf32" --log-path "$out/tf32.log" --no-progress | tail -3 | tee -a "$out/summary.txt"
step "NCCL with one rank vs one process"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 run mpirun -np 1 $cli train --distributed --data synthetic:ml-1m -b 65536 -e 2 --eval-after 0 --seed 3 --no-tf32 --checkpoint-dir "$out/ck-nccl" --log-path "$out/nccl.log" --no-progress --json > "$out/nccl.json"
run $cli train --data synthetic:ml-1m -b 65536 -e 2 --eval-after 0 --seed 3 --no-tf32 --checkpoint-dir "$out/ck-plain" --log-path "$out/plain.log" --no-progress --json > "$out/plain.json"
node -e 'const a=require(process.argv[1]),b=require(process.argv[2]);console.log("nccl 1 rank:", a.info.communicator, "losses", a.epochs.map(e=>e.loss).join(" "), "hr", a.bestHr, "| plain: losses", b.epochs.map(e=>e.loss).join(" "), "hr", b.bestHr)' "$PWD/$out/nccl.json" "$PWD/$out/plain.json" | tee -a "$out/summary.txt"
step "mpirun -np 2 on the CPU backend"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 run mpirun -np 2 --oversubscribe $cli train --backend cpu --data synthetic:tiny -b 4096 -e 2 --eval-after 0 --seed 3 --checkpoint-dir "$out/ck-mpi" --log-path "$out/mpi.log" --no-progress | tail -3 | tee -a "$out/summary.txt"
