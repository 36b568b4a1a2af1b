#!/usr/bin/env bash
# The GPU checks in one run, for a machine with an NVIDIA GPU (and the device tool's machine, via
# ../shared/gpu/remote.sh): build with CUDA for this GPU's architecture, run the CUDA self-test,
# then the benchmarks of training (TF32 and --amp, with the peak memory of --no-neg-trick),
# evaluation and inference on synthetic ml-20m-shaped data (through the op chains, the default,
# and for comparison: --amp training with the DRELU_BGRAD epilogue, NCF_CUDA_DRELU=1, with
# batches not grouped by user, NCF_CUDA_GROUPED=0, with the first layer per row instead of by
# parts, NCF_FIRST_LAYER=rows, with the per-user gradient sums by atomics, NCF_CUDA_SUMS_BY_USER=0,
# with the per-item sums by atomics instead of over the rows sorted by item, NCF_CUDA_ITEM_SORT=0,
# TF32 training with the input-gradient GEMMs on the weights as stored, NCF_CUDA_GEMM_NN=1,
# with the last layer's dropout as a pass, NCF_CUDA_HEAD_DROPOUT=0, with the fp16 gather and
# dropout pass in fp32 arithmetic instead of half2, NCF_CUDA_HALF_MATH=0, and, --amp and TF32, with the
# masking in the DRELU epilogue and a column-sum pass for the bias gradient, NCF_CUDA_DRELU=mask,
# and with each GEMM on the heuristic's first algorithm instead of the fastest of its candidates,
# NCF_CUDA_GEMM_TUNE=0; the fused kernels, NCF_CUDA_FUSED=1; and, --amp and TF32, each step after
# the first of its shape as a CUDA Graph, NCF_CUDA_GRAPH=1, off by default; --amp, the hidden
# layers after the first in one kernel forward, NCF_CUDA_HIDDEN_FORWARD=1, and one backward,
# NCF_CUDA_HIDDEN_BACKWARD=1, both off by default, each alone and together (and the forward one
# with one staging buffer, NCF_CUDA_HIDDEN_FORWARD=one-buffer, which in TF32 takes both layers
# instead of the first alone) timed on the run's own steps and the fastest kept,
# NCF_CUDA_AUTOTUNE=1 (--amp and TF32, training and evaluation), --amp together and with the
# graphs, and TF32 together (also with the one-buffer forward kernel), and without the backward
# kernel's per-user sums, NCF_CUDA_HIDDEN_SUMS=0, and (both precisions) without the forward
# kernel taking the first layer, NCF_CUDA_HIDDEN_PARTS=0; after them a table of each switch
# run's samples/s against its default's),
# HR@10 with and without --amp, the NCCL path with one rank against the single-process path, and
# mpirun -np 2 on the CPU backend. With NCF_CUDA_DRELU=1, a line "ncf-native: cuBLASLt's DRELU_BGRAD epilogue is
# unavailable or disagrees ..." in the summary means the epilogue's check failed on this GPU and
# the separate masking pass ran.
#
#   bash scripts/gpu-check.sh [quick|targets|figures|dry]
#     quick  self-test and the --amp training benchmarks: the op chains (the default), the
#            kernel forms timed on the run's own steps (NCF_CUDA_AUTOTUNE=1), with the
#            DRELU_BGRAD epilogue (NCF_CUDA_DRELU=1), without grouping batches by user
#            (NCF_CUDA_GROUPED=0), with the first layer per row (NCF_FIRST_LAYER=rows), the
#            per-user sums by atomics (NCF_CUDA_SUMS_BY_USER=0), the per-item sums by atomics
#            (NCF_CUDA_ITEM_SORT=0), the last layer's dropout as a
#            pass (NCF_CUDA_HEAD_DROPOUT=0), fp32 arithmetic in the fp16 gather and dropout
#            pass (NCF_CUDA_HALF_MATH=0), the DRELU epilogue (NCF_CUDA_DRELU=mask),
#            untuned GEMMs (NCF_CUDA_GEMM_TUNE=0), steps as CUDA Graphs (NCF_CUDA_GRAPH=1,
#            also TF32), the hidden layers in one kernel forward and one backward
#            (NCF_CUDA_HIDDEN_FORWARD=1, NCF_CUDA_HIDDEN_BACKWARD=1), and the fused kernels
#            (NCF_CUDA_FUSED=1)
#     targets  the issue's figures only: self-test, --amp and TF32 training, the memory of
#            --no-neg-trick, evaluation, HR@10 with and without --amp, each benchmark of
#            training and evaluation followed by the same with the kernel forms timed on the
#            run's own steps (NCF_CUDA_AUTOTUNE=1); and the opt-in switches (steps as CUDA
#            Graphs, the hidden layers in one kernel each way)
#     figures  the issue's figures with the defaults as they are, nothing else: self-test, --amp
#            and TF32 training, the memory of --no-neg-trick, evaluation, HR@10 with and without
#            --amp (about 4 minutes less than targets: for measuring again after a switch became
#            a default)
#     dry    no build and small data, for checking this script without a GPU: run it with
#            NCF_CUDA_PLUGIN=$PWD/build-emu/Release/ncf_cuda_emu.so (the emulated backend); DRY=1
#            does the same for another mode (DRY=1 ... figures)
#
# The main training benchmarks run with NCF_CUDA_GEMM_LOG=1: the summary gets each tuned GEMM's
# pick, log.txt every candidate's configuration and time. After each (every mode), a 2-epoch run
# with NCF_CUDA_OP_TIMES=1 puts the second epoch's GPU time per op (CUDA events in the run
# itself: no serialisation, no cache flush) into the summary. After the self-test, it runs again
# with the opt-in switches NCF_CUDA_GRAPH=1 NCF_CUDA_HIDDEN_FORWARD=1 NCF_CUDA_HIDDEN_BACKWARD=1
# (every mode): the training losses against the CPU's, and the hidden_forward and hidden_backward
# kernels' checks against the CPU's chains. The opt-in switch runs end with the op times of an
# --amp run with both hidden kernels. (The self-test runs each op check also with every grid at 2
# blocks, where each kernel loops over its work as only full size does otherwise.) After the
# switch runs (every mode but quick): HR@10 by epoch with the fastest opt-in switch run of each
# precision, where it beat its default; HR@10 by epoch against the CPU backend's (means of 8 seeds
# on synthetic ml-100k-shaped data, scripts/hr-vs-cpu.sh); and, last in the mode, on a GPU, the
# hidden-layer kernels' op checks under compute-sanitizer's racecheck with 2 blocks each looping
# over several tiles.
#
# At most 8 files go to ${OUT:-gpu-check}/ (what the device tool brings back): summary.txt,
# log.txt and six JSON files. Checkpoints and logs go to a scratch folder.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-full}
case $mode in
  full | quick | targets | figures | dry) ;;
  *) echo "gpu-check: unknown mode '$mode': expected quick, targets, figures or dry (none: everything)" >&2; exit 2 ;;
