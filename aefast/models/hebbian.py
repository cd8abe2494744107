"""A single linear neuron trained with the plain Hebbian rule.

The plain rule ``dw = a x y`` with ``y = w . x`` strengthens the weight along
the directions of large variance, so the direction of ``w`` turns to the first
principal component, but nothing bounds its length: ``||w||`` grows
exponentially, which is the instability Oja's rule fixes. This estimator
exists to show both halves of that story: ``components_`` (the direction)
aligns with the top principal component, and ``weight_norms_`` records the
divergence step by step.

The rule is linear in ``w``, so the direction does not depend on the scale;
the kernel (:func:`aefast._kernels.cpu.hebb_chunk`) keeps a unit direction and
the logarithm of the norm, which follows the textbook trajectory exactly but
never overflows. ``weight_norms_`` holds the true norms (``inf`` once they
exceed the float64 range, with ``log_weight_norms_`` still finite).
"""

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .._kernels import cpu as _cpu
from ._random import as_generator
from ._validation import check_dtype

__all__ = ["HebbianNeuron"]


class HebbianNeuron(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """One linear neuron learning with the plain Hebbian rule ``dw = a x y``.

    Parameters
    ----------
    learning_rate : float, default=0.01
        The constant ``a`` of the rule, > 0.
    n_epochs : int, default=1
        Passes over the data.
    random_state : int, numpy.random.Generator, RandomState or None, default=None
        Seeds the initial weight (a random unit vector) and the sample order.
    center : bool, default=True
        Subtract the mean of the data before learning (the rule then follows
        the covariance; without centring it follows the second moment).
    shuffle : bool, default=True
        Visit the samples in a new random order every epoch.
    dtype : {"float32", "float64"}, default="float64"
        Float type of the computation. float64 by default: the rule is a
        product of many near-identity matrices and gains from the precision.

    Attributes
    ----------
    weights_ : ndarray of shape (n_features,)
        The Hebbian weight vector after training, ``exp(log_norm) * direction``
        in float64 (``inf`` entries once the norm leaves the float64 range).
    components_ : ndarray of shape (1, n_features)
        Unit vector on the line of ``weights_``, signed so that its
        largest-magnitude entry is positive: the neuron's estimate of the
        first principal component.
    weight_norms_ : ndarray of shape (n_epochs * n_samples,)
        ``||w||`` after every update, float64: the divergence of plain Hebbian
        learning made visible.
    log_weight_norms_ : ndarray of shape (n_epochs * n_samples,)
        Natural logarithm of ``weight_norms_``; finite even after the norms
        themselves overflow.
    mean_ : ndarray of shape (n_features,)
        Mean subtracted from the data (zeros when ``center=False``).
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features, when the input had string column names.

    See Also
    --------
    aefast.models.oja.OjaPCA : Oja's rule and its multi-neuron forms, which
        keep the weights bounded.

    Examples
    --------
    >>> import numpy as np
    >>> from aefast.models.hebbian import HebbianNeuron
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((2000, 3)) * [3.0, 1.0, 0.5]
    >>> h = HebbianNeuron(learning_rate=1e-3, random_state=0).fit(X)
    >>> np.round(np.abs(h.components_[0]), 2)
    array([1., 0., 0.])
    >>> bool(h.weight_norms_[-1] > 1e3)
    True
    """

    def __init__(
        self,
        learning_rate=0.01,
        n_epochs=1,
        random_state=None,
        *,
        center=True,
        shuffle=True,
        dtype="float64",
    ):
        self.learning_rate = learning_rate
        self.n_epochs = n_epochs
        self.random_state = random_state
        self.center = center
        self.shuffle = shuffle
        self.dtype = dtype

    def _check_params(self):
        lr = self.learning_rate
        if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real):
            raise ValueError(f"learning_rate must be a positive float, got {lr!r}.")
        if not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"learning_rate must be a positive finite float, got {lr!r}.")
        ne = self.n_epochs
        if isinstance(ne, (bool, np.bool_)) or not isinstance(ne, numbers.Integral) or ne < 1:
            raise ValueError(f"n_epochs must be a positive integer, got {ne!r}.")
        return check_dtype(self.dtype)

    def fit(self, X, y=None):
        """Train the neuron on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : None
            Ignored.

        Returns
        -------
        self : HebbianNeuron
            The fitted estimator.
        """
        dtype = self._check_params()
        X = validate_data(self, X, dtype=dtype, order="C")
        n, d = X.shape
        rng = as_generator(self.random_state)
        mean = X.mean(axis=0, dtype=np.float64) if self.center else np.zeros(d)
        mean_k = mean.astype(dtype)
        w = rng.standard_normal(d)
        w = (w / np.linalg.norm(w)).astype(dtype)
        etas = np.full(n, self.learning_rate, dtype=dtype)
        log_norms = np.empty(self.n_epochs * n)
        log_norm = 0.0
        for epoch in range(self.n_epochs):
            Xe = X[rng.permutation(n)] if self.shuffle else X
            out = log_norms[epoch * n : (epoch + 1) * n]
            log_norm = _cpu.hebb_chunk(w, Xe, mean_k, etas, log_norm, out)
        if not np.all(np.isfinite(w)):
            raise FloatingPointError(
                "HebbianNeuron: the weight direction became non-finite; lower learning_rate."
            )
        with np.errstate(over="ignore"):
            norms = np.exp(log_norms)
            weights = np.exp(log_norm) * w.astype(np.float64)
        if not np.all(np.isfinite(norms)):
            warnings.warn(
                "The Hebbian weight norm exceeded the float64 range (plain Hebbian "
                "learning diverges); weight_norms_ and weights_ contain inf, "
                "log_weight_norms_ and components_ remain valid.",
                RuntimeWarning,
                stacklevel=2,
            )
        direction = w.astype(np.float64)
        i = np.argmax(np.abs(direction))
        direction = direction if direction[i] >= 0 else -direction
        self.weights_ = weights
        self.components_ = direction[np.newaxis, :].astype(dtype)
        self.weight_norms_ = norms
        self.log_weight_norms_ = log_norms
        self.mean_ = mean.astype(dtype)
        return self

    def transform(self, X):
        """Output of the neuron (on the unit direction) for every sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y : ndarray of shape (n_samples, 1)
            ``(X - mean_) @ components_.T``.
        """
        check_is_fitted(self, "components_")
        X = validate_data(self, X, reset=False, dtype=self.components_.dtype)
        return (X - self.mean_) @ self.components_.T

    @property
    def _n_features_out(self):
        return 1

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            tags.transformer_tags.preserves_dtype = [check_dtype(self.dtype).name]
        except ValueError:
            tags.transformer_tags.preserves_dtype = []
        return tags
