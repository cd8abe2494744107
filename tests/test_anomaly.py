"""AnomalyDetector: ranking quality, sklearn outlier conventions, VAE scores, bad input."""
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks

import aefast
from aefast.apps.anomaly import default_estimator
from aefast.datasets import load_digits


def small_ae(**kw):
    params = dict(hidden_layers=(8,), n_components=2, max_epochs=5, batch_size=16)
    params.update(kw)
    return aefast.Autoencoder(**params)


@parametrize_with_checks([
    aefast.AnomalyDetector(random_state=0),
    aefast.AnomalyDetector(small_ae(), contamination=0.2, standardize=True, random_state=0),
])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


@pytest.fixture(scope="module")
def planted():
    """Low-rank data with 5% uniform outliers spread over its bounding box."""
    rng = np.random.default_rng(0)
    n, d, n_out = 950, 20, 50
    inliers = rng.normal(size=(n, 3)) @ rng.normal(size=(3, d)) + 0.1 * rng.normal(size=(n, d))
    outliers = rng.uniform(inliers.min(), inliers.max(), size=(n_out, d))
    X = np.vstack([inliers, outliers])
    labels = np.r_[np.zeros(n), np.ones(n_out)]
    order = rng.permutation(len(X))
    return X[order], labels[order]


@pytest.mark.parametrize("standardize", [False, True])
def test_planted_outliers_rank_on_top(planted, standardize):
    X, labels = planted
    det = aefast.AnomalyDetector(contamination=0.05, standardize=standardize,
                                 random_state=0).fit(X)
    assert roc_auc_score(labels, det.decision_scores_) > 0.95
    assert roc_auc_score(labels, -det.score_samples(X)) > 0.95
    # most flagged points are the planted ones
    flagged = det.predict(X) == -1
    assert labels[flagged].mean() > 0.8


@pytest.mark.parametrize("contamination", [0.02, 0.1, 0.3, 0.5])
def test_predictions_follow_contamination(planted, contamination):
    X, _ = planted
    det = aefast.AnomalyDetector(small_ae(max_epochs=3), contamination=contamination,
                                 random_state=0)
    pred = det.fit_predict(X)
    assert set(np.unique(pred)) <= {-1, 1}
    assert abs(np.mean(pred == -1) - contamination) <= 2 / len(X)
    np.testing.assert_array_equal(pred, det.predict(X))
    np.testing.assert_array_equal(det.labels_, (pred == -1).astype(int))


def test_conventions_are_consistent(planted):
    X, _ = planted
    det = aefast.AnomalyDetector(small_ae(), random_state=0).fit(X)
    s = det.score_samples(X)
    assert s.dtype == np.float64 and s.shape == (len(X),)
    np.testing.assert_allclose(s, -det.estimator_.reconstruction_error(X))
    np.testing.assert_allclose(det.decision_scores_, -s)
    np.testing.assert_allclose(det.decision_function(X), s - det.offset_)
    assert det.threshold_ == -det.offset_
    assert det.offset_ == pytest.approx(np.quantile(s, 0.1))
    # PyOD: an outlier has an outlier score above threshold_
    np.testing.assert_array_equal(det.decision_scores_ > det.threshold_, det.predict(X) == -1)
    assert det.score_type_ == "reconstruction"


def test_held_out_digit_is_anomalous():
    X, y = load_digits()
    normal, novel = X[y != 0], X[y == 0]
    det = aefast.AnomalyDetector(random_state=0).fit(normal[::2])
    test = np.vstack([normal[1::2], novel])
    labels = np.r_[np.zeros(len(normal[1::2])), np.ones(len(novel))]
    assert roc_auc_score(labels, -det.score_samples(test)) > 0.85


def test_estimator_is_cloned_and_seeded(planted):
    X, _ = planted
    template = small_ae(random_state=7)
    det = aefast.AnomalyDetector(template, random_state=0).fit(X)
    assert not hasattr(template, "network_")
    assert det.estimator_ is not template
    again = aefast.AnomalyDetector(template, random_state=0).fit(X)
    np.testing.assert_array_equal(det.decision_scores_, again.decision_scores_)
    # without a detector seed the estimator's own seed is kept
    own = aefast.AnomalyDetector(template).fit(X)
    assert own.estimator_.random_state == 7


