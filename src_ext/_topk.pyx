# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Row-wise top-k of a 2-D float32 / float64 array, parallel over rows.

Design
------
The selection itself is the C function ``ae_topk_row_{f,d}`` of
``src_ext/_topk.h`` (a sorted buffer or heap behind a vectorised block
pre-filter; see the comment there), the one CPU implementation, which the
training step of ``_network.pyx`` also calls for k-sparse codes. This module
is only the thin wrapper behind ``aefast.ops.topk``:

* ``topk`` checks dtype, layout, ``k`` and ``n_threads`` before entering the
  ``nogil`` region, so nothing unchecked reaches C.
* Rows are independent, so they are spread over OpenMP threads with Cython's
  ``prange`` (this extension alone is compiled and linked with ``-fopenmp``).
  The thread count is an argument, never module state. The schedule is
  dynamic in chunks of about an eighth of a thread's share: rows cost about
  the same, but the machines this runs on are often shared, and a static split
  would make every thread wait for the one that got preempted.
* Finiteness is checked row by row inside the same parallel loop, by
  ``ae_topk_row_checked_{f,d}`` (on the AVX-512 float32 path within the
  selection's first pass over the row): a separate ``np.isfinite(X).all()``
  would read the whole array once more and allocate a boolean array of the
  same shape. Rows are independent, so each
  row's result is deterministic whatever the thread count.
"""
import numpy as np

from cython.parallel cimport prange
from libc.stdint cimport int64_t

cdef extern from "_topk.h" nogil:
    int ae_topk_row_checked_f(const float* x, Py_ssize_t n, Py_ssize_t k, float* values,
                              int64_t* indices)
    int ae_topk_row_checked_d(const double* x, Py_ssize_t n, Py_ssize_t k, double* values,
                              int64_t* indices)
    int ae_all_finite_f(const float* a, Py_ssize_t n)
    int ae_all_finite_d(const double* a, Py_ssize_t n)

ctypedef fused floating:
    float
    double


cdef Py_ssize_t _topk_rows(const floating[:, ::1] X, Py_ssize_t k, floating[:, ::1] values,
                           int64_t[:, ::1] indices, int n_threads) noexcept nogil:
    """Top-k of every row; returns the number of rows with NaN or inf (left unselected)."""
    cdef Py_ssize_t i, n_rows = X.shape[0], n = X.shape[1]
    cdef Py_ssize_t n_bad = 0
    cdef Py_ssize_t chunk = n_rows // (8 * n_threads)
    if chunk < 1:
        chunk = 1
    for i in prange(n_rows, num_threads=n_threads, schedule="dynamic", chunksize=chunk):
        if floating is float:
            if ae_topk_row_checked_f(&X[i, 0], n, k, &values[i, 0], &indices[i, 0]):
                n_bad += 1
        else:
            if ae_topk_row_checked_d(&X[i, 0], n, k, &values[i, 0], &indices[i, 0]):
                n_bad += 1
    return n_bad


def topk(X, Py_ssize_t k, int n_threads):
    """Top-k of each row of a 2-D C-contiguous float32 or float64 array.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_cols), float32 or float64, C-contiguous
    k : int, 1 <= k <= n_cols
    n_threads : int >= 1

    Returns
    -------
    values : ndarray of shape (n_rows, k), X's dtype, each row descending
    indices : ndarray of shape (n_rows, k), int64; among equal values the lower
        column comes first

    Raises ``ValueError`` for NaN or inf in ``X``; no other conversion or
    validation is done (``aefast.ops.topk`` is the public entry point).
    """
    if not isinstance(X, np.ndarray) or X.ndim != 2 or not X.flags.c_contiguous:
        raise TypeError("X must be a 2-D C-contiguous numpy array")
    if X.dtype != np.float32 and X.dtype != np.float64:
        raise TypeError(f"X must be float32 or float64, got {X.dtype}")
    cdef Py_ssize_t n_rows = X.shape[0], n_cols = X.shape[1]
    if k < 1 or k > n_cols:
        raise ValueError(f"k must be in [1, {n_cols}], got {k}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    if n_threads > n_rows:
        n_threads = max(<int>n_rows, 1)
    values = np.empty((n_rows, k), dtype=X.dtype)
    indices = np.empty((n_rows, k), dtype=np.int64)
    if n_rows == 0:
        return values, indices
    cdef Py_ssize_t n_bad
    cdef const float[:, ::1] xf
    cdef const double[:, ::1] xd
    cdef float[:, ::1] vf
    cdef double[:, ::1] vd
    cdef int64_t[:, ::1] ix = indices
    if X.dtype == np.float32:
        xf = X
        vf = values
        with nogil:
            n_bad = _topk_rows(xf, k, vf, ix, n_threads)
    else:
        xd = X
        vd = values
        with nogil:
            n_bad = _topk_rows(xd, k, vd, ix, n_threads)
    if n_bad:
        raise ValueError(f"X must be finite: {n_bad} row(s) contain NaN or inf")
    return values, indices
