"""Numba Hebbian / streaming-PCA kernels against their NumPy float64 references.

Every kernel runs on fresh random inputs over float32 and float64, C and F
order, and odd sizes (1, 7, 513). The kernels are single-threaded (they are
sequential in the samples), so there is no thread-count axis here.
"""

import numpy as np
import pytest

import reference as ref
from aefast._kernels import cpu

DTYPES = [np.float32, np.float64]
ORDERS = ["C", "F"]
# (n_samples, n_features, n_components)
SIZES = [(1, 1, 1), (7, 7, 3), (513, 7, 7), (7, 513, 2), (33, 513, 5)]


def _tol(dtype):
    return dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)


def _inputs(n, d, k, dtype, order, seed, scale=0.2):
    """Random chunk, mean, orthonormal weights and stable per-sample rates."""
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, d)) + rng.uniform(-1, 1, d)).astype(dtype)
    X = np.asarray(X, order=order)
    mean = rng.uniform(-1, 1, d).astype(dtype)
    W = np.linalg.qr(rng.standard_normal((d, k)))[0].T.astype(dtype)
    W = np.ascontiguousarray(W)
    # eta * ||x - mean||^2 of order `scale`: a real learning step, far from divergence
    sq = np.maximum(((X.astype(np.float64) - mean) ** 2).sum(axis=1), 1.0)
    etas = (scale / sq * rng.uniform(0.5, 1.0, n)).astype(dtype)
    return X, mean, W, etas


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("n,d,k", SIZES)
def test_gha_chunk_matches_reference(n, d, k, dtype, order):
    X, mean, W, etas = _inputs(n, d, k, dtype, order, seed=n * 1000 + d + k)
    expected = ref.gha_ref(W, X, mean, etas)
    got = W.copy()
    cpu.gha_chunk(got, X, mean, etas)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("n,d,k", SIZES)
def test_subspace_chunk_matches_reference(n, d, k, dtype, order):
    X, mean, W, etas = _inputs(n, d, k, dtype, order, seed=7 + n * 1000 + d + k)
    expected = ref.subspace_ref(W, X, mean, etas)
    got = W.copy()
    cpu.subspace_chunk(got, X, mean, etas)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("n,d,k", SIZES)
