"""Parameter and input checks shared by the estimators."""
import numbers

import numpy as np


def check_int(value, name, low=None, high=None):
    """Return `value` as int, or raise naming `name` and the allowed range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def check_float(value, name, low=None, low_inclusive=True, high=None):
    """Return `value` as a finite float, or raise naming `name`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (not low_inclusive and value == low)):
        raise ValueError(f"{name} must be {'>=' if low_inclusive else '>'} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_dtype(dtype):
    """numpy dtype for the `dtype` parameter (float32 or float64)."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return resolved


def check_device(device):
    """Resolve `device` to a backend name: "cpu" or "cuda".

    "auto" picks CUDA when a GPU is usable (logging the choice at INFO level
    on the "aefast" logger) and the CPU otherwise; "cuda" without a usable
    GPU raises ValueError.
    """
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device={device!r} is not supported; choose cpu, cuda or auto")
    if device == "cpu":
        return "cpu"
    from ..engine.cuda_backend import resolve_device  # imports numba.cuda: only on demand

    return resolve_device(device)


def in_unit_interval(X, block_rows=65536):
    """True when every value of X lies in [0, 1], read block by block (memmaps)."""
    for start in range(0, X.shape[0], block_rows):
        block = X[start:start + block_rows]
        if block.min() < 0 or block.max() > 1:
            return False
    return True
