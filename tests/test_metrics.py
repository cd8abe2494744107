"""aefast.metrics: principal angles, subspace distance, captured variance, sparsity, NMSE."""

import numpy as np
import pytest
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA

from aefast.metrics import (
    dead_latent_fraction,
    explained_variance_captured,
    l0_per_sample,
    normalized_mse,
    principal_angles,
    subspace_distance,
)


@pytest.mark.parametrize("d,ka,kb", [(1, 1, 1), (7, 3, 3), (7, 2, 5), (513, 7, 4)])
def test_principal_angles_match_scipy(d, ka, kb):
    rng = np.random.default_rng(d + ka + kb)
    A = rng.standard_normal((ka, d))
    B = rng.standard_normal((kb, d))
    got = principal_angles(A, B)
    expected = np.sort(subspace_angles(A.T, B.T))  # scipy: columns, descending
    assert got.shape == (min(ka, kb),)
    assert np.all(np.diff(got) >= 0)
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_principal_angles_known_values_and_basis_invariance():
    e = np.eye(3)
    np.testing.assert_allclose(principal_angles(e[:1], [[1.0, 1.0, 0.0]]), [np.pi / 4])
    np.testing.assert_allclose(principal_angles(e[:2], e[[1, 2]]), [0.0, np.pi / 2], atol=1e-15)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3, 10))
    M = rng.standard_normal((3, 3))  # any other basis of the same subspace
    np.testing.assert_allclose(principal_angles(A, M @ A), 0.0, atol=1e-7)
    # tiny angles resolved accurately (sine branch)
    B = A + 1e-9 * rng.standard_normal(A.shape)
    assert 0 < principal_angles(A, B)[-1] < 1e-8
    assert principal_angles(A.astype(np.float32), A).dtype == np.float64


def test_subspace_distance():
    e = np.eye(4)
    assert subspace_distance(e[:2], e[[1, 0]]) == pytest.approx(0.0, abs=1e-15)
    assert subspace_distance(e[:2], e[[0, 2]]) == pytest.approx(1.0)
    theta = 0.3
    B = np.array([[np.cos(theta), np.sin(theta), 0, 0]])
    assert subspace_distance(e[:1], B) == pytest.approx(np.sin(theta))
    with pytest.raises(ValueError, match="same dimension"):
        subspace_distance(e[:1], e[:2])


def test_explained_variance_captured_matches_pca():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 8)) * np.arange(8, 0, -1) + 3
    pca = PCA(3).fit(X)
    frac = explained_variance_captured(X, pca.components_)
    assert frac == pytest.approx(pca.explained_variance_ratio_.sum(), rel=1e-10)
    # basis-invariant, and any other subspace captures less
    M = rng.standard_normal((3, 3))
    assert explained_variance_captured(X, M @ pca.components_) == pytest.approx(frac, rel=1e-10)
    assert explained_variance_captured(X, rng.standard_normal((3, 8))) < frac
    assert explained_variance_captured(X, np.eye(8)) == pytest.approx(1.0)


@pytest.mark.parametrize("A,B,match", [
    (np.ones((2, 3, 1)), np.eye(3)[:1], "2-D"),
    (np.eye(3)[:1], np.eye(4)[:1], "same number of columns"),
    (np.ones((4, 3)), np.eye(3)[:1], "at most as many rows"),
    (np.array([[1.0, 0, 0], [2.0, 0, 0]]), np.eye(3)[:1], "linearly dependent"),
    (np.array([[np.nan, 0, 0]]), np.eye(3)[:1], "NaN"),
    (np.zeros((0, 3)), np.eye(3)[:1], "non-empty"),
])
def test_principal_angles_bad_input(A, B, match):
    with pytest.raises(ValueError, match=match):
        principal_angles(A, B)


def test_explained_variance_captured_bad_input():
    with pytest.raises(ValueError, match="features"):
        explained_variance_captured(np.ones((4, 3)) + np.arange(3) * np.arange(4)[:, None], np.eye(4)[:1])
    with pytest.raises(ValueError, match="zero total variance"):
        explained_variance_captured(np.ones((4, 3)), np.eye(3)[:1])
    with pytest.raises(ValueError, match="at least 2 samples"):
        explained_variance_captured(np.ones((1, 3)), np.eye(3)[:1])


# ----------------------------------------------------------------------------- sparsity, NMSE
CODES = np.array([
    [0.0, 1.5, -2.0, 0.0, 0.0],
    [0.0, 0.0, 0.1, 0.0, 0.0],
    [0.0, -0.3, 0.0, 0.0, 0.0],
])


def test_l0_per_sample_hand_computed():
    got = l0_per_sample(CODES)
    np.testing.assert_array_equal(got, [2, 1, 1])
    assert got.dtype == np.int64 and got.shape == (3,)
    # |c| > tol, strictly: 0.1 and 0.3 drop out at tol=0.3, 1.5 and 2 stay
    np.testing.assert_array_equal(l0_per_sample(CODES, tol=0.3), [2, 0, 0])
    np.testing.assert_array_equal(l0_per_sample(CODES, tol=0.29), [2, 0, 1])
    np.testing.assert_array_equal(l0_per_sample(CODES, tol=5), [0, 0, 0])
    np.testing.assert_array_equal(l0_per_sample(CODES.astype(np.float32)), [2, 1, 1])
    np.testing.assert_array_equal(l0_per_sample(np.zeros((2, 1))), [0, 0])
    np.testing.assert_array_equal(l0_per_sample([[1, 0, 3]]), [2])  # integer codes