def test_oja_chunk_matches_reference(n, d, k, dtype, order):
    X, mean, W, etas = _inputs(n, d, 1, dtype, order, seed=11 + n * 1000 + d)
    w = W[0].copy()
    expected = ref.oja_ref(w, X, mean, etas)
    cpu.oja_chunk(w, X, mean, etas)
    assert w.dtype == dtype
    np.testing.assert_allclose(w, expected, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("n,d,k", SIZES)
def test_hebb_chunk_matches_plain_hebb(n, d, k, dtype, order):
    X, mean, W, etas = _inputs(n, d, 1, dtype, order, seed=13 + n * 1000 + d, scale=0.01)
    w = W[0].copy()
    w_ref, norms_ref = ref.hebb_ref(w, X, mean, etas)
    log_norms = np.full(n, np.nan)
    log_norm = cpu.hebb_chunk(w, X, mean, etas, 0.0, log_norms)
    tol = _tol(dtype)
    # the kernel keeps the direction at unit norm and the log of the true norm apart
    np.testing.assert_allclose(np.linalg.norm(w.astype(np.float64)), 1.0, **tol)
    np.testing.assert_allclose(w, w_ref / np.linalg.norm(w_ref), **tol)
    np.testing.assert_allclose(np.exp(log_norms), norms_ref, **tol)
    assert log_norm == log_norms[-1]


def test_hebb_chunk_continues_the_log_norm():
    X, mean, W, etas = _inputs(20, 7, 1, np.float64, "C", seed=3, scale=0.01)
    w1, w2 = W[0].copy(), W[0].copy()
    out = np.empty(20)
    whole = cpu.hebb_chunk(w1, X, mean, etas, 0.5, out)
    out2 = np.empty(20)
    mid = cpu.hebb_chunk(w2, X[:9], mean, etas[:9], 0.5, out2[:9])
    end = cpu.hebb_chunk(w2, X[9:], mean, etas[9:], mid, out2[9:])
    np.testing.assert_allclose(out, out2, rtol=1e-12)
    np.testing.assert_allclose(whole, end, rtol=1e-12)
    np.testing.assert_allclose(w1, w2, rtol=1e-12)


def test_gha_single_neuron_is_oja():
    X, mean, W, etas = _inputs(50, 9, 1, np.float64, "C", seed=5)
    Wg = W.copy()
    w = W[0].copy()
    cpu.gha_chunk(Wg, X, mean, etas)
    cpu.oja_chunk(w, X, mean, etas)
    np.testing.assert_allclose(Wg[0], w, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("n,d", [(1, 1), (7, 7), (513, 7), (7, 513)])
@pytest.mark.parametrize("weighted", [False, True])
def test_chunk_moments_matches_reference(n, d, dtype, order, weighted):
    rng = np.random.default_rng(n + d)
    X = np.asarray((rng.standard_normal((n, d)) * 3 + 10).astype(dtype), order=order)
    shift = rng.uniform(9, 11, d)
    weights = rng.uniform(0.1, 1.0, n) if weighted else np.ones(n)
    colsum = np.full(d, np.nan)
    sq, max_sq = cpu.chunk_moments(X, shift, weights, colsum)
    colsum_ref, sq_ref, max_ref = ref.chunk_moments_ref(X, shift, weights)
    np.testing.assert_allclose(colsum, colsum_ref, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(sq, sq_ref, rtol=1e-10)
    np.testing.assert_allclose(max_sq, max_ref, rtol=1e-10)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_chunk_moments_propagates_non_finite(bad):
    X = np.ones((5, 4), dtype=np.float32)
    X[3, 2] = bad
    sq, max_sq = cpu.chunk_moments(X, np.zeros(4), np.ones(5), np.empty(4))
    assert not np.isfinite(sq)


def test_kernels_accept_empty_chunks():
    X = np.empty((0, 5))
    W = np.eye(2, 5)
    for kern in (cpu.gha_chunk, cpu.subspace_chunk):
        W2 = W.copy()
        kern(W2, X, np.zeros(5), np.empty(0))
        np.testing.assert_array_equal(W2, W)
    w = W[0].copy()
    cpu.oja_chunk(w, X, np.zeros(5), np.empty(0))
    np.testing.assert_array_equal(w, W[0])


def test_block_reference_is_a_subspace_power_step():
    # sanity of the block reference used by the estimator tests: with a huge
    # rate the step is one subspace iteration on the chunk covariance
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 6)) * np.array([5, 4, 1, 1, 1, 1.0])
    W = np.linalg.qr(rng.standard_normal((6, 2)))[0].T
    Wn = ref.block_oja_ref(W, X, np.zeros(6), np.full(200, 1e6))
    C = X.T @ X
    Q = np.linalg.qr(C @ W.T)[0]
    np.testing.assert_allclose(np.abs(Wn @ Q), np.eye(2), atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("k,d", [(1, 1), (3, 7), (7, 7), (5, 513)])
def test_orthonormalize_rows_matches_qr(k, d, dtype, order):
    rng = np.random.default_rng(k * d)
    # badly scaled rows (condition number ~1e4) as block-Oja produces
    W = np.asarray((rng.standard_normal((k, d)) * np.logspace(0, 4, k)[:, None]).astype(dtype), order=order)
    out = np.full((k, d), np.nan)
    cpu.orthonormalize_rows(W, out)
    np.testing.assert_allclose(out @ out.T, np.eye(k), atol=1e-12)
    np.testing.assert_allclose(out, ref.orthonormalize_rows_ref(W), atol=1e-9)


def test_orthonormalize_rows_flags_dependent_rows():
    W = np.array([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    out = np.empty((2, 3))
    cpu.orthonormalize_rows(W, out)
    np.testing.assert_allclose(out[0], [1.0, 0.0, 0.0])
    assert np.isnan(out[1]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("n,d,k", SIZES)
def test_block_oja_scale_and_basis_match_reference(n, d, k, dtype, order):
    # the two kernels of the CPU block step, chained as OjaPCA does, against the
    # whole step in float64: orth(W + X_c^T diag(eta) X_c W^T) with X_c = X - mean
    X, mean, W, etas = _inputs(n, d, k, dtype, order, seed=n + d + k)
    mean64 = mean.astype(np.float64)
    Z = X @ W.T
    E = np.full_like(Z, np.nan)
    esum = np.full(k, np.nan)
    cpu.block_oja_scale(Z, W.astype(np.float64) @ mean64, etas, E, esum)
    Zc = (X.astype(np.float64) - mean64) @ W.T.astype(np.float64)
    np.testing.assert_allclose(E, Zc * etas.astype(np.float64)[:, None], **_tol(dtype))
    np.testing.assert_allclose(esum, E.astype(np.float64).sum(axis=0), rtol=1e-12, atol=1e-12)
    out = np.full((k, d), np.nan)
    cpu.block_oja_basis(W, X.T @ E, mean64, esum, out)
    np.testing.assert_allclose(out, ref.block_oja_ref(W, X, mean, etas), **_tol(dtype))
    np.testing.assert_allclose(out @ out.T, np.eye(k), atol=1e-12)


def test_block_oja_basis_flags_non_finite_updates():
    W = np.eye(2, 4)
    G = np.zeros((4, 2))
    G[1, 0] = np.nan
    out = np.empty((2, 4))
    cpu.block_oja_basis(W, G, np.zeros(4), np.zeros(2), out)
    assert np.isnan(out).all()  # row 0 is NaN, row 1 is projected on it


@pytest.mark.parametrize("k,angle", [(1, 0.3), (3, 1e-6), (7, 0.5), (16, 1.2)])
def test_polar_factor_matches_svd(k, angle):
    # T = B_old B_new^T for two orthonormal bases a rotation apart: singular
    # values are the cosines of the principal angles, as in OjaPCA
    rng = np.random.default_rng(k)
    d = 4 * k
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    B_old = Q[:k]
    B_new = np.cos(angle) * B_old + np.sin(angle) * np.diag(rng.uniform(0.2, 1, k)) @ Q[k : 2 * k]
    B_new = np.linalg.qr(B_new.T)[0].T
    T = B_old @ B_new.T
    out = np.full((k, k), np.nan)
    assert cpu.polar_factor(T, out)
    np.testing.assert_allclose(out, ref.polar_factor_ref(T), atol=1e-11)
    np.testing.assert_allclose(out.T @ out, np.eye(k), atol=1e-12)


def test_polar_factor_reports_a_singular_matrix():
    T = np.diag([1.0, 0.5, 0.0])  # rank-deficient: no unique polar factor
    assert not cpu.polar_factor(T, np.empty((3, 3)))
