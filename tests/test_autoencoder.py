"""The Autoencoder estimator: behaviour, scikit-learn conventions, bad input."""
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import aefast
from aefast.engine import backends


@pytest.fixture(scope="module")
def digits():
    return (load_digits().data / 16).astype(np.float32)


def small(**kw):
    params = dict(hidden_layers=(16,), n_components=4, max_epochs=5, batch_size=32,
                  random_state=0)
    params.update(kw)
    return aefast.Autoencoder(**params)


@parametrize_with_checks([small(max_epochs=3, batch_size=16),
                          small(max_epochs=3, dtype="float64", activation="tanh")])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        # Small check datasets trigger the batch-size clipping warning.
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


def test_auto_loss_choice(digits):
    ae = small().fit(digits)
    assert (ae.loss_, ae.output_activation_) == ("bce", "sigmoid")
    rec = ae.reconstruct(digits)
    assert rec.min() >= 0 and rec.max() <= 1
    X = np.random.default_rng(0).normal(size=(200, 6))
    ae = small().fit(X)
    assert (ae.loss_, ae.output_activation_) == ("mse", "identity")
    with pytest.raises(ValueError, match="needs data in"):
        small(loss="bce").fit(X)


def test_training_reduces_loss_and_beats_mean(digits):
    ae = small(hidden_layers=(64,), n_components=16, max_epochs=30, loss="mse",
               learning_rate=3e-3).fit(digits)
    assert ae.loss_curve_[-1] < 0.5 * ae.loss_curve_[0]
    mean_mse = np.mean((digits - digits.mean(0)) ** 2)
    assert np.mean(ae.reconstruction_error(digits)) < 0.5 * mean_mse
    assert ae.n_epochs_ == len(ae.loss_curve_) == 30


def test_linear_autoencoder_reaches_pca_error():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 3)) @ rng.normal(size=(3, 10)) + 0.05 * rng.normal(size=(2000, 10))
    ae = aefast.Autoencoder(hidden_layers=(), n_components=3, activation="identity",
                            max_epochs=60, batch_size=64, learning_rate=1e-2, tol=0,
                            dtype="float64", random_state=0).fit(X)
    pca = PCA(3).fit(X)
    pca_mse = np.mean((pca.inverse_transform(pca.transform(X)) - X) ** 2)
    # PCA is the optimum of a linear code on the training data.
    assert 0.999 * pca_mse < np.mean(ae.reconstruction_error(X)) < 1.5 * pca_mse


def test_methods_are_consistent(digits):
    ae = small().fit(digits)
    codes = ae.transform(digits)
    assert codes.shape == (len(digits), 4) and codes.dtype == np.float32
    np.testing.assert_allclose(ae.inverse_transform(codes), ae.reconstruct(digits), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(ae.score_samples(digits), -ae.reconstruction_error(digits))
    assert ae.score(digits) == pytest.approx(np.mean(ae.score_samples(digits)))
    rec = ae.reconstruct(digits).astype(float)
    bce = np.mean(-(digits * np.log(rec) + (1 - digits) * np.log1p(-rec)), axis=1)
    np.testing.assert_allclose(ae.reconstruction_error(digits), bce, rtol=1e-3, atol=1e-5)


def test_same_random_state_same_model(digits):
    a = small().fit(digits).network_.params
    b = small().fit(digits).network_.params
    c = small(random_state=1).fit(digits).network_.params
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_partial_fit_continues(digits):
    ae = small()
    for _ in range(3):
        ae.partial_fit(digits)
    assert ae.n_epochs_ == 3 and len(ae.loss_curve_) == 3
    assert ae.loss_curve_[-1] < ae.loss_curve_[0]
    with pytest.raises(ValueError, match="features"):
        ae.partial_fit(digits[:, :10])


def test_early_stopping_keeps_best(digits):
    ae = small(early_stopping=True, max_epochs=200, n_iter_no_change=3, tol=1e-2).fit(digits)
    assert ae.n_epochs_ < 200
    assert len(ae.validation_scores_) == ae.n_epochs_
    assert ae.best_validation_score_ == max(ae.validation_scores_)


def test_float64_and_integer_and_strided_inputs(digits):
    X64 = digits.astype(np.float64)
    ae = small(dtype="float64").fit(X64)
    assert ae.transform(X64).dtype == np.float64
    Xint = (digits * 16).astype(np.int64)
    assert small(loss="mse").fit(Xint).transform(Xint).shape == (len(digits), 4)
    ae = small().fit(digits)
    Xf = np.asfortranarray(digits)
    np.testing.assert_array_equal(ae.transform(Xf), ae.transform(digits))
    np.testing.assert_array_equal(ae.transform(digits[::2]),
                                  ae.transform(np.ascontiguousarray(digits[::2])))


def test_memmap_is_used_in_place(tmp_path, digits, monkeypatch):
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=digits.shape)
    mm[:] = digits
    mm.flush()
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=digits.shape)
    seen = []
    original = backends.CPUBackend.train_batches

    def spy(self, X, *args, **kwargs):
        seen.append(np.shares_memory(X, mm))
        return original(self, X, *args, **kwargs)

    monkeypatch.setattr(backends.CPUBackend, "train_batches", spy)
    ae = small(max_epochs=1).fit(mm)
    assert seen and all(seen)
    np.testing.assert_array_equal(ae.network_.params, small(max_epochs=1).fit(digits).network_.params)


