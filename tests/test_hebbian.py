"""HebbianNeuron: plain Hebb aligns with the top principal component while its norm diverges."""

import warnings

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import reference as ref
from aefast.metrics import principal_angles
from aefast.models.hebbian import HebbianNeuron


def _data(n=3_000, seed=0):
    rng = np.random.default_rng(seed)
    scales = np.array([3.0, 1.5, 1.0, 0.5, 0.5])
    R = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    X = (rng.standard_normal((n, 5)) * scales) @ R.T + 4.0
    return X, R[:, 0]


def test_direction_aligns_with_first_principal_component():
    X, top = _data()
    h = HebbianNeuron(learning_rate=1e-3, random_state=0).fit(X)
    pc1 = np.linalg.eigh(np.cov(X.T))[1][:, -1]
    assert principal_angles(h.components_, pc1[None, :])[0] < 0.05
    assert principal_angles(h.components_, top[None, :])[0] < 0.1
    np.testing.assert_allclose(np.linalg.norm(h.components_), 1.0, rtol=1e-6)


def test_norm_diverges_and_is_recorded():
    X, _ = _data()
    h = HebbianNeuron(learning_rate=1e-3, n_epochs=2, random_state=0).fit(X)
    assert h.weight_norms_.shape == (2 * X.shape[0],)
    norms = h.log_weight_norms_
    # the norm grows (nearly monotonically) by many orders of magnitude
    assert norms[-1] > norms[0] + np.log(1e6)
    assert np.mean(np.diff(norms) > 0) > 0.95
    np.testing.assert_allclose(np.linalg.norm(h.weights_), h.weight_norms_[-1], rtol=1e-9)
    np.testing.assert_allclose(np.log(h.weight_norms_), h.log_weight_norms_, rtol=1e-12)


def test_matches_literal_plain_hebb():
    X, _ = _data(n=200)
    h = HebbianNeuron(learning_rate=1e-3, random_state=3, shuffle=False).fit(X)
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal(5)
    w0 /= np.linalg.norm(w0)
    w_ref, norms_ref = ref.hebb_ref(w0, X, X.mean(0), np.full(200, 1e-3))
    np.testing.assert_allclose(h.weights_, w_ref, rtol=1e-10)
    np.testing.assert_allclose(h.weight_norms_, norms_ref, rtol=1e-10)


def test_overflowing_norm_warns_but_direction_survives():
    X, top = _data(n=20_000)
    with pytest.warns(RuntimeWarning, match="float64 range"):
        h = HebbianNeuron(learning_rate=0.005, n_epochs=2, random_state=0).fit(X)
    assert np.isinf(h.weight_norms_[-1]) and np.isfinite(h.log_weight_norms_[-1])
    assert principal_angles(h.components_, top[None, :])[0] < 0.2
    assert h.transform(X[:3]).shape == (3, 1)


def test_reproducible_and_float32():
    X, _ = _data(n=500)
    a = HebbianNeuron(learning_rate=1e-3, random_state=1, dtype="float32").fit(X)
    b = HebbianNeuron(learning_rate=1e-3, random_state=1, dtype="float32").fit(X)
    np.testing.assert_array_equal(a.weight_norms_, b.weight_norms_)
    assert a.components_.dtype == np.float32 and a.transform(X).dtype == np.float32
    c = HebbianNeuron(learning_rate=1e-3, random_state=1).fit(X)
    assert principal_angles(a.components_, c.components_)[0] < 1e-3


@pytest.mark.parametrize("params,match", [
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(learning_rate=np.nan), "learning_rate"),
    (dict(n_epochs=0), "n_epochs"),
    (dict(dtype="int8"), "dtype"),
])
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        HebbianNeuron(**params).fit(np.ones((5, 2)))


def test_nan_input_rejected():
    X = np.ones((5, 2))
    X[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        HebbianNeuron().fit(X)


@parametrize_with_checks([HebbianNeuron(learning_rate=1e-3, random_state=0)])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        check(estimator)