esac
# Small data, no build, no GPU tools: dry, or DRY=1 with another mode.
small=false
if [ "$mode" = dry ] || [ "${DRY:-0}" = 1 ]; then small=true; fi
out=${OUT:-gpu-check}
mkdir -p "$out"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ncf-gpu-check.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
cli="node dist/bin/ncf-native.js"
export NCF_NATIVE_NO_PROGRESS=1 NCF_NATIVE_HOME="$scratch/home"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Each step has a time limit (STEP_LIMIT seconds), and the whole check a budget (CHECK_BUDGET
# seconds from the start): once it is spent, `step` skips what is left, so a slow or hung step
# cannot eat the device time that the figures after it need.
step_limit=${STEP_LIMIT:-150}; budget=${CHECK_BUDGET:-100000}
over_budget() { [ "$SECONDS" -ge "$budget" ]; }
step() { echo "== $* ($(date +%T), ${SECONDS}s)" | tee -a "$out/summary.txt"; }
run() {
  over_budget && { echo "skipped (check budget spent): $*" | tee -a "$out/summary.txt"; return 124; }
  timeout -k 5 "$step_limit" "$@" 2>&1 | tee -a "$out/log.txt"; local rc=${PIPESTATUS[0]}
  [ "$rc" = 124 ] && echo "timed out after ${step_limit}s: $*" | tee -a "$out/summary.txt"
  return "$rc"
}
# The figure lines of a benchmark's output, prefixed with a label.
figures() { grep -E 'throughput|epoch time|peak memory|peak device|ncf cuda graph|CUDA Graph|ncf cuda hidden_|fused hidden_|^autotune: ' | sed "s/^/$1/"; }
# A benchmark's output without the GEMM tuning log's per-candidate lines (log.txt keeps them).
picks() { grep -v '^ncf gemm tune   '; }
# A command whose stdout is JSON: stdout to the file, its messages to the log only.
run_json() {
  local file=$1; shift
  over_budget && { echo "skipped (check budget spent): $*" | tee -a "$out/summary.txt"; return 124; }
  timeout -k 5 "$step_limit" "$@" 2>>"$out/log.txt" >"$file"
}

if $small; then
  shape=tiny; batch=(-b 4096); train_epochs=2; infer=(--batch-sizes 1024 4096 --seconds 0.3 --topk-users 3)
  fused_infer=(--batch-sizes 1024 --seconds 0.3 --topk-users 3)
  nccl_data=synthetic:tiny; nccl_batch=4096; accuracy_epochs=2
else
  shape=ml-20m; batch=(); train_epochs=3; infer=(--seconds 1)
  fused_infer=(--batch-sizes 65536 1048576 --seconds 1 --topk-users 100)
  nccl_data=synthetic:ml-1m; nccl_batch=65536; accuracy_epochs=5
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee -a "$out/summary.txt"
  step "build (CUDA on)"
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
  run npm run build:native -- --CDNCF_CUDA=ON ${arch:+--CDNCF_CUDA_ARCHS=$arch} -p "$(nproc)" || { step "build failed"; exit 1; }
fi
run $cli info | tee -a "$out/summary.txt"

# A self-test's JSON report as one line per check.
print_checks() {
  node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));for(const c of r.checks)console.log(`${c.ok?"ok  ":"FAIL"} ${c.name} ${c.error.toExponential(2)} <= ${c.tolerance}${c.note?"  "+c.note:""}`)' "$1"
}
step "selftest --device cuda"
run_json "$out/selftest-cuda.json" $cli selftest --device cuda --json; selftest_rc=$?
print_checks "$out/selftest-cuda.json" | tee -a "$out/summary.txt"
if [ "$selftest_rc" != 0 ] && ! $small; then
  # Where a kernel faults or reads what nothing wrote: the first reports of compute-sanitizer.
  step "selftest failed ($selftest_rc): compute-sanitizer memcheck on the op checks"
  run compute-sanitizer --tool memcheck --print-limit 10 $cli selftest --device cuda --no-training \
    | grep -E -m 40 'Invalid|Address|at 0x|by thread|Saved host|ERROR SUMMARY|========= +#|Program hit' | tee -a "$out/summary.txt"
