#!/usr/bin/env bash
# CI sanitizer step: build the C++ extension with AddressSanitizer and UndefinedBehaviorSanitizer
# (CUDA off) into its own folder, and run the kernel, layer and checkpoint tests against that
# build. Any report fails the run: ASan aborts on its first error, UBSan halts on its first.
#
# Needs the Python of the test environment (numpy, pytest, hypothesis; torch for the parity
# tests), cmake, pybind11 and gcc's sanitizer runtimes. Usage: .ci/sanitize.sh [pytest args].
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${FUSETRAIN_SANITIZE_BUILD:-$ROOT/build-sanitize}
PY=${PYTHON:-python}
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer"
GEN=Unix\ Makefiles
command -v ninja >/dev/null && GEN=Ninja

cmake -S "$ROOT" -B "$BUILD" -G "$GEN" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFUSETRAIN_CUDA=OFF \
  -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_MODULE_LINKER_FLAGS="$SAN" -DCMAKE_SHARED_LINKER_FLAGS="$SAN" \
  -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$BUILD" --parallel "$(nproc)" >"$BUILD/build.log" 2>&1 || { tail -50 "$BUILD/build.log"; exit 1; }

# A scratch copy of the package holding the sanitized _core, first on the path: neither the
# source tree's nor an installed build is touched.
PKG="$BUILD/pkg"
rm -rf "$PKG"
mkdir -p "$PKG"
cp -r "$ROOT/python/fusetrain" "$PKG/"
find "$PKG/fusetrain" \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
cp "$BUILD"/_core*.so "$PKG/fusetrain/"

# The uninstrumented python loads the sanitized module, so the ASan runtime is preloaded; so is
# libstdc++, whose exception handling ASan must see from the start (else a C++ exception thrown
# for a bad argument aborts instead of becoming a Python error).
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:check_initialization_order=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export PYTHONMALLOC=malloc  # Python's objects in malloc'd blocks, with ASan's redzones
export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}"
export FUSETRAIN_HYPOTHESIS_EXAMPLES=${FUSETRAIN_HYPOTHESIS_EXAMPLES:-25}

"$PY" - "$PKG" <<'EOF'
import sys
import fusetrain
from fusetrain import _core
assert fusetrain.__file__.startswith(sys.argv[1]), f"imported {fusetrain.__file__}, not the sanitized copy"
assert b"__asan_init" in open(_core.__file__, "rb").read(), f"{_core.__file__} is not built with ASan"
print(f"sanitized fusetrain from {sys.argv[1]} ({_core.conv2d_direct_isa()} kernels)")
EOF

# The kernels (ops against their twins, property tests, memory-safety checks, compiled-path
# gradients), the layers and containers, and checkpoints. --capture=sys leaves file descriptor 2
# alone, so a report reaches the log even though the process aborts before pytest prints what it
# captured; -p no:cacheprovider keeps the tree clean.
"$PY" -m pytest -q --capture=sys -p no:cacheprovider "$@" \
  tests/test_memory_safety.py tests/test_properties.py tests/test_gemm.py tests/test_conv.py tests/test_pooling.py \
  tests/test_batchnorm.py tests/test_layernorm.py tests/test_dropout.py tests/test_loss.py tests/test_norm.py \
  tests/test_optim.py tests/test_gradcheck_compiled.py tests/test_sequential.py tests/test_nn_module.py \
  tests/test_nn_torch.py tests/test_inference.py tests/test_models_cnn.py tests/test_optimizers.py \
  tests/test_checkpoint.py tests/test_checkpoint_properties.py
