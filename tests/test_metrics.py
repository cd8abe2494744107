"""aefast.metrics: principal angles, subspace distance, captured variance."""

import numpy as np
import pytest
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA

from aefast.metrics import explained_variance_captured, principal_angles, subspace_distance


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