fi

# The self-test with the opt-in switches on (off by default until measured): its training runs
# with each step after the first of its shape captured as a CUDA Graph (NCF_CUDA_GRAPH=1): their
# losses and HR@10 against the CPU's, and the graphs' counts (steps launched as graphs,
# instantiations, updates) or the capture's failure; and the hidden layers after the first in one
# kernel each way (NCF_CUDA_HIDDEN_FORWARD=1, NCF_CUDA_HIDDEN_BACKWARD=1): their op checks
# against the CPU's chains (they also say whether each ran fused), and the training runs with them.
if [ "$mode" != figures ]; then
  step "selftest --device cuda with NCF_CUDA_GRAPH=1 NCF_CUDA_HIDDEN_FORWARD=1 NCF_CUDA_HIDDEN_BACKWARD=1"
  run_json "$scratch/selftest-graph.json" env NCF_CUDA_GRAPH=1 NCF_CUDA_HIDDEN_FORWARD=1 NCF_CUDA_HIDDEN_BACKWARD=1 \
    $cli selftest --device cuda --json
  print_checks "$scratch/selftest-graph.json" | grep -E '^[a-zA-Z ]{5}(training|hidden_)' | sed 's/^/opt-in: /' | tee -a "$out/summary.txt"
  grep -E 'ncf cuda graph|CUDA Graph|ncf cuda hidden_|fused hidden_' "$out/log.txt" | tail -8 | sed 's/^/opt-in: /' | tee -a "$out/summary.txt"