def test_divergence_raises_and_keeps_finite_params():
    X = np.random.default_rng(0).normal(size=(256, 8)) * 1e18
    ae = aefast.Autoencoder(hidden_layers=(8,), n_components=2, optimizer="sgd",
                            learning_rate=10.0, max_epochs=50, batch_size=32, random_state=0)
    with pytest.raises(aefast.TrainingDivergedError, match="diverged"):
        ae.fit(X)
    assert np.all(np.isfinite(ae.network_.params))
    assert np.all(np.isfinite(ae.loss_curve_)) and ae.n_epochs_ == len(ae.loss_curve_)


def test_keyboard_interrupt_leaves_usable_model(digits, monkeypatch):
    calls = []
    original = backends.CPUBackend.train_batches

    def interrupt_on_third(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(backends.CPUBackend, "train_batches", interrupt_on_third)
    ae = small(max_epochs=50)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        ae.fit(digits)
    assert ae.n_epochs_ == 2
    assert ae.transform(digits).shape == (len(digits), 4)


def test_batch_size_is_clipped_with_warning(digits):
    with pytest.warns(UserWarning, match="clipped"):
        small(batch_size=10_000, max_epochs=1).fit(digits[:50])


def test_in_pipeline_and_grid_search(digits):
    pipe = make_pipeline(StandardScaler(), small(max_epochs=2, loss="mse"))
    assert pipe.fit_transform(digits).shape == (len(digits), 4)
    search = GridSearchCV(small(max_epochs=2), {"n_components": [2, 4]}, cv=2).fit(digits)
    assert search.best_params_["n_components"] in (2, 4)


@pytest.mark.parametrize("params,match", [
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=-3), "batch_size"),
    (dict(hidden_layers=(16, 0)), "hidden_layers"),
    (dict(n_components=0), "n_components"),
    (dict(activation="gelu"), "activation"),
    (dict(code_activation="nope"), "code_activation"),
    (dict(output_activation="nope"), "output_activation"),
    (dict(loss="hinge"), "loss"),
    (dict(optimizer="rmsprop"), "optimizer"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(learning_rate=float("nan")), "learning_rate"),
    (dict(max_epochs=0), "max_epochs"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(weight_l1=-0.1), "weight_l1"),
    (dict(dtype="float16"), "dtype"),
    (dict(device="tpu"), "device"),
    (dict(device="cuda"), "cuda"),
    (dict(early_stopping=True, validation_fraction=1.5), "validation_fraction"),
    (dict(loss="bce", output_activation="identity"), "sigmoid"),
])
def test_bad_parameters(digits, params, match, monkeypatch):
    # device="cuda" must fail clearly without a GPU, also when the CUDA simulator
    # (which counts as one) is enabled for the rest of the suite.
    monkeypatch.setattr("aefast.engine.cuda_backend.cuda_available",
                        lambda: (False, "no GPU in this test"))
    with pytest.raises((ValueError, TypeError), match=match):
        small(**params).fit(digits)


@pytest.mark.parametrize("X,match", [
    (np.array([[0.1, np.nan], [0.2, 0.3]]), "NaN"),
    (np.array([[0.1, np.inf], [0.2, 0.3]]), "infinity"),
    (np.zeros((0, 4)), "0 sample"),
    (np.zeros(5), "2D array"),
    (np.zeros((2, 3, 4)), "dim"),
    (np.array([["a", "b"]], dtype=object), "convert"),
    (np.array([["a", "b"]]), "dtype|convert"),
])
def test_bad_input(X, match):
    with pytest.raises(ValueError, match=match):
        small().fit(X)


def test_wrong_feature_count_at_transform(digits):
    ae = small().fit(digits)
    with pytest.raises(ValueError, match="features"):
        ae.transform(digits[:, :5])
    with pytest.raises(ValueError, match="components"):
        ae.inverse_transform(np.zeros((3, 7)))
    with pytest.raises(ValueError, match="NaN"):
        ae.transform(np.full_like(digits[:3], np.nan))


def test_unfitted_model_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        small().transform(np.zeros((2, 3)))
