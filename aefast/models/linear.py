"""The linear autoencoder, and the principal components recovered from it."""
import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..exceptions import TrainingDivergedError
from .autoencoder import Autoencoder


class LinearAutoencoder(Autoencoder):
    """Autoencoder with one linear encoder and one linear decoder layer.

    Trained by the engine on the mean squared error, its optimum spans the
    same subspace as the top ``n_components`` principal components (Baldi &
    Hornik 1989), but in an arbitrary basis: any invertible ``A`` gives the
    same reconstruction with encoder ``W A`` and decoder ``A^-1 W'``. After
    training, ``components_`` recovers the ordered principal directions from
    the decoder: orthonormalise its rows, project the centred training data
    onto them, and diagonalise the ``k x k`` covariance of the projections.

    Parameters
    ----------
    n_components : int, default=2
    center : bool, default=True
        Subtract the training mean before training (as PCA does) instead of
        leaving it to the biases, which conditions the problem far better;
        ``transform`` and ``inverse_transform`` apply and undo it.
    optimizer, learning_rate, batch_size, max_epochs, tol, n_iter_no_change,
    early_stopping, validation_fraction, weight_decay, dtype, random_state,
    verbose, n_jobs
        As in :class:`aefast.Autoencoder`.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Orthonormal directions, ordered by decreasing variance of the
        training data along them.
    explained_variance_ : ndarray of shape (n_components,)
        Variance of the training data along each component (``n - 1``
        denominator, as scikit-learn's PCA).
    mean_ : ndarray of shape (n_features,)
        Mean of the training data.
    encoder_weights_ : ndarray of shape (n_features, n_components)
    decoder_weights_ : ndarray of shape (n_components, n_features)

    Notes
    -----
    ``transform`` returns the trained code (any basis of the subspace);
    ``components_`` are computed from the data of the last ``fit`` or
    ``partial_fit`` call. ``mean_`` is the training mean under ``fit`` and the
    first chunk's mean under ``partial_fit``.
    """

    # The architecture is fixed; these are not parameters of this class.
    hidden_layers = ()
    activation = "identity"
    code_activation = "identity"
    output_activation = "identity"
    loss = "mse"
    init = "glorot"
    sparsity = None
    corruption = None

    def __init__(self, n_components=2, center=True, optimizer="adam", learning_rate=1e-2,
                 batch_size=64, max_epochs=100, tol=0.0, n_iter_no_change=10,
                 early_stopping=False, validation_fraction=0.1, weight_decay=0.0,
                 dtype="float32", device="cpu", n_jobs=None, random_state=None, verbose=False):
        self.n_components = n_components
        self.center = center
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.weight_decay = weight_decay
        self.dtype = dtype
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # Adam/momentum settings and shuffling stay at Autoencoder's defaults.
    momentum, nesterov, beta_1, beta_2, epsilon = 0.9, False, 0.9, 0.999, 1e-8
    shuffle = True
    weight_l1 = 0.0

    def fit(self, X, y=None):
        X = self._validate(X, reset=True)
        self.mean_ = np.mean(X, axis=0, dtype=np.float64).astype(X.dtype)
        Xc = self._centered(X)
        try:
            super().fit(Xc)
        except TrainingDivergedError:
            self._recover_components(Xc)  # the model keeps its last finite state
            raise
        self._recover_components(Xc)
        return self

    def partial_fit(self, X, y=None):
        first = not hasattr(self, "network_")
        X = self._validate(X, reset=first)
        if first:  # the centre is the first chunk's mean; the biases absorb drift
            self.mean_ = np.mean(X, axis=0, dtype=np.float64).astype(X.dtype)
        Xc = self._centered(X)
        super().partial_fit(Xc)
        self._recover_components(Xc)
        return self

    def _centered(self, X):
        return X - self.mean_ if self.center else X

    def transform(self, X):
        check_is_fitted(self, "network_")
        return super().transform(self._centered(self._validate(X, reset=False)))

    def inverse_transform(self, Z):
        out = super().inverse_transform(Z)
        return out + self.mean_ if self.center else out

    def reconstruct(self, X):
        return self.inverse_transform(self.transform(X))

    def reconstruction_error(self, X):
        check_is_fitted(self, "network_")
        return super().reconstruction_error(self._centered(self._validate(X, reset=False)))

    def _recover_components(self, X):
        """Ordered principal directions from the decoder and the (centred) data X."""
        decoder = self.network_.weight(1).astype(np.float64)          # (k, d)
        basis, _ = np.linalg.qr(decoder.T)                             # (d, k), orthonormal
        projected = (X - np.mean(X, axis=0, dtype=np.float64)) @ basis  # (n, k)
        cov = projected.T @ projected / max(X.shape[0] - 1, 1)
        variances, rotation = np.linalg.eigh(cov)
        order = np.argsort(variances)[::-1]
        components = (basis @ rotation[:, order]).T
        # Fix each direction's sign so the largest |entry| is positive (as PCA's svd_flip).
        signs = np.sign(components[np.arange(len(components)),
                                   np.argmax(np.abs(components), axis=1)])
        self.components_ = (components * signs[:, None]).astype(self.network_.dtype)
        self.explained_variance_ = np.maximum(variances[order], 0).astype(self.network_.dtype)

    @property
    def encoder_weights_(self):
        check_is_fitted(self, "network_")
        return self.network_.weight(0).copy()

    @property
    def decoder_weights_(self):
        check_is_fitted(self, "network_")
        return self.network_.weight(1).copy()

    def _get_fitted_state(self):
        meta, arrays = super()._get_fitted_state()
        arrays.update(components=self.components_, explained_variance=self.explained_variance_,
                      mean=self.mean_)
        return meta, arrays

    def _set_fitted_state(self, meta, arrays):
        super()._set_fitted_state(meta, arrays)
        k, d = self.n_components, self.n_features_in_
        for name, shape in (("components", (k, d)), ("explained_variance", (k,)),
                            ("mean", (d,))):
            value = np.asarray(arrays[name])
            if value.shape != shape:
                raise ValueError(f"saved {name} has shape {value.shape}, expected {shape}")
            setattr(self, name + "_", value)
