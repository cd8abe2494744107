#!/usr/bin/env bash
# One short GPU check of aefast's CUDA backend (issue 7), for a machine with an NVIDIA GPU.
#
#   bash benchmarks/gpu/check_device.sh            # from the repository root
#
# 1. installs what is missing (the CPU extension if not built, numba-cuda, CuPy, pytest)
#    if pip can (PyPI only, or no network at all: what is installed is used, what is
#    missing is reported);
# 2. runs tests/test_cuda_kernels.py and tests/test_cuda_models.py for real (simulator off),
#    plus the real-target compile check when NVVM is there;
# 3. runs benchmarks/compare/gpu_vs_torch.py with small epoch counts.
# Everything is printed; each stage has its own time limit so the whole stays within ~5 min.
# Nothing here stops at the first failure: every stage reports and the next one runs.
set -u
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}   # PYTHON=/path/to/venv/bin/python to pick an interpreter
unset NUMBA_ENABLE_CUDASIM
export PYTHONUNBUFFERED=1
stage() { echo; echo "=== $* ($(date +%H:%M:%S))"; }

stage "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "nvidia-smi not found"
$PY --version

stage "install (what is missing only; failures are reported, not fatal)"
# The compiled CPU extension: use the checkout's build if it imports, else build it in place.
if ! $PY -c "import aefast._ext._network" 2>/dev/null; then
  timeout 120 $PY -m pip install -q --disable-pip-version-check --no-build-isolation -e . 2>&1 | tail -3
  $PY -c "import aefast._ext._network" 2>/dev/null \
    || timeout 120 $PY setup.py build_ext --inplace 2>&1 | tail -3
fi
# The gpu and test extras, one by one (PyPI only, or no network at all: skip what fails).
for pkg in numba-cuda cupy-cuda12x pytest; do
  mod=$(echo "$pkg" | sed 's/-cuda12x//; s/-/_/')
  $PY -c "import $mod" 2>/dev/null \
    || timeout 40 $PY -m pip install -q --disable-pip-version-check "$pkg" 2>&1 | tail -2
done
$PY - <<'PYEOF'
import importlib
for name in ("numpy", "numba", "numba_cuda", "cupy", "torch", "pytest", "aefast"):
    try:
        mod = importlib.import_module(name)
        print(f"  {name:11s} {getattr(mod, '__version__', '?')}")
    except Exception as exc:
        print(f"  {name:11s} MISSING ({type(exc).__name__}: {str(exc)[:100]})")
try:
    from numba import cuda
    print("  numba.cuda available:", cuda.is_available(), "| implementation:",
          getattr(cuda, "implementation", "?"))
    if cuda.is_available():
        dev = cuda.get_current_device()
        print("  device:", dev.name, "cc", dev.compute_capability)
except Exception as exc:
    print("  numba.cuda failed:", exc)
try:
    import cupy
    print("  cupy devices:", cupy.cuda.runtime.getDeviceCount())
except Exception as exc:
    print("  cupy unusable (the backend falls back to the tiled GEMM):", str(exc)[:200])
try:
    import torch
    print("  torch cuda:", torch.cuda.is_available())
except Exception:
    pass
PYEOF

stage "CUDA tests for real (120 s limit)"
AEFAST_CHECK_PTX=1 timeout 120 $PY -m pytest -q -p no:cacheprovider -x --durations=5 \
  tests/test_cuda_kernels.py tests/test_cuda_models.py 2>&1 | tail -40
echo "pytest exit code: ${PIPESTATUS[0]}"

stage "benchmark gpu_vs_torch (small epochs, 90 s limit)"
timeout 90 $PY benchmarks/compare/gpu_vs_torch.py --epochs 2 --repeat 2 --rows 50000 2>&1 | tail -60
echo "benchmark exit code: ${PIPESTATUS[0]}"

stage "done"
