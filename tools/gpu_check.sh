#!/usr/bin/env bash
# One call on a lent GPU machine: build ganops with CUDA (PyTorch side; that machine has no
# TensorFlow), run the CUDA test modules, then time the ops on the GPU.
#
#     bash tools/gpu_check.sh [ops]        # ops: comma-separated, default every op
#
# Made for the device tool's machine (python3 with a CUDA torch, nvcc, cmake, ninja, pybind11,
# pytest, matplotlib; nothing to install) and its limits: a device session has 15 minutes, so
# each stage has a time cap (GPU_CHECK_BUILD_S, _TESTS_S, _BENCH_S; 240 + 140 + 270 s by
# default) and the whole stays under 11 minutes. Everything it writes goes to one archive,
# $OUT/gpu_check.tar.gz (logs, JUnit XML, benchmark results), with the summary in
# $OUT/summary.txt and as the last lines printed, since only a few files come back from $OUT.
#
# Where no GPU is present it still builds (without CUDA) and runs, so the script itself can be
# checked on a CPU machine: the CUDA modules then skip and the benchmarks run --quick on the CPU.
set -uo pipefail
cd "$(dirname "$0")/.."

OPS=${1:-bias_act,spectral_norm,gradient_penalty}
OUT=${OUT:-$PWD/build/gpu-check-out}
WORK=$(mktemp -d)
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
summary=()
note() { summary+=("$1"); echo "== $1"; }

gpu=$(nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv,noheader 2>/dev/null)
if [ -n "$gpu" ]; then
  note "gpu: $gpu"
  cuda=ON
  export CMAKE_CUDA_ARCHITECTURES=${CMAKE_CUDA_ARCHITECTURES:-90}
else
  note "gpu: none (CPU dry run: CUDA off, benchmarks --quick on the CPU)"
  cuda=AUTO
fi
note "python: $($PY -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1)"

# Build in its own directories, with the CUDA kernels for the machine's card only (a build for
# every architecture would take most of the lease), into a copy of the package: an in-place
# build would replace a developer's own libraries under python/ganops with torch-only ones.
STAGE=$PWD/build/gpu-check-package
rm -rf "$STAGE" && mkdir -p "$STAGE"
(cd python && find ganops -name '*.py' -exec cp --parents {} "$STAGE" \;)
start=$(date +%s)
GANOPS_WITH_TF=OFF GANOPS_WITH_TORCH=ON GANOPS_WITH_CUDA=$cuda GANOPS_BUILD_DIR=$PWD/build/gpu-check \
  MAX_JOBS=${MAX_JOBS:-$(nproc)} timeout "${GPU_CHECK_BUILD_S:-240}" \
  $PY setup.py -q build_ext --build-lib "$STAGE" >"$WORK/build.log" 2>&1
rc=$?
note "build: rc=$rc in $(( $(date +%s) - start )) s (log: build.log)"
if [ $rc -ne 0 ]; then
  tail -40 "$WORK/build.log"
else
  export PYTHONPATH=$STAGE${PYTHONPATH:+:$PYTHONPATH}
  note "build_info: $($PY -c 'import ganops; i = ganops.build_info(); print(ganops.__file__, {k: i[k] for k in i if "cuda" in k})' 2>&1)"

  start=$(date +%s)
  timeout "${GPU_CHECK_TESTS_S:-140}" $PY -m pytest -q -p no:cacheprovider -rfEs \
    tests/torch/test_bias_act_cuda.py tests/torch/test_spectral_norm_cuda.py \
    tests/torch/test_gradient_penalty_cuda.py --junitxml="$WORK/cuda-tests.xml" >"$WORK/cuda-tests.log" 2>&1
  rc=$?
  note "CUDA tests: rc=$rc in $(( $(date +%s) - start )) s: $(tail -1 "$WORK/cuda-tests.log")"
  [ $rc -ne 0 ] && grep -E "^(FAILED|ERROR)" "$WORK/cuda-tests.log" | head -20

  start=$(date +%s)
  if [ -n "$gpu" ]; then bench_args=(--device cuda); else bench_args=(--quick); fi
  timeout "${GPU_CHECK_BENCH_S:-270}" $PY benchmarks/run.py "${bench_args[@]}" --frameworks torch \
    --ops "$OPS" --out "$WORK/bench" >"$WORK/bench.log" 2>&1
  rc=$?
  note "benchmarks ($OPS ${bench_args[*]}): rc=$rc in $(( $(date +%s) - start )) s (results: bench/)"
  [ $rc -ne 0 ] && tail -20 "$WORK/bench.log"
  for md in "$WORK"/bench/*.md; do
    [ -f "$md" ] && grep -E "^- .*(met in|device:)" "$md" | sed "s|^|  $(basename "$md" .md): |"
  done
fi

printf '%s\n' "${summary[@]}" >"$WORK/summary.txt"
cp "$WORK/summary.txt" "$OUT/summary.txt"
tar -czf "$OUT/gpu_check.tar.gz" -C "$WORK" .
rm -rf "$WORK"
echo
echo "---- summary (also $OUT/summary.txt; everything in $OUT/gpu_check.tar.gz)"
printf '%s\n' "${summary[@]}"
