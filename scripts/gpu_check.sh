#!/bin/bash
# Issue 22 on the GPU machine in one run: aullm's CPU/GPU parity and timings of configs/paper.toml
# (examples/gpu_check.rs) beside the PyTorch reference of the paper, each step in its own process
# so that each has its own peak GPU memory and a failure or time-out stops only that step.
#   scripts/gpu_check.sh GPU_CHECK_BINARY REF_SCRIPT OUT_DIR SECONDS [gpu_check arguments...]
# SECONDS is the whole run's budget: a step's time limit is cut to what is left of it.
# Prepared here (no GPU needed; README "GPU"), into an ignored folder that the run carries:
#   CUDA_HOME=/work/cuda PATH=/work/cuda/bin:$PATH NVCC=/work/cuda/bin/nvcc CUDA_COMPUTE_CAP=90 \
#     CARGO_TARGET_DIR=target/cuda cargo build --release --features cuda --example gpu_check
#   mkdir -p target/gpu && strip -o target/gpu/gpu_check target/cuda/release/examples/gpu_check
#   cp ../shared/peers/ref_aullm_torch.py target/gpu/
# then, on the device: scripts/gpu_check.sh target/gpu/gpu_check target/gpu/ref_aullm_torch.py $OUT 540
# It writes five files: status.txt (GPU, libraries, each step's exit status, time and peak memory),
# aullm.jsonl (a JSON line per gpu_check section), aullm.log, ref.json and ref.log.
set -u
bin=$1 ref=$2 out=$3 budget=$4
shift 4
start=$SECONDS
mkdir -p "$out"
status=$out/status.txt
# The binary links the CUDA 13 libraries dynamically; on the GPU image they live in Python's
# site-packages (nvidia/cu13/lib), the driver's libcuda in the loader's cache or /usr/local/nvidia.
for d in /opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/lib; do
  [ -d "$d" ] && LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}" && export LD_LIBRARY_PATH
done
for lib in libcublas.so.13 libcublasLt.so.13 libcudart.so.13 libcurand.so.10 libnvrtc.so.13 libcuda.so.1; do
  ldd "$bin" 2>/dev/null | grep -q "$lib => not found" || continue
  hit=$(ls /opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/lib/"$lib" 2>/dev/null | head -1)
  [ -z "$hit" ] && hit=$(find /usr/local/nvidia /opt /usr -name "$lib" -not -path '*/stubs/*' 2>/dev/null | head -1)
  if [ -n "$hit" ]; then LD_LIBRARY_PATH="$(dirname "$hit"):${LD_LIBRARY_PATH:-}"; export LD_LIBRARY_PATH; fi
done
export LD_LIBRARY_PATH RUST_BACKTRACE=1 RUST_LOG=info PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  ldd "$bin" | grep -E 'cuda|cublas|curand|nvrtc'
  nproc
} > "$status" 2>&1

# step NAME LIMIT STDOUT STDERR COMMAND...: runs COMMAND under min(LIMIT, what is left of the
# budget), its output appended to the two files, while sampling the GPU's used memory every
# 100 ms; records exit status, seconds and the peak.
step() {
  local name=$1 limit=$2 stdout=$3 stderr=$4
  shift 4
  local left=$((budget - (SECONDS - start)))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 10 ]; then
    echo "$name: skipped, ${left}s of the budget left" >> "$status"
    return
  fi
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "/tmp/mem_$name" 2>/dev/null &
  local sampler=$! t0=$SECONDS
  echo "== $name" >> "$stderr"
  timeout "$limit" "$@" >> "$stdout" 2>> "$stderr"
  local rc=$?
  kill "$sampler" 2>/dev/null
  local base peak
  base=$(head -1 "/tmp/mem_$name")
  peak=$(sort -n "/tmp/mem_$name" | tail -1)
  echo "$name: exit $rc in $((SECONDS - t0)) s (limit $limit), GPU memory used before ${base} MiB, peak ${peak} MiB" >> "$status"
}

# STEPS (default: every step below, in this order) picks and orders the steps of a run.
STEPS=${STEPS:-parity profile inference train_no_ccr train_ccr_one train_ccr_all ref inference_tf32 train_no_ccr_tf32 train_ccr_all_tf32 parity_tf32}
ours=("$out/aullm.jsonl" "$out/aullm.log" "$bin")
for s in $STEPS; do
  case $s in
    parity) step parity 150 "${ours[@]}" "$@" --only parity ;;
    profile) step profile 200 "${ours[@]}" "$@" --only profile ;;
    inference) step inference 60 "${ours[@]}" "$@" --only inference ;;
    train_no_ccr) step train_no_ccr 60 "${ours[@]}" "$@" --only training --train-configs no_ccr ;;
    train_ccr_one) step train_ccr_one 60 "${ours[@]}" "$@" --only training --train-configs ccr_one ;;
    train_ccr_all) step train_ccr_all 90 "${ours[@]}" "$@" --only training --train-configs ccr_all ;;
    ref) step ref 150 "$out/ref.log" "$out/ref.log" python3 "$ref" --out "$out/ref.json" ;;
    # The same with TF32 matrix products for the f32 parts (front-end, LoRA, head).
    inference_tf32) step inference_tf32 60 "${ours[@]}" "$@" --tf32 --only inference ;;
    train_no_ccr_tf32) step train_no_ccr_tf32 60 "${ours[@]}" "$@" --tf32 --only training --train-configs no_ccr ;;
    train_ccr_all_tf32) step train_ccr_all_tf32 90 "${ours[@]}" "$@" --tf32 --only training --train-configs ccr_all ;;
    parity_tf32) step parity_tf32 150 "${ours[@]}" "$@" --tf32 --only parity ;;
    *) echo "unknown step $s" >> "$status" ;;
  esac
done
cat "$status" "$out/aullm.jsonl"
