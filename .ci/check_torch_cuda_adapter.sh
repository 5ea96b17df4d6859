#!/usr/bin/env bash
# Syntax-check the PyTorch CUDA adapter (csrc/torch/*_cuda.cpp) against the installed torch's
# headers and the CUDA runtime headers. A CPU-only torch wheel ships c10/cuda headers but not
# the generated cuda_cmake_macros.h, so a one-line stand-in is supplied. Nothing is linked.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
# The toolkit's include dir: CUDA_HOME, else where nvcc says it lives (nvcc may be a wrapper).
CUDA_INC=${CUDA_INC:-${CUDA_HOME:-$(nvcc --dryrun -x cu /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -n1)}/include}
[ -f "$CUDA_INC/cuda_runtime.h" ] || CUDA_INC=/usr/local/cuda/include
TORCH_INC=$("$PY" -c 'import torch.utils.cpp_extension as c; print(" ".join("-I" + p for p in c.include_paths()))')
shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
mkdir -p "$shim/c10/cuda/impl"
echo '#define C10_CUDA_BUILD_SHARED_LIBS' > "$shim/c10/cuda/impl/cuda_cmake_macros.h"
for src in csrc/torch/*_cuda.cpp; do
  g++ -std=c++20 -fsyntax-only -Wall -D_GLIBCXX_USE_CXX11_ABI=1 -DGANOPS_WITH_CUDA=1 \
    -I"$shim" $TORCH_INC -I"$CUDA_INC" -Icsrc/core/include "$src"
  echo "check_torch_cuda_adapter: ok $src"
done