def test_standardization_is_fitted_on_training_data(planted):
    X, _ = planted
    X = X * np.linspace(1, 1000, X.shape[1])
    det = aefast.AnomalyDetector(small_ae(), standardize=True, random_state=0).fit(X)
    np.testing.assert_allclose(det.scaler_.mean_, X.mean(0))
    Xs = det.scaler_.transform(X)
    np.testing.assert_allclose(det.score_samples(X),
                               -det.estimator_.reconstruction_error(Xs), rtol=1e-6)


def test_default_estimator_is_sized_from_data():
    ae = default_estimator(64, 1000)
    assert ae.hidden_layers == (32,) and ae.n_components == 8
    assert ae.batch_size == 128 and not ae.early_stopping and ae.loss == "mse"
    ae = default_estimator(784, 50)
    assert ae.hidden_layers == (128,) and ae.n_components == 32 and ae.batch_size == 50
    ae = default_estimator(1, 10)
    assert ae.hidden_layers == (1,) and ae.n_components == 1


class FakeVAE:
    """Duck-typed stand-in: ELBO = -squared norm; log-likelihood sees its arguments."""

    def __init__(self, random_state=None):
        self.random_state = random_state

    def get_params(self, deep=True):
        return {"random_state": self.random_state}

    def set_params(self, **params):
        self.random_state = params.get("random_state", self.random_state)
        return self

    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def elbo(self, X, n_samples=1, random_state=None):
        self.elbo_seed_ = random_state
        return -np.sum(np.asarray(X) ** 2, axis=1)

    def log_likelihood(self, X, n_samples=1000, random_state=None):
        self.ll_args_ = (n_samples, random_state)
        return -np.sum(np.abs(np.asarray(X)), axis=1)

    def reconstruction_error(self, X):
        return np.zeros(len(X))


def test_vae_scores_are_selectable(planted):
    X, _ = planted
    det = aefast.AnomalyDetector(FakeVAE(), random_state=0).fit(X)
    assert det.score_type_ == "elbo"
    np.testing.assert_allclose(det.score_samples(X), -np.sum(X**2, axis=1))
    first_seed = det.estimator_.elbo_seed_
    det.score_samples(X)
    assert det.estimator_.elbo_seed_ == first_seed is not None
    det = aefast.AnomalyDetector(FakeVAE(), score_type="log_likelihood",
                                 n_importance_samples=7, random_state=0).fit(X)
    np.testing.assert_allclose(det.decision_scores_, np.sum(np.abs(X), axis=1))
    assert det.estimator_.ll_args_[0] == 7
    det = aefast.AnomalyDetector(FakeVAE(), score_type="reconstruction").fit(X)
    assert np.all(det.score_samples(X) == 0)


def test_real_vae_if_available():
    pytest.importorskip("aefast.models.vae")
    X, y = load_digits()
    vae = aefast.VAE(hidden_layers=(32,), n_components=4, max_epochs=5, random_state=0)
    for score_type in ("elbo", "log_likelihood"):
        det = aefast.AnomalyDetector(vae, score_type=score_type, n_importance_samples=5,
                                     random_state=0).fit(X[:500])
        s = det.score_samples(X[:50])
        assert s.shape == (50,) and np.all(np.isfinite(s))
        np.testing.assert_array_equal(s, det.score_samples(X[:50]))


def test_bad_input(planted):
    X, _ = planted
    for bad in (0, -0.1, 0.6, "auto"):
        with pytest.raises((ValueError, TypeError), match="contamination"):
            aefast.AnomalyDetector(contamination=bad).fit(X)
    with pytest.raises(ValueError, match="score_type"):
        aefast.AnomalyDetector(score_type="bogus").fit(X)
    with pytest.raises(TypeError, match="elbo"):
        aefast.AnomalyDetector(small_ae(), score_type="elbo").fit(X)
    with pytest.raises(TypeError, match="estimator"):
        aefast.AnomalyDetector(estimator="autoencoder").fit(X)
    det = aefast.AnomalyDetector(small_ae(), random_state=0).fit(X)
    with pytest.raises(ValueError, match="features"):
        det.predict(X[:, :5])
    with pytest.raises(ValueError, match="NaN"):
        det.score_samples(np.full((2, X.shape[1]), np.nan))