fi

# One file with what the accuracy, NCCL and MPI steps printed (those that ran), and their summary lines.
summarise_results() {
node -e '
const fs = require("fs"), [dir, out] = process.argv.slice(1);
const read = (n) => { try { return JSON.parse(fs.readFileSync(`${dir}/${n}.json`, "utf8")); } catch (e) { return { error: String(e.message) }; } };
const r = {};
for (const n of ["amp", "tf32", "nccl", "plain", "mpi", "verified"]) r[n] = read(n);
fs.writeFileSync(`${out}/results.json`, JSON.stringify(r, null, 2));
const hr = (s) => s.epochs ? s.epochs.map((e) => e.hr.toFixed(4)).join(" ") : s.error;
const loss = (s) => s.epochs ? s.epochs.map((e) => e.loss).join(" ") : s.error;
console.log(`HR@10 by epoch, amp:  ${hr(r.amp)}  (best ${r.amp.bestHr})`);
console.log(`HR@10 by epoch, tf32: ${hr(r.tf32)}  (best ${r.tf32.bestHr})`);
const ran = (s) => !(s.error && s.error.startsWith("ENOENT"));  // steps this mode left out print nothing
if (ran(r.nccl) || ran(r.plain)) {
  console.log(`nccl 1 rank (${r.nccl.info ? r.nccl.info.communicator : "?"}): losses ${loss(r.nccl)}`);
  console.log(`no communicator:      losses ${loss(r.plain)}`);
}
if (ran(r.mpi)) console.log(`mpirun -np 2 cpu (${r.mpi.info ? r.mpi.info.communicator : "?"}): losses ${loss(r.mpi)} best hr ${r.mpi.bestHr}`);
' "$scratch" "$out" | tee -a "$out/summary.txt"
}

