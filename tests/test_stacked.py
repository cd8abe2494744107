"""StackedAutoencoder: greedy pretraining, weight transfer, fine-tuning, Pipeline use."""
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

import aefast
from aefast.datasets import load_digits


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def stacked(**kw):
    params = dict(hidden_layers=(32, 16), pretrain_epochs=10, finetune_epochs=10,
                  batch_size=64, random_state=0)
    params.update(kw)
    return aefast.StackedAutoencoder(**params)


@parametrize_with_checks([
    aefast.StackedAutoencoder(hidden_layers=(8, 3), pretrain_epochs=3, finetune_epochs=3,
                              batch_size=16, random_state=0),
    aefast.StackedAutoencoder(hidden_layers=(4,), pretrain_epochs=2, finetune_epochs=0,
                              batch_size=16, dtype="float64", random_state=0),
])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


def test_layers_are_trained_greedily_on_codes(digits):
    X, _ = digits
    model = stacked(hidden_layers=(32, 8, 4), finetune_epochs=0).fit(X)
    assert [layer.n_components for layer in model.layers_] == [32, 8, 4]
    assert [layer.n_features_in_ for layer in model.layers_] == [64, 32, 8]
    # inner layers reconstruct ReLU codes with MSE; the first one the input with BCE
    assert model.layers_[0].loss_ == "bce" and model.layers_[1].loss_ == "mse"
    assert model.layers_[1].code_activation == "relu"
    assert model.layers_[2].code_activation == "identity"
    assert all(curve[-1] < curve[0] for curve in model.pretrain_loss_curves_)
    # without fine-tuning the deep network is exactly the stack of the layers
    codes = X
    for layer in model.layers_:
        codes = layer.transform(codes)
    np.testing.assert_allclose(model.transform(X), codes, rtol=1e-5, atol=1e-6)
    rec = codes
    for layer in reversed(model.layers_):
        rec = layer.inverse_transform(rec)
    np.testing.assert_allclose(model.inverse_transform(codes), rec, rtol=1e-5, atol=1e-6)
    assert model.loss_curve_ == [] and model.autoencoder_.n_epochs_ == 0


def test_finetuning_starts_from_pretrained_weights(digits):
    X, _ = digits
    model = stacked(finetune_epochs=10).fit(X)
    ae = model.autoencoder_
    assert ae.hidden_layers == (32,) and ae.n_components == 16
    assert len(model.loss_curve_) == ae.n_epochs_ >= 1
    # a random initialisation of the same network starts far worse
    scratch = aefast.Autoencoder(hidden_layers=(32,), n_components=16, batch_size=64,
                                 max_epochs=1, random_state=0).fit(X)
    assert model.loss_curve_[0] < 0.8 * scratch.loss_curve_[0]
    pretrained_only = stacked(finetune_epochs=0).fit(X)
    assert (np.mean(model.reconstruction_error(X))
            < np.mean(pretrained_only.reconstruction_error(X)))
    np.testing.assert_allclose(model.score_samples(X), -model.reconstruction_error(X))
    np.testing.assert_allclose(model.reconstruct(X), ae.reconstruct(X))


def test_denoising_pretraining(digits):
    X, _ = digits
    model = stacked(corruption=aefast.MaskingNoise(0.3), finetune_epochs=2).fit(X)
    assert all(layer.corruption is not None for layer in model.layers_)
    assert model.autoencoder_.corruption is None
    assert model.transform(X).shape == (len(X), 16)


def test_features_in_a_pipeline(digits):
    X, y = digits
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    pipe = make_pipeline(stacked(hidden_layers=(48, 16), pretrain_epochs=15),
                         LogisticRegression(max_iter=500))
    accuracy = pipe.fit(X_train, y_train).score(X_test, y_test)
    assert accuracy > 0.85


def test_reproducible(digits):
    X, _ = digits
    a = stacked(finetune_epochs=2).fit(X).transform(X)
    b = stacked(finetune_epochs=2).fit(X).transform(X)
    np.testing.assert_array_equal(a, b)


def test_bad_input(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="at least one"):
        stacked(hidden_layers=()).fit(X)
    with pytest.raises(ValueError, match="pretrain_epochs"):
        stacked(pretrain_epochs=0).fit(X)
    with pytest.raises(ValueError, match="finetune_epochs"):
        stacked(finetune_epochs=-1).fit(X)
    with pytest.raises(TypeError, match="hidden_layers"):
        stacked(hidden_layers=[8.5]).fit(X)
    with pytest.warns(UserWarning, match="clipped"):
        stacked(batch_size=10_000, pretrain_epochs=1, finetune_epochs=1).fit(X[:50])
    with pytest.warns(UserWarning, match="overcomplete"):
        stacked(hidden_layers=(80, 8), pretrain_epochs=1, finetune_epochs=1).fit(X[:100])
    model = stacked(pretrain_epochs=1, finetune_epochs=1).fit(X)
    with pytest.raises(ValueError, match="features"):
        model.transform(X[:, :10])