def test_l0_per_sample_of_topk_codes_is_k():
    from aefast.ops import topk

    rng = np.random.default_rng(0)
    Z = rng.standard_normal((50, 40))
    _, idx = topk(Z, 7)
    sparse = np.zeros_like(Z)
    np.put_along_axis(sparse, idx, np.take_along_axis(Z, idx, axis=1), axis=1)
    np.testing.assert_array_equal(l0_per_sample(sparse), np.full(50, 7))


def test_dead_latent_fraction_hand_computed():
    # columns 0, 3, 4 never fire: 3 of 5
    assert dead_latent_fraction(CODES) == pytest.approx(3 / 5)
    # at tol=0.3 column 2 still fires (2.0) but column 1 does too (1.5): same
    assert dead_latent_fraction(CODES, tol=0.3) == pytest.approx(3 / 5)
    assert dead_latent_fraction(CODES, tol=1.5) == pytest.approx(4 / 5)
    assert dead_latent_fraction(CODES, tol=2.0) == 1.0
    assert dead_latent_fraction(np.ones((1, 4))) == 0.0
    assert dead_latent_fraction(np.zeros((10, 8))) == 1.0
    # depends on the rows given: a unit dead on the last row alone fires on the first
    assert dead_latent_fraction(CODES[2:]) == pytest.approx(4 / 5)
    assert isinstance(dead_latent_fraction(CODES), float)


def test_normalized_mse_hand_computed():
    X = np.array([[0.0, 0.0], [2.0, 4.0]])
    # per-feature mean (1, 2); squared deviations 1, 4, 1, 4 -> D = 10 / 4 = 2.5
    X_hat = np.array([[1.0, 0.0], [2.0, 2.0]])  # squared errors 1, 0, 0, 4 -> MSE 1.25
    assert normalized_mse(X, X_hat) == pytest.approx(1.25 / 2.5)
    # per sample: mean over features of each row's squared error, over the same D
    np.testing.assert_allclose(normalized_mse(X, X_hat, per_sample=True), [0.5 / 2.5, 2.0 / 2.5])
    assert normalized_mse(X, X) == 0.0
    # predicting the mean gives exactly 1 whatever the data
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((30, 7)) * np.arange(1, 8) + 5
    assert normalized_mse(Y, np.tile(Y.mean(axis=0), (30, 1))) == pytest.approx(1.0)
    # against a direct NumPy formula, and the per-sample values average to the global one
    Y_hat = Y + rng.standard_normal(Y.shape)
    expected = np.mean((Y - Y_hat) ** 2) / np.mean((Y - Y.mean(axis=0)) ** 2)
    assert normalized_mse(Y, Y_hat) == pytest.approx(expected, rel=1e-12)
    per = normalized_mse(Y, Y_hat, per_sample=True)
    assert per.shape == (30,) and per.mean() == pytest.approx(expected, rel=1e-12)
    # the denominator is the variance of X, not of X_hat: not symmetric
    assert normalized_mse(Y_hat, Y) != pytest.approx(expected, rel=1e-6)
    # float32 inputs are computed in float64
    assert normalized_mse(Y.astype(np.float32), Y_hat.astype(np.float32)) == pytest.approx(
        expected, rel=1e-5
    )


def test_normalized_mse_of_pca_reconstruction_is_unexplained_variance():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 6)) * np.arange(6, 0, -1) + 2
    pca = PCA(2).fit(X)
    nmse = normalized_mse(X, pca.inverse_transform(pca.transform(X)))
    assert nmse == pytest.approx(1 - pca.explained_variance_ratio_.sum(), rel=1e-10)


@pytest.mark.parametrize("X", [np.ones((1, 3)), np.full((5, 2), 0.1), np.zeros((4, 4))])
def test_normalized_mse_zero_denominator(X):
    with pytest.raises(ValueError, match="zero variance about its per-feature mean"):
        normalized_mse(X, X + 1)


@pytest.mark.parametrize("fn", [l0_per_sample, dead_latent_fraction])
def test_sparsity_metrics_bad_input(fn):
    with pytest.raises(ValueError, match="2-D"):
        fn(np.ones(3))
    with pytest.raises(ValueError, match="2-D"):
        fn(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="non-empty"):
        fn(np.ones((0, 3)))
    with pytest.raises(ValueError, match="NaN or infinity"):
        fn([[1.0, np.nan]])
    with pytest.raises(ValueError, match="NaN or infinity"):
        fn([[1.0, np.inf]])
    with pytest.raises(TypeError, match="numeric"):
        fn(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="tol"):
        fn(np.ones((2, 2)), tol=-0.1)
    with pytest.raises(ValueError, match="tol"):
        fn(np.ones((2, 2)), tol=np.nan)
    with pytest.raises(TypeError, match="tol"):
        fn(np.ones((2, 2)), tol="0")


def test_normalized_mse_bad_input():
    X = np.arange(6.0).reshape(3, 2)
    with pytest.raises(ValueError, match="same shape"):
        normalized_mse(X, X[:2])
    with pytest.raises(ValueError, match="same shape"):
        normalized_mse(X, X.T)
    with pytest.raises(ValueError, match="X must be a 2-D"):
        normalized_mse(X.ravel(), X.ravel())
    with pytest.raises(ValueError, match="X_hat must be a 2-D"):
        normalized_mse(X, X[np.newaxis])
    with pytest.raises(ValueError, match="X_hat contains NaN"):
        normalized_mse(X, np.where(X == 1, np.nan, X))
    with pytest.raises(ValueError, match="X contains NaN"):
        normalized_mse(np.where(X == 1, np.inf, X), X)
    with pytest.raises(ValueError, match="non-empty"):
        normalized_mse(np.ones((0, 2)), np.ones((0, 2)))
