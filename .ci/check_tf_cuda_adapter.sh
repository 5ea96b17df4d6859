#!/usr/bin/env bash
# Syntax-check the TensorFlow adapter's GPU paths (csrc/tf/*.cpp with GOOGLE_CUDA=1) against the
# installed TF's headers and the CUDA runtime headers. The tensorflow-cpu wheel ships the headers
# these paths use (Eigen's GpuDevice, OpKernel), so no CUDA build of TF is needed. Nothing is
# linked.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CUDA_INC=${CUDA_INC:-${CUDA_HOME:-$(nvcc --dryrun -x cu /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -n1)}/include}
[ -f "$CUDA_INC/cuda_runtime.h" ] || CUDA_INC=/usr/local/cuda/include
read -r -a TF_FLAGS <<< "$("$PY" -c 'import tensorflow as tf; print(" ".join(tf.sysconfig.get_compile_flags()))' 2>/dev/null)"
for src in csrc/tf/*.cpp; do
  g++ -fsyntax-only -w "${TF_FLAGS[@]}" -DGOOGLE_CUDA=1 -DGANOPS_WITH_CUDA=1 \
    -I"$CUDA_INC" -Icsrc/core/include "$src"
  echo "check_tf_cuda_adapter: ok $src"
done
