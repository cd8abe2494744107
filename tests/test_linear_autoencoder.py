"""LinearAutoencoder: the PCA subspace, and PCA's components recovered from it."""
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.utils.estimator_checks import parametrize_with_checks

import aefast


@pytest.fixture(scope="module")
def digits():
    return load_digits().data / 16


def max_principal_angle(A, B):
    """Largest principal angle (degrees) between the row spaces of A and B."""
    qa, _ = np.linalg.qr(A.T)
    qb, _ = np.linalg.qr(B.T)
    cosines = np.linalg.svd(qa.T @ qb, compute_uv=False)
    return np.degrees(np.arccos(np.clip(cosines.min(), -1, 1)))


@pytest.mark.parametrize("k", [2, 4])
def test_spans_pca_subspace_and_recovers_ordered_components(digits, k):
    lae = aefast.LinearAutoencoder(n_components=k, dtype="float64", random_state=0).fit(digits)
    pca = PCA(k).fit(digits)
    assert max_principal_angle(lae.components_, pca.components_) < 5
    # One by one, up to sign, and with PCA's variances.
    cosines = np.abs(np.sum(lae.components_ * pca.components_, axis=1))
    assert np.all(cosines > 0.99)
    np.testing.assert_allclose(lae.explained_variance_, pca.explained_variance_, rtol=0.01)
    np.testing.assert_allclose(lae.components_ @ lae.components_.T, np.eye(k), atol=1e-10)
    # The trained weights themselves are not the components (any basis).
    assert lae.encoder_weights_.shape == (64, k) and lae.decoder_weights_.shape == (k, 64)


def test_reconstruction_matches_pca(digits):
    lae = aefast.LinearAutoencoder(n_components=4, dtype="float64", random_state=0).fit(digits)
    pca = PCA(4).fit(digits)
    pca_mse = np.mean((pca.inverse_transform(pca.transform(digits)) - digits) ** 2)
    mse = np.mean((lae.reconstruct(digits) - digits) ** 2)
    assert pca_mse * 0.999 < mse < pca_mse * 1.02
    np.testing.assert_allclose(lae.reconstruction_error(digits),
                               np.mean((lae.reconstruct(digits) - digits) ** 2, axis=1),
                               rtol=1e-8)


def test_save_load_round_trip(tmp_path, digits):
    lae = aefast.LinearAutoencoder(n_components=3, max_epochs=5, random_state=0).fit(digits)
    aefast.save(lae, tmp_path / "lae.npz")
    loaded = aefast.load(tmp_path / "lae.npz")
    np.testing.assert_array_equal(loaded.components_, lae.components_)
    np.testing.assert_array_equal(loaded.transform(digits), lae.transform(digits))


def test_partial_fit_keeps_first_chunk_mean(digits):
    lae = aefast.LinearAutoencoder(n_components=3, random_state=0)
    lae.partial_fit(digits[:900]).partial_fit(digits[900:])
    np.testing.assert_allclose(lae.mean_, digits[:900].mean(0), rtol=1e-5)
    assert lae.n_epochs_ == 2 and lae.components_.shape == (3, 64)


@parametrize_with_checks([aefast.LinearAutoencoder(n_components=2, max_epochs=3)])
def test_sklearn_compatible(estimator, check):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)
