#!/bin/bash
# Issue 22 on the GPU machine in one run: aullm's CPU/GPU parity and timings of configs/paper.toml
# (examples/gpu_check.rs) beside the PyTorch reference of the paper, each with its peak GPU memory.
#   scripts/gpu_check.sh GPU_CHECK_BINARY REF_SCRIPT OUT_DIR [gpu_check arguments...]
# Prepared here (no GPU needed; README "GPU"), into an ignored folder that the run carries:
#   CUDA_HOME=/work/cuda PATH=/work/cuda/bin:$PATH NVCC=/work/cuda/bin/nvcc CUDA_COMPUTE_CAP=90 \
#     CARGO_TARGET_DIR=target/cuda cargo build --release --features cuda --example gpu_check
#   mkdir -p target/gpu && strip -o target/gpu/gpu_check target/cuda/release/examples/gpu_check  # 31 MB
#   cp ../shared/peers/ref_aullm_torch.py target/gpu/
# then, on the device: scripts/gpu_check.sh target/gpu/gpu_check target/gpu/ref_aullm_torch.py $OUT
set -u
bin=$1 ref=$2 out=$3
shift 3
mkdir -p "$out"
# The binary links the CUDA 13 libraries dynamically; on the GPU image they live in Python's
# site-packages (nvidia/cu13/lib), the driver's libcuda in the system's library folder.
for lib in libcublas.so.13 libcublasLt.so.13 libcudart.so.13 libcurand.so.10 libnvrtc.so.13; do
  hit=$(find /opt /usr /root /home -name "$lib" -not -path '*/stubs/*' 2>/dev/null | head -1)
  if [ -n "$hit" ]; then LD_LIBRARY_PATH="$(dirname "$hit"):${LD_LIBRARY_PATH:-}"; fi
done
export LD_LIBRARY_PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1
ldd "$bin" | grep -E 'cuda|cublas|curand|nvrtc' > "$out/ldd.txt" 2>&1
watch_memory() { # samples used GPU memory (MiB) every 100 ms into $1; prints the sampler's pid
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$1" 2>/dev/null &
  echo $!
}
p=$(watch_memory "$out/memory_aullm.txt")
timeout 420 "$bin" "$@" > "$out/aullm.json" 2> "$out/aullm.log"
echo "aullm gpu_check: exit $?" >> "$out/status.txt"
kill "$p"
p=$(watch_memory "$out/memory_ref.txt")
timeout 150 python3 "$ref" --out "$out/ref.json" > "$out/ref.log" 2>&1
echo "PyTorch reference: exit $?" >> "$out/status.txt"
kill "$p"
for f in aullm ref; do
  echo "$f peak GPU memory: $(sort -n "$out/memory_$f.txt" | tail -1) MiB" >> "$out/status.txt"
done
cat "$out/status.txt" "$out/aullm.json" "$out/ref.json" 2>/dev/null