# --amp training with each default switched off in turn: a default that does not pay shows here.
# switched ENV [FLAG]: bench train for 2 epochs with one switch in the environment (ENV: one or
# more NAME=VALUE, space-separated; FLAG --amp, or none for TF32), its figures into the summary
# labelled "ENV, --amp: " or "ENV, TF32: ", its samples/s into switches.tsv (and into
# opt-in.tsv when opt_in_runs calls it).
switched() {
  rm -f "$scratch/switched.json"
  # shellcheck disable=SC2086  # ENV splits into its assignments
  run env $1 $cli bench train --synthetic $shape "${batch[@]}" ${2:-} -e 2 --out "$scratch/switched.json" \
    | figures "$1, ${2:-TF32}: " | tee -a "$out/summary.txt"
  [ -s "$scratch/switched.json" ] && node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(`${process.argv[2]}\t${r.trainSamplesPerSecond}`)' \
    "$scratch/switched.json" "$1, ${2:-TF32}" >>"$scratch/switches.tsv" &&
    { [ -z "${opt_in:-}" ] || tail -n 1 "$scratch/switches.tsv" >>"$scratch/opt-in.tsv"; }
}
# Each switch run so far against its default (the main benchmark of its precision), one line
# each: what a default should become shows here.
switch_table() {
  step "switches against the defaults (training samples/s)"
  [ -s "$scratch/switches.tsv" ] || { echo "no switch run finished" | tee -a "$out/summary.txt"; return; }
  node -e '
const fs = require("fs"), [tsv, dir] = process.argv.slice(1);
const base = {};
for (const [p, f] of [["--amp", "bench-train-amp.json"], ["TF32", "bench-train-tf32.json"]])
  try { base[p] = JSON.parse(fs.readFileSync(`${dir}/${f}`, "utf8")).trainSamplesPerSecond; } catch {}
for (const line of fs.readFileSync(tsv, "utf8").trim().split("\n")) {
  const [label, rate] = line.split("\t"), prec = label.split(", ").pop(), b = base[prec], r = Number(rate);
  const vs = b ? ` vs the default ${(b / 1e6).toPrecision(4)}M: ${r >= b ? "+" : ""}${((r / b - 1) * 100).toFixed(1)}%` : " (no default figure)";
  console.log(`${label}: ${(r / 1e6).toPrecision(4)}M samples/s${vs}`);
}' "$scratch/switches.tsv" "$out" | tee -a "$out/summary.txt"
}
# The fastest opt-in switch run of each precision (CUDA Graphs, the hidden-layer kernels), if it
# beat that precision's default: HR@10 by epoch with it, as the accuracy step has it for the
# defaults, for turning those switches into defaults in one run.
best_opt_in_accuracy() {
  [ -s "$scratch/opt-in.tsv" ] || return 0
  for prec in amp tf32; do
    local label=--amp flag=(--amp) base=bench-train-amp.json
    [ $prec = tf32 ] && { label=TF32; flag=(); base=bench-train-tf32.json; }
    local best
    best=$(node -e '
const fs = require("fs"), [tsv, base, label] = process.argv.slice(1);
let b = 0; try { b = JSON.parse(fs.readFileSync(base, "utf8")).trainSamplesPerSecond; } catch {}
let best = "", rate = b;
for (const line of fs.readFileSync(tsv, "utf8").trim().split("\n")) {
  const [l, r] = line.split("\t"), parts = l.split(", "), prec = parts.pop(), env = parts.join(", ");
  if (prec === label && Number(r) > rate) { best = env; rate = Number(r); }
}
console.log(best);' "$scratch/opt-in.tsv" "$out/$base" "$label")
    [ -n "$best" ] || { echo "accuracy with the fastest opt-in switches, $label: none beat the default" | tee -a "$out/summary.txt"; continue; }
    step "accuracy with the fastest opt-in switches, $label: $best"
    # shellcheck disable=SC2086  # best splits into its assignments
    run_json "$scratch/best-$prec.json" env $best $cli train --data synthetic:$shape "${batch[@]}" "${flag[@]}" -e $accuracy_epochs \
      --eval-after 0 --seed 1 --checkpoint-dir "$scratch/ck-best-$prec" --log-path "$scratch/best-$prec.log" --json
    node -e '
const fs = require("fs"), [file, label, env] = process.argv.slice(1);
try {
  const s = JSON.parse(fs.readFileSync(file, "utf8"));
  console.log(`HR@10 by epoch, ${label} with ${env}: ${s.epochs.map((e) => e.hr.toFixed(4)).join(" ")}  (best ${s.bestHr})`);
} catch (e) { console.log(`HR@10, ${label} with ${env}: no result (${e.message})`); }' "$scratch/best-$prec.json" "$label" "$best" \
      | tee -a "$out/summary.txt"
  done
}
# The hidden-layer tile kernels under compute-sanitizer's racecheck (shared-memory hazards: the
# staging buffers' refills against their reads, the shared tiles between layers, the bias sums),
# with 2 blocks looping over 1 to 10 tiles (the self-test's op checks, hidden-checks.ts, by
# scripts/hidden-layer-checks.js): fp16 and TF32, then with hidden_forward's one-buffer form (one
# buffer refilled mid-tile, at ml-20m's layers). Last in each mode (quick: none), as a diagnosis.
hidden_racecheck() {
  ! $small && command -v compute-sanitizer >/dev/null || return 0
  local forward precisions
  for forward in 1:fp16,tf32 one-buffer:fp16,tf32; do
    precisions=${forward#*:}
    forward=${forward%%:*}
    step "compute-sanitizer racecheck: hidden_forward (NCF_CUDA_HIDDEN_FORWARD=$forward) and hidden_backward, $precisions, 2 blocks of several tiles"
    run env NCF_CUDA_HIDDEN_FORWARD=$forward NCF_CUDA_HIDDEN_BACKWARD=1 compute-sanitizer --tool racecheck --print-limit 10 \
      node scripts/hidden-layer-checks.js "$precisions" \
      | grep -E -m 40 'FAIL|Race|Hazard|hazard|Error|ERROR SUMMARY|RACECHECK SUMMARY|at 0x|========= +#' | tee -a "$out/summary.txt"
  done
}
# HR@10 by epoch of the CUDA backend (TF32 and --amp) against the CPU backend's, on synthetic
# ml-100k-shaped data, means of 8 seeds of 4 epochs (scripts/hr-vs-cpu.sh; dry: tiny data, 2 seeds
# of 2): the issue's accuracy criterion, the curve within 0.005 of the CPU's (one seed's runs
# differ by up to ~0.02 with the order of sums alone; emulated, 12 seeds gave twice the standard
# error of the mean difference as 0.0025-0.0041, so 8 give about 0.004). Three runs at once, with
# three step limits for the 24.
hr_vs_cpu() {
  local shape=ml-100k seeds=8 epochs=4 batch=4096
  $small && { shape=tiny; seeds=2; epochs=2; batch=2048; }
  step "HR@10 against the CPU backend (synthetic $shape, $seeds seeds of $epochs epochs)"
  run $cli prepare synthetic:$shape -o "$scratch/hr-data" --seed 1 >/dev/null || return 0
  step_limit=$((3 * step_limit)) run env OUT="$scratch/hr-vs-cpu" JOBS=3 BATCH=$batch bash scripts/hr-vs-cpu.sh "$scratch/hr-data" $seeds $epochs \
    | grep -v '^done: ' | tee -a "$out/summary.txt"
}
# op_times [FLAG [ENV NAME]]: bench train for 2 epochs with each op's GPU time (NCF_CUDA_OP_TIMES=1,
# FLAG --amp or none for TF32, ENV more NAME=VALUE switches, NAME their label); the second epoch's
# table and the run's figures into the summary.
op_times() {
  [ "$mode" = figures ] && return 0
  local label="op times, ${1:-TF32}${3:+, $3}"
  step "$label"
  # shellcheck disable=SC2086  # ENV splits into its assignments
  run env NCF_CUDA_OP_TIMES=1 ${2:-} $cli bench train --synthetic $shape "${batch[@]}" ${1:-} -e 2 --out "$scratch/op-times.json" \
    | awk -v label="$label" '/^ncf op times, /{keep = /training epoch 2:/} keep && /^ncf op times/{sub(/^ncf op times(, |   )/, ""); print label ": " $0} /throughput|epoch time/{print label ": " $0}' \
    | tee -a "$out/summary.txt"
}
switch_runs() {
  step "bench train --amp with each default switched off"
  for s in NCF_CUDA_DRELU=1 NCF_CUDA_GROUPED=0 NCF_FIRST_LAYER=rows NCF_CUDA_SUMS_BY_USER=0 NCF_CUDA_ITEM_SORT=0; do
    switched $s --amp
  done
  switched NCF_CUDA_GEMM_NN=1
  switched NCF_CUDA_HEAD_DROPOUT=0 --amp
  switched NCF_CUDA_HALF_MATH=0 --amp
  for flag in --amp ""; do
    switched NCF_CUDA_DRELU=mask $flag
    switched NCF_CUDA_GEMM_TUNE=0 $flag
  done
  opt_in_runs
  switch_table
}
# The kernel forms timed on the run's own steps (NCF_CUDA_AUTOTUNE=1, as train --autotune), right
# after the default's benchmark of the same kind (every mode but figures): one training run per
# precision gives each form's median step time in its "autotune:" line, the op chain against the
# hidden layers after the first in one kernel forward (NCF_CUDA_HIDDEN_FORWARD=1), one backward
# (NCF_CUDA_HIDDEN_BACKWARD=1, which also takes the first layer's per-user sums) and both, and its
# figures are those of the fastest (into the switch table as an opt-in run); evaluation the same
# (hidden_forward, which takes the first layer from its parts there, against the chain).
# tuned train|eval [FLAG]
tuned() {
  [ "$mode" = figures ] && return 0
  if [ "$1" = train ]; then
    opt_in=1 switched NCF_CUDA_AUTOTUNE=1 ${2:-}
  else
    # shellcheck disable=SC2086  # an empty flag is no argument
    run env NCF_CUDA_AUTOTUNE=1 $cli bench eval --synthetic $shape "${batch[@]}" ${2:-} --out "$scratch/eval-tuned.json" \
      | figures "NCF_CUDA_AUTOTUNE=1 evaluation, ${2:-TF32}: " | tee -a "$out/summary.txt"
  fi
}
# The other switches that are off by default until a GPU run measures them, switched on: each
# step as a CUDA Graph (NCF_CUDA_GRAPH=1), --amp and TF32; under --amp both hidden kernels, and
# both with the graphs; in TF32 both, and both with the per-user sums left to pair_row_sums
# (NCF_CUDA_HIDDEN_SUMS=0); in both precisions, both with the first layer left to
# gather_add_relu (NCF_CUDA_HIDDEN_PARTS=0).
opt_in_runs() {
  local opt_in=1  # (read by switched)
  for flag in --amp ""; do switched NCF_CUDA_GRAPH=1 $flag; done
  local both="NCF_CUDA_HIDDEN_FORWARD=1 NCF_CUDA_HIDDEN_BACKWARD=1"
  for s in "$both" "$both NCF_CUDA_GRAPH=1"; do switched "$s" --amp; done
  switched "$both"
  switched "NCF_CUDA_HIDDEN_FORWARD=one-buffer NCF_CUDA_HIDDEN_BACKWARD=1"  # (TF32: both layers forward in the kernel)
  switched "$both NCF_CUDA_HIDDEN_SUMS=0"
  for flag in --amp ""; do switched "$both NCF_CUDA_HIDDEN_PARTS=0" $flag; done
  op_times --amp "$both" "hidden kernels"
}

step "bench train --amp"
run env NCF_CUDA_GEMM_LOG=1 $cli bench train --synthetic $shape "${batch[@]}" --amp -e $train_epochs --out "$out/bench-train-amp.json" | picks | tee -a "$out/summary.txt"
tuned train --amp
op_times --amp
if [ "$mode" = quick ]; then
  switch_runs
  run env NCF_CUDA_FUSED=1 $cli bench train --synthetic $shape "${batch[@]}" --amp -e 2 --out "$scratch/train-fused.json" | figures "fused, --amp: " | tee -a "$out/summary.txt"
  exit 0
fi

step "bench train (TF32)"
run env NCF_CUDA_GEMM_LOG=1 $cli bench train --synthetic $shape "${batch[@]}" -e $train_epochs --out "$out/bench-train-tf32.json" | picks | tee -a "$out/summary.txt"
tuned train
op_times
step "bench train --amp --no-neg-trick (memory)"
run $cli bench train --synthetic $shape "${batch[@]}" --amp --no-neg-trick -e 1 --out "$scratch/verified.json" | figures "--no-neg-trick: " | tee -a "$out/summary.txt"
step "bench eval"
run $cli bench eval --synthetic $shape "${batch[@]}" --out "$out/bench-eval.json" | figures "TF32: " | tee -a "$out/summary.txt"
tuned eval
step "bench eval --amp"
run $cli bench eval --synthetic $shape "${batch[@]}" --amp --out "$scratch/eval-amp.json" | figures "--amp: " | tee -a "$out/summary.txt"
tuned eval --amp
if [ "$mode" != targets ] && [ "$mode" != figures ]; then
  step "bench infer"
  run $cli bench infer "${infer[@]}" --out "$out/bench-infer.json" | tee -a "$out/summary.txt"
fi

step "accuracy: HR@10 with and without --amp (synthetic $shape, $accuracy_epochs epochs)"
for prec in amp tf32; do
  flag=(); [ $prec = amp ] && flag=(--amp)
  run_json "$scratch/$prec.json" $cli train --data synthetic:$shape "${batch[@]}" "${flag[@]}" -e $accuracy_epochs --eval-after 0 --seed 1 \
    --checkpoint-dir "$scratch/ck-$prec" --log-path "$scratch/$prec.log" --json
done

if [ "$mode" = figures ]; then
  summarise_results
  step "done"
  exit 0
fi
if [ "$mode" = targets ]; then
  step "bench train with the opt-in switches (CUDA Graphs, hidden_backward)"
  opt_in_runs
  switch_table
  summarise_results
  best_opt_in_accuracy
  hr_vs_cpu
  hidden_racecheck
  step "done"
  exit 0
fi
switch_runs
best_opt_in_accuracy
hr_vs_cpu

step "NCCL with one rank vs one process ($nccl_data)"
common=(--data $nccl_data -b $nccl_batch -e 2 --eval-after 0 --seed 3 --no-tf32 --json)
run_json "$scratch/nccl.json" mpirun -np 1 $cli train --distributed "${common[@]}" --checkpoint-dir "$scratch/ck-nccl" --log-path "$scratch/nccl.log"
run_json "$scratch/plain.json" $cli train "${common[@]}" --checkpoint-dir "$scratch/ck-plain" --log-path "$scratch/plain.log"

step "mpirun -np 2 on the CPU backend"
run_json "$scratch/mpi.json" mpirun -np 2 --oversubscribe $cli train --backend cpu --data synthetic:tiny -b 4096 -e 2 --eval-after 0 \
  --seed 3 --checkpoint-dir "$scratch/ck-mpi" --log-path "$scratch/mpi.log" --json

summarise_results
# The same figures with the fused kernels (NCF_CUDA_FUSED=1), for work on them.
step "bench train with the fused kernels (NCF_CUDA_FUSED=1), --amp and TF32"
for flag in --amp ""; do
  run env NCF_CUDA_FUSED=1 $cli bench train --synthetic $shape "${batch[@]}" $flag -e 2 --out "$scratch/train-fused.json" | figures "fused, ${flag:-TF32}: " | tee -a "$out/summary.txt"
done
step "bench eval and infer with the fused kernels (NCF_CUDA_FUSED=1)"
for flag in "" --amp; do
  run env NCF_CUDA_FUSED=1 $cli bench eval --synthetic $shape "${batch[@]}" $flag --out "$scratch/eval-fused.json" | figures "fused, ${flag:-TF32}: " | tee -a "$out/summary.txt"
done
run env NCF_CUDA_FUSED=1 $cli bench infer "${fused_infer[@]}" --precision tf32 fp16 --out "$scratch/infer-fused.json" | tee -a "$out/summary.txt"

# Hardware counters of the fused kernels (one launch each, small data), while budget is left.
if ! $small && command -v ncu >/dev/null; then
  step "ncu: fused training and evaluation kernels"
  run env NCF_CUDA_FUSED=1 ncu --kernel-name regex:fused_kernel --launch-skip 2 --launch-count 2 --section SpeedOfLight --section Occupancy \
    --section LaunchStats --section MemoryWorkloadAnalysis $cli bench train --synthetic ml-1m --amp -e 1 --out "$scratch/ncu.json" \
    | grep -E '^  [a-z_]+.*fused_kernel|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Registers Per|Achieved Occupancy|Theoretical Occupancy|Shared Memory Config|Block Limit|Local' | tee -a "$out/summary.txt"
fi
hidden_racecheck
step "done"
