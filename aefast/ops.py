"""Public entry points to compiled kernels that users want directly.

Each function validates its input once, converts it to what the kernel needs
(C order, float32 or float64) and calls the compiled code. Importing this
module only imports NumPy; the compiled extension is loaded on first call.
"""

import numbers
import os

import numpy as np

__all__ = ["topk"]


def _resolve_n_jobs(n_jobs, n_rows):
    """Number of threads for ``n_jobs`` (None or -1: all CPUs this process may use)."""
    if isinstance(n_jobs, (bool, np.bool_)) or not (
        n_jobs is None or isinstance(n_jobs, numbers.Integral)
    ):
        raise TypeError(f"n_jobs must be None or an integer, got {n_jobs!r}")
    try:
        n_cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n_cpus = os.cpu_count() or 1
    if n_jobs is None:
        n_threads = n_cpus
    else:
        n_jobs = int(n_jobs)
        if n_jobs == 0:
            raise ValueError("n_jobs must be a non-zero integer or None, got 0")
        # scikit-learn's convention: -1 all CPUs, -2 all but one, ...
        n_threads = n_jobs if n_jobs > 0 else max(n_cpus + 1 + n_jobs, 1)
    return max(1, min(n_threads, n_rows))


def topk(X, k, n_jobs=None):
    """The ``k`` largest values of each row and their column indices.

    Parameters
    ----------
    X : array-like of shape (n_rows, n_cols)
        Finite numbers. float32 input is processed and returned as float32,
        float64 as float64; any other numeric dtype (integers, bool, float16)
        is converted to float64. Any memory layout is accepted (F-ordered or
        strided input is copied to C order first).
    k : int
        How many values to keep per row, ``1 <= k <= n_cols``.
    n_jobs : int or None, default=None
        Threads over rows. None or -1: every CPU this process may use; a
        negative value ``-m`` uses all but ``m - 1`` of them.

    Returns
    -------
    values : ndarray of shape (n_rows, k)
        The ``k`` largest entries of each row in descending order, in the
        working dtype (float32 or float64).
    indices : ndarray of shape (n_rows, k), int64
        Their columns: ``values[i, j] == X[i, indices[i, j]]``. Ties are broken
        deterministically: among equal values the lower column comes first
        (and is the one kept at the cut-off), whatever ``n_jobs``.

    Raises
    ------
    TypeError
        If ``X`` is not numeric, or ``k`` / ``n_jobs`` is not an integer.
    ValueError
        If ``X`` is not 2-D, is empty, contains NaN or inf, or ``k`` is outside
        ``[1, n_cols]``.

    Notes
    -----
    Runs in compiled code without the GIL, one row per task: the selection
    reads each row once through a vectorised pre-filter against the current
    k-th largest value, so it costs little more than one pass over ``X`` when
    ``k`` is much smaller than ``n_cols`` (the k-sparse autoencoder case).
    The same kernel selects the active units of ``aefast.TopK`` in training.

    Examples
    --------
    >>> import numpy as np
    >>> from aefast.ops import topk
    >>> X = np.array([[0.1, 0.9, 0.3, 0.9],
    ...               [5.0, -1.0, 2.0, 4.0]], dtype=np.float32)
    >>> values, indices = topk(X, 2)
    >>> values
    array([[0.9, 0.9],
           [5. , 4. ]], dtype=float32)
    >>> indices
    array([[1, 3],
           [0, 3]])
    """
    from aefast._ext import _topk

    X = _check_matrix(X)
    n_rows, n_cols = X.shape
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be an integer, got {k!r}")
    k = int(k)
    if not 1 <= k <= n_cols:
        raise ValueError(f"k must be in [1, n_cols={n_cols}], got {k}")
    n_threads = _resolve_n_jobs(n_jobs, n_rows)
    try:
        return _topk.topk(X, k, n_threads)
    except ValueError as exc:  # NaN / inf, found in the same pass as the selection
        raise ValueError(f"X must not contain NaN or inf ({exc})") from None


def _check_matrix(X):
    """``X`` as a C-contiguous float32/float64 2-D array, or a clear error."""
    if isinstance(X, np.ndarray):
        dtype = X.dtype
    else:
        try:
            X = np.asarray(X)
        except (TypeError, ValueError) as exc:  # ragged lists, odd objects
            raise TypeError(f"X must be a 2-D array of numbers: {exc}") from None
        dtype = X.dtype
    if dtype == np.float32 or dtype == np.float64:
        target = dtype
    elif dtype.kind in "biuf":
        target = np.float64
    elif dtype.kind == "O":
        target = np.float64
    else:
        raise TypeError(f"X must be numeric (real), got dtype {dtype}")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_rows, n_cols), got {X.ndim}-D with shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must not be empty, got shape {X.shape}")
    try:
        return np.ascontiguousarray(X, dtype=target)
    except (TypeError, ValueError) as exc:  # object arrays of non-numbers
        raise TypeError(f"X must be numeric: {exc}") from None
