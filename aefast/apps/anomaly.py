"""Anomaly detection by reconstruction error (or, for a VAE, by the ELBO).

An autoencoder trained on mostly normal data reconstructs normal samples well
and unusual ones badly, so the reconstruction error is an outlier score.
:class:`AnomalyDetector` wraps any aefast autoencoder (or a VAE) in the
scikit-learn outlier-detector conventions (``score_samples`` higher = more
normal, ``decision_function`` < 0 = outlier, ``predict`` +1 / -1) and also
keeps PyOD's training-set attributes (``decision_scores_``, ``threshold_``,
``labels_``), so it drops into code written for either library.
"""
import inspect

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin, clone
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from ..models._random import as_generator
from ..models._validation import check_float, check_int

_SCORES = ("auto", "reconstruction", "elbo", "log_likelihood")


def default_estimator(n_features, n_samples, random_state=None):
    """The autoencoder ``AnomalyDetector`` fits when ``estimator=None``.

    One hidden layer of ``min(128, n_features // 2)`` units (at least the code
    width) around a code of ``max(2, min(32, n_features // 8))`` units (at most
    ``n_features``), ReLU, mean squared error (which, unlike cross-entropy,
    also scores inputs outside the training range), Adam with learning rate
    1e-3, 50 epochs, mini-batches of ``min(128, n_samples)`` rows, no early
    stopping.

    Parameters
    ----------
    n_features : int
    n_samples : int
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    aefast.Autoencoder
        Unfitted.
    """
    from ..models import Autoencoder

    code = max(1, min(max(2, min(32, n_features // 8)), n_features))
    hidden = max(code, min(128, n_features // 2))
    return Autoencoder(hidden_layers=(hidden,), n_components=code, loss="mse",
                       learning_rate=1e-3, batch_size=max(1, min(128, n_samples)),
                       max_epochs=50, early_stopping=False, random_state=random_state)


def _accepts(method, name):
    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


class AnomalyDetector(OutlierMixin, BaseEstimator):
    """Outlier detection with an autoencoder's reconstruction error.

    ``fit`` trains a clone of ``estimator`` on the (optionally standardized)
    training data, scores the training data and sets the threshold so that a
    fraction ``contamination`` of it is flagged as outliers.

    Parameters
    ----------
    estimator : aefast estimator or None, default=None
        The model to train (it is cloned; the original is left untouched).
        Any estimator with ``fit`` and the method that ``score`` needs:
        ``reconstruction_error`` (every aefast autoencoder), ``elbo`` or
        ``log_likelihood`` (``aefast.VAE``). ``None`` builds an
        :class:`aefast.Autoencoder` sized from the data, see
        :func:`default_estimator`.
    contamination : float in (0, 0.5], default=0.1
        Expected fraction of outliers in the training data; sets ``offset_``
        (and ``threshold_``).
    standardize : bool, default=False
        Centre each feature and scale it to unit variance (statistics of the
        training data, ``sklearn.preprocessing.StandardScaler``) before the
        estimator sees it, at fit and at scoring time. Useful when features
        have very different scales; leave it off for images in [0, 1].
    score_type : {"auto", "reconstruction", "elbo", "log_likelihood"}, default="auto"
        What ``score_samples`` returns (higher = more normal):

        - ``"reconstruction"``: minus ``estimator.reconstruction_error(X)``,
          the per-sample training loss;
        - ``"elbo"``: ``estimator.elbo(X)``, the per-sample evidence lower bound
          of a VAE (so the outlier score is the negative ELBO);
        - ``"log_likelihood"``: ``estimator.log_likelihood(X,
          n_samples=n_importance_samples)``, the importance-weighted
          log-likelihood estimate of a VAE;
        - ``"auto"``: ``"elbo"`` when the estimator has an ``elbo`` method,
          ``"reconstruction"`` otherwise.

        (Not called ``score``: scikit-learn reserves that name for a method.)
    n_importance_samples : int, default=100
        Samples per data point for ``score_type="log_likelihood"``.
    random_state : int, numpy.random.Generator or None, default=None
        When not None, seeds the estimator (its ``random_state`` parameter is
        replaced in the clone) and the draws of z behind the ``"elbo"`` and
        ``"log_likelihood"`` scores; None leaves the estimator's own seed in
        place. Either way a fitted detector reuses one seed for those draws, so
        scoring the same rows twice gives the same values.

    Attributes
    ----------
    estimator_ : estimator
        The fitted clone.
    scaler_ : sklearn.preprocessing.StandardScaler or None
        The fitted standardization (None when ``standardize=False``).
    score_type_ : str
        The resolved ``score_type``.
    decision_scores_ : ndarray of shape (n_samples,)
        Outlier scores of the training data, **higher = more abnormal**
        (PyOD's convention): ``-score_samples(X_train)``, e.g. the per-sample
        reconstruction error.
    offset_ : float
        ``decision_function = score_samples - offset_``; the
        ``contamination`` quantile of ``score_samples`` on the training data
        (scikit-learn's convention).
    threshold_ : float
        ``-offset_``: the outlier-score threshold (PyOD's convention); a sample
        is an outlier when its outlier score ``-score_samples`` exceeds it.
    labels_ : ndarray of shape (n_samples,)
        PyOD-style labels of the training data: 0 inlier, 1 outlier.
    n_features_in_ : int

    See Also
    --------
    sklearn.ensemble.IsolationForest : the same interface with trees.

    Examples
    --------
    >>> import numpy as np
    >>> import aefast
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 2)) @ rng.normal(size=(2, 10))
    >>> X[:10] += 5 * rng.normal(size=(10, 10))     # ten planted outliers
    >>> det = aefast.AnomalyDetector(contamination=0.02, random_state=0).fit(X)
    >>> int((det.predict(X[:10]) == -1).sum()) >= 8
    True
    """

    def __init__(self, estimator=None, contamination=0.1, standardize=False, score_type="auto",
                 n_importance_samples=100, random_state=None):
        self.estimator = estimator
        self.contamination = contamination
        self.standardize = standardize
        self.score_type = score_type
        self.n_importance_samples = n_importance_samples
        self.random_state = random_state

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        contamination = check_float(self.contamination, "contamination", low=0,
                                    low_inclusive=False, high=0.5)
        if self.score_type not in _SCORES:
            raise ValueError(f"score_type must be one of {', '.join(_SCORES)}; "
                             f"got {self.score_type!r}")
        check_int(self.n_importance_samples, "n_importance_samples", low=1)
        if self.estimator is not None and not hasattr(self.estimator, "fit"):
            raise TypeError(f"estimator must be an estimator with a fit method, got "
                            f"{type(self.estimator).__name__}")
        return contamination

    def _resolve_score(self, estimator):
        score = self.score_type
        if score == "auto":
            score = "elbo" if callable(getattr(estimator, "elbo", None)) else "reconstruction"
        method = {"reconstruction": "reconstruction_error", "elbo": "elbo",
                  "log_likelihood": "log_likelihood"}[score]
        if not callable(getattr(estimator, method, None)):
            raise TypeError(f"score_type={score!r} needs an estimator with a {method}() method; "
                            f"{type(estimator).__name__} has none")
        return score

    def _validate(self, X, reset):
        return validate_data(self, X, reset=reset, dtype=[np.float32, np.float64],
                             ensure_min_samples=1)

    # ---------------------------------------------------------------- fitting
    def fit(self, X, y=None):
        """Train the estimator and set the outlier threshold.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, mostly normal.
        y : ignored

        Returns
        -------
        self
        """
        contamination = self._check_params()
        X = self._validate(X, reset=True)
        seeded = self.random_state is not None
        rng = as_generator(self.random_state)
        if self.estimator is None:
            estimator = default_estimator(X.shape[1], X.shape[0],
                                          int(rng.integers(2**31)) if seeded else None)
        else:
            estimator = clone(self.estimator)
            if seeded and "random_state" in estimator.get_params(deep=False):
                estimator.set_params(random_state=int(rng.integers(2**31)))
        self.score_type_ = self._resolve_score(estimator)
        # VAE scores draw z: one seed per fitted detector makes them repeatable
        self._score_seed = int(rng.integers(2**31))
        if self.standardize:
            self.scaler_ = StandardScaler().fit(X)
            Xs = self.scaler_.transform(X)
        else:
            self.scaler_ = None
            Xs = X
        self.estimator_ = estimator.fit(Xs)
        scores = self._raw_scores(Xs)
        self.offset_ = float(np.quantile(scores, contamination))
        self.threshold_ = -self.offset_
        self.decision_scores_ = -scores
        self.labels_ = (scores < self.offset_).astype(np.int64)
        return self

    # --------------------------------------------------------------- scoring
    def _raw_scores(self, Xs):
        est = self.estimator_
        if self.score_type_ == "reconstruction":
            scores = -np.asarray(est.reconstruction_error(Xs))
        else:
            method = est.elbo if self.score_type_ == "elbo" else est.log_likelihood
            kwargs = {}
            if self.score_type_ == "log_likelihood":
                kwargs["n_samples"] = self.n_importance_samples
            if _accepts(method, "random_state"):
                # the same seed for every call: scoring the same rows gives the same values
                kwargs["random_state"] = self._score_seed
            scores = np.asarray(method(Xs, **kwargs))
        scores = scores.astype(np.float64, copy=False).reshape(-1)
        if scores.shape[0] != Xs.shape[0]:
            raise ValueError(f"{type(est).__name__} returned {scores.shape[0]} scores for "
                             f"{Xs.shape[0]} samples")
        return scores

    def score_samples(self, X):
        """Normality score of each sample: higher means more normal.

        Minus the reconstruction error, the ELBO or the log-likelihood
        estimate, depending on ``score_type_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        check_is_fitted(self, "estimator_")
        X = self._validate(X, reset=False)
        if self.scaler_ is not None:
            X = self.scaler_.transform(X)
        return self._raw_scores(X)

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers, >= 0 for inliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """+1 for inliers, -1 for outliers (``decision_function < 0``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,), int64
        """
        return np.where(self.decision_function(X) < 0, -1, 1).astype(np.int64)

    def fit_predict(self, X, y=None):
        """Fit on X and return its +1 / -1 labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        ndarray of shape (n_samples,), int64
        """
        return 1 - 2 * self.fit(X).labels_
