"""Latent-space augmentation (DeVries & Taylor 2017): formulas, counts, labels, errors."""
import numpy as np
import pytest

import aefast
from aefast import augment
from aefast.datasets import load_digits


@pytest.fixture(scope="module")
def data():
    X, y = load_digits()
    return X[:600], y[:600]


@pytest.fixture(scope="module")
def model(data):
    X, _ = data
    return aefast.Autoencoder(hidden_layers=(32,), n_components=8, max_epochs=20,
                              batch_size=64, random_state=0).fit(X)


def nearest_same_class(codes, y):
    """Index of each code's nearest other code of the same class (brute force)."""
    out = np.empty(len(y), dtype=int)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        dist = np.linalg.norm(codes[members, None] - codes[None, members], axis=2)
        np.fill_diagonal(dist, np.inf)
        out[members] = members[np.argmin(dist, axis=1)]
    return out


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.7])
def test_extrapolation_formula_is_exact(data, model, lam):
    X, y = data
    X_new, y_new = augment.extrapolate(model, X, y, lam=lam, n_neighbors=1, random_state=0)
    codes = model.transform(X).astype(np.float64)
    k = nearest_same_class(codes, y)
    expected = model.inverse_transform((codes - codes[k]) * lam + codes)
    np.testing.assert_allclose(X_new, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y_new, y)


def test_interpolation_formula_is_exact(data, model):
    X, y = data
    X_new, y_new = augment.interpolate(model, X, y, lam=0.25, n_neighbors=1)
    codes = model.transform(X).astype(np.float64)
    k = nearest_same_class(codes, y)
    expected = model.inverse_transform((codes[k] - codes) * 0.25 + codes)
    np.testing.assert_allclose(X_new, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y_new, y)
    # lam = 0 gives the source back
    X0, _ = augment.interpolate(model, X, y, lam=0.0)
    np.testing.assert_allclose(X0, model.inverse_transform(codes), rtol=1e-5, atol=1e-6)


def test_partners_come_from_the_same_class_neighbourhood(data, model):
    """An identity "model" makes the codes X itself; with lam = 1 a new sample is its partner."""
    X, y = data

    class Identity:
        def transform(self, X):
            return np.asarray(X, dtype=np.float64)

        def inverse_transform(self, Z):
            return Z

    n_neighbors = 5
    X_new, y_new = augment.interpolate(Identity(), X, y, lam=1.0, n_neighbors=n_neighbors,
                                       random_state=0)
    X64 = X.astype(np.float64)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        dist = np.linalg.norm(X64[members, None] - X64[None, members], axis=2)
        np.fill_diagonal(dist, np.inf)
        kth = np.sort(dist, axis=1)[:, n_neighbors - 1]
        for row, i in enumerate(members):
            # lam = 1: the new sample is the partner itself, a same-class sample...
            assert np.any(np.all(X[members] == X_new[i], axis=1))
            # ...among the n_neighbors nearest ones (other than the source)
            assert np.linalg.norm(X_new[i] - X64[i]) <= kth[row] * (1 + 1e-6)
    np.testing.assert_array_equal(y_new, y)


@pytest.mark.parametrize("fn", [augment.add_noise, augment.interpolate, augment.extrapolate])
def test_counts_labels_and_range(data, model, fn):
    X, y = data
    X_new, y_new = fn(model, X, y, n_new=1000, random_state=0)
    assert X_new.shape == (1000, X.shape[1]) and y_new.shape == (1000,)
    assert set(np.unique(y_new)) <= set(np.unique(y))
    # sigmoid outputs: inside the [0, 1] range of the pixels
    assert X_new.min() >= 0 and X_new.max() <= 1
    X_small, y_small = fn(model, X, y, n_new=7, random_state=0)
    assert X_small.shape == (7, X.shape[1]) and len(y_small) == 7
    X_all, y_all = fn(model, X, y, random_state=0)
    np.testing.assert_array_equal(y_all, y)
    # reproducible
    np.testing.assert_array_equal(fn(model, X, y, n_new=20, random_state=1)[0],
                                  fn(model, X, y, n_new=20, random_state=1)[0])


def test_noise_scale(data, model):
    X, y = data
    X0, _ = augment.add_noise(model, X, y, scale=0.0)
    np.testing.assert_allclose(X0, model.reconstruct(X), rtol=1e-5, atol=1e-6)
    codes = model.transform(X)
    small, _ = augment.add_noise(model, X, y, scale=0.1, random_state=0)
    large, _ = augment.add_noise(model, X, y, scale=2.0, random_state=0)
    base = model.reconstruct(X)
    assert np.mean((small - base) ** 2) < np.mean((large - base) ** 2)
    assert codes.shape == (len(X), 8)


def test_clip_keeps_data_range():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(200, 6))
    y = np.repeat([0, 1], 100)
    ae = aefast.Autoencoder(hidden_layers=(), n_components=3, activation="identity",
                            max_epochs=5, batch_size=32, random_state=0).fit(X)
    X_new, _ = augment.extrapolate(ae, X, y, lam=5.0, clip=True, random_state=0)
    assert X_new.min() >= X.min() and X_new.max() <= X.max()


class FakeVAE:
    def sample(self, n_samples=1, random_state=None):
        rng = np.random.default_rng(random_state)
        return rng.uniform(size=(n_samples, 3))


def test_generate():
    X = augment.generate(FakeVAE(), 5, random_state=0)
    assert X.shape == (5, 3)
    np.testing.assert_array_equal(X, augment.generate(FakeVAE(), 5, random_state=0))
    with pytest.raises(TypeError, match="sample"):
        augment.generate(object(), 5)
    with pytest.raises(ValueError, match="n must be"):
        augment.generate(FakeVAE(), 0)


def test_generate_with_real_vae():
    pytest.importorskip("aefast.models.vae")
    X, _ = load_digits()
    vae = aefast.VAE(hidden_layers=(16,), n_components=2, max_epochs=2, random_state=0).fit(X)
    samples = augment.generate(vae, 10, random_state=0)
    assert samples.shape == (10, 64) and samples.min() >= 0 and samples.max() <= 1


def test_bad_input(data, model):
    X, y = data
    with pytest.raises(ValueError, match="lam"):
        augment.extrapolate(model, X, y, lam=-0.5)
    with pytest.raises(ValueError, match="lam"):
        augment.interpolate(model, X, y, lam=1.5)
    with pytest.raises(ValueError, match="scale"):
        augment.add_noise(model, X, y, scale=-1)
    y_lonely = y.copy()
    y_lonely[0] = 99
    with pytest.raises(ValueError, match=r"at least 2 samples.*\[99\]"):
        augment.interpolate(model, X, y_lonely)
    with pytest.raises(ValueError, match="inconsistent"):
        augment.extrapolate(model, X, y[:-1])
    with pytest.raises(ValueError, match="1-D"):
        augment.add_noise(model, X, y[:, None])
    with pytest.raises(ValueError, match="n_neighbors"):
        augment.interpolate(model, X, y, n_neighbors=0)
    with pytest.raises(ValueError, match="n_new"):
        augment.add_noise(model, X, y, n_new=-1)
    with pytest.raises(TypeError, match="transform"):
        augment.add_noise(object(), X, y)
    with pytest.raises(ValueError, match="NaN"):
        augment.add_noise(model, np.full_like(X, np.nan), y)
