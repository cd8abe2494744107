"""aefast.ops.topk (src_ext/_topk.h via src_ext/_topk.pyx) against a NumPy float64 reference."""

import numpy as np
import pytest

from aefast.ops import topk

# ============================================================================
# Reference: plain NumPy float64, the textbook definition
# ============================================================================


def topk_ref(X, k):
    """k largest of each row, descending; among equal values the lower column first."""
    X = np.asarray(X, dtype=np.float64)
    cols = np.arange(X.shape[1])
    values = np.empty((X.shape[0], k))
    indices = np.empty((X.shape[0], k), dtype=np.int64)
    for i, row in enumerate(X):
        order = np.lexsort((cols, -row))  # primary: value descending; then column ascending
        indices[i] = order[:k]
        values[i] = row[order[:k]]
    return values, indices


# ============================================================================


def check(X, k, n_jobs=1):
    values, indices = topk(X, k, n_jobs=n_jobs)
    X = np.asarray(X)
    expected_dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    assert values.dtype == expected_dtype
    assert indices.dtype == np.int64
    assert values.shape == indices.shape == (X.shape[0], k)
    ref_values, ref_indices = topk_ref(X, k)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_array_equal(values.astype(np.float64), ref_values)
    return values, indices


SIZES = [1, 7, 513]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("n_rows", SIZES)
@pytest.mark.parametrize("n_cols", SIZES)
def test_random_rows(dtype, order, n_jobs, n_rows, n_cols):
    rng = np.random.default_rng(n_rows * 1000 + n_cols)
    X = np.asarray(rng.standard_normal((n_rows, n_cols)), dtype=dtype, order=order)
    for k in sorted({1, min(2, n_cols), min(5, n_cols), max(n_cols // 3, 1), n_cols}):
        check(X, k, n_jobs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_cols", [1, 7, 64, 65, 513, 5000])
def test_ties_lower_index_first(dtype, n_cols):
    rng = np.random.default_rng(n_cols)
    # few distinct values: ties everywhere, including at the cut-off
    X = rng.integers(0, 4, size=(37, n_cols)).astype(dtype)
    for k in sorted({1, min(3, n_cols), max(n_cols // 2, 1), n_cols}):
        check(X, k, n_jobs=2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_and_sorted_rows(dtype):
    n = 300
    X = np.stack([np.zeros(n), np.arange(n), -np.arange(n), np.arange(n) % 7,
                  np.full(n, -1e30)]).astype(dtype)
    for k in [1, 25, 128, 129, 299, 300]:
        values, indices = check(X, k)
    np.testing.assert_array_equal(topk(X[:1], 3)[1], [[0, 1, 2]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 16, 32, 100, 128, 129, 200, 1000])
def test_wide_rows_all_paths(dtype, k):
    """Both selection paths (sorted buffer for k <= 128, heap above), wide rows."""
    rng = np.random.default_rng(k)
    X = rng.standard_normal((9, 4099)).astype(dtype)
    X[3] = np.sort(X[3])  # increasing: every element is an insertion
    X[4] = np.sort(X[4])[::-1]
    X[5, ::2] = X[5, 0]  # heavy ties with a wide row
    X[6, :700] = np.sort(X[6, :700])  # a few full candidate buffers, then random
    check(X, k, n_jobs=2)


def test_k_equals_width_is_full_sort():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((5, 1000))
    values, indices = topk(X, 1000)
    np.testing.assert_array_equal(values, -np.sort(-X, axis=1))
    assert all(sorted(row) == list(range(1000)) for row in indices.tolist())


def test_integer_and_bool_input_become_float64():
    X = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]], dtype=np.int32)
    values, indices = check(X, 2)
    np.testing.assert_array_equal(values, [[5.0, 4.0], [9.0, 6.0]])
    check(np.array([[True, False, True]]), 2)
    check([[1.5, 2.5], [0.0, -1.0]], 1)  # nested lists
    assert topk(np.ones((2, 3), dtype=np.float16), 1)[0].dtype == np.float64


def test_strided_input():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 60)).astype(np.float32)
    check(X[::3, 1::2], 4)
    check(X.T, 7)


def test_same_result_for_any_thread_count():
    rng = np.random.default_rng(1)
    X = rng.integers(0, 50, size=(257, 300)).astype(np.float32)
    v1, i1 = topk(X, 20, n_jobs=1)
    for n_jobs in [2, 3, -1, None]:
        v, i = topk(X, 20, n_jobs=n_jobs)
        np.testing.assert_array_equal(v, v1)
        np.testing.assert_array_equal(i, i1)


# --- bad input ---------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -1, 6])
def test_k_out_of_range(k):
    with pytest.raises(ValueError, match="k must be in"):
        topk(np.ones((2, 5)), k)


@pytest.mark.parametrize("k", [2.0, "2", None, True, np.float64(2)])
def test_k_not_an_integer(k):
    with pytest.raises(TypeError, match="k must be an integer"):
        topk(np.ones((2, 5)), k)


def test_numpy_integer_k_accepted():
    check(np.arange(10.0).reshape(2, 5), np.int64(2))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite(bad, dtype):
    X = np.ones((30, 50), dtype=dtype)
    X[17, 33] = bad
    for n_jobs in [1, 2]:
        with pytest.raises(ValueError, match="NaN or inf"):
            topk(X, 3, n_jobs=n_jobs)


@pytest.mark.parametrize("X", [np.ones(5), np.ones((2, 3, 4)), np.float64(1.0)])
def test_wrong_ndim(X):
    with pytest.raises(ValueError, match="X must be 2-D"):
        topk(X, 1)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)])
def test_empty(shape):
    with pytest.raises(ValueError, match="X must not be empty"):
        topk(np.ones(shape), 1)


@pytest.mark.parametrize("X", [np.array([["a", "b"], ["c", "d"]]),
                               [["a", "b"], ["c", "d"]],
                               np.ones((2, 2), dtype=complex),
                               np.array([[1, "x"]], dtype=object),
                               [[1.0, 2.0], [3.0]]])
def test_non_numeric(X):
    with pytest.raises(TypeError, match="X must be"):
        topk(X, 1)


@pytest.mark.parametrize("n_jobs", [0, 1.5, "2"])
def test_bad_n_jobs(n_jobs):
    with pytest.raises((TypeError, ValueError), match="n_jobs"):
        topk(np.ones((2, 2)), 1, n_jobs=n_jobs)


def test_compiled_wrapper_checks_its_arguments():
    from aefast._ext import _topk

    with pytest.raises(TypeError):
        _topk.topk(np.ones((3, 4), order="F"), 1, 1)
    with pytest.raises(TypeError):
        _topk.topk(np.ones((3, 4), dtype=np.int64), 1, 1)
    with pytest.raises(ValueError):
        _topk.topk(np.ones((3, 4)), 5, 1)
    with pytest.raises(ValueError):
        _topk.topk(np.ones((3, 4)), 1, 0)


def test_import_is_cheap():
    import subprocess
    import sys

    code = "import sys, aefast.ops; print('aefast._ext._topk' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
