"""Stacked autoencoders: greedy layer-wise pretraining, then end-to-end fine-tuning.

The recipe of Hinton & Salakhutdinov (2006) and Bengio et al. (2007), with the
denoising variant of Vincent et al. (2010): train a one-layer autoencoder on the
data, then another on its codes, and so on; stack the encoders (and the
decoders in reverse) into one deep autoencoder and train it end to end starting
from those weights. Every piece is an :class:`aefast.Autoencoder`, so each
layer and the fine-tuning run in the compiled training step.
"""
import warnings

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ..models._random import as_generator
from ..models._validation import check_dtype, check_float, check_int


class StackedAutoencoder(TransformerMixin, BaseEstimator):
    """Deep autoencoder pretrained greedily, one layer at a time, then fine-tuned.

    Layer ``i`` is a one-hidden-layer autoencoder (``hidden_layers=()``) from
    width ``hidden_layers[i-1]`` (the input for ``i = 0``) to
    ``hidden_layers[i]``, trained for ``pretrain_epochs`` on the codes of layer
    ``i - 1`` (optionally corrupted: a stacked denoising autoencoder). The
    pretrained encoders and decoders then initialise an
    :class:`aefast.Autoencoder` with ``hidden_layers=hidden_layers[:-1]`` and
    ``n_components=hidden_layers[-1]``, trained end to end (on clean inputs)
    for ``finetune_epochs``.

    Parameters
    ----------
    hidden_layers : tuple of int, default=(256, 64)
        Widths of the stack, input side first; the last one is the code.
    activation : str, default="relu"
        Activation of the hidden layers (and so of the codes the inner layers
        are pretrained on).
    code_activation : str, default="identity"
        Activation of the last (code) layer.
    output_activation : str, default="auto"
        Output activation of the whole network (of layer 0's decoder during
        pretraining); ``"auto"`` as in :class:`aefast.Autoencoder`.
    loss : {"auto", "mse", "bce"}, default="auto"
        Loss on the input (layer 0 and fine-tuning); the inner layers always
        reconstruct their input codes with the mean squared error.
    corruption : None, aefast.GaussianNoise, aefast.MaskingNoise or aefast.SaltPepperNoise
        Noise applied to each layer's input during pretraining (stacked
        denoising autoencoder); fine-tuning sees clean inputs.
    pretrain_epochs : int, default=20
        Epochs per layer of the greedy phase.
    finetune_epochs : int, default=50
        Epochs of end-to-end training; 0 keeps the pretrained stack as it is.
    optimizer : {"adam", "sgd", "momentum"}, default="adam"
    learning_rate : float, default=1e-3
        Used in both phases.
    batch_size : int, default=256
        Clipped (with one warning) to the number of training rows.
    weight_decay : float, default=0.0
        L2 penalty on the weights in both phases.
    dtype : {"float32", "float64"}, default="float32"
    n_jobs : int or None, default=None
        BLAS threads, as in :class:`aefast.Autoencoder`.
    random_state : int, numpy.random.Generator or None, default=None
        Seeds every layer and the fine-tuning.
    verbose : bool, default=False

    Attributes
    ----------
    layers_ : list of aefast.Autoencoder
        The pretrained one-layer autoencoders, input side first.
    autoencoder_ : aefast.Autoencoder
        The fine-tuned deep autoencoder; ``transform`` and friends delegate to
        it.
    pretrain_loss_curves_ : list of list of float
        Training loss of each layer per pretraining epoch.
    loss_curve_ : list of float
        Training loss per fine-tuning epoch.
    n_components_ : int
        Width of the code, ``hidden_layers[-1]``.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> import aefast
    >>> X, y = load_digits(return_X_y=True)
    >>> model = make_pipeline(
    ...     aefast.StackedAutoencoder(hidden_layers=(32, 16), pretrain_epochs=5,
    ...                               finetune_epochs=5, random_state=0),
    ...     LogisticRegression(max_iter=1000))
    >>> model.fit(X / 16, y).score(X / 16, y) > 0.8
    True
    """

    def __init__(self, hidden_layers=(256, 64), activation="relu", code_activation="identity",
                 output_activation="auto", loss="auto", corruption=None, pretrain_epochs=20,
                 finetune_epochs=50, optimizer="adam", learning_rate=1e-3, batch_size=256,
                 weight_decay=0.0, dtype="float32", n_jobs=None, random_state=None,
                 verbose=False):
        self.hidden_layers = hidden_layers
        self.activation = activation
        self.code_activation = code_activation
        self.output_activation = output_activation
        self.loss = loss
        self.corruption = corruption
        self.pretrain_epochs = pretrain_epochs
        self.finetune_epochs = finetune_epochs
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self):
        try:
            hidden = tuple(self.hidden_layers)
        except TypeError:
            raise TypeError(
                f"hidden_layers must be a sequence of ints, got {self.hidden_layers!r}") from None
        if not hidden:
            raise ValueError("hidden_layers needs at least one width (the code)")
        for width in hidden:
            check_int(width, "hidden_layers entries", low=1)
        check_int(self.pretrain_epochs, "pretrain_epochs", low=1)
        check_int(self.finetune_epochs, "finetune_epochs", low=0)
        check_int(self.batch_size, "batch_size", low=1)
        check_float(self.learning_rate, "learning_rate", low=0, low_inclusive=False)
        return hidden

    def _validate(self, X, reset):
        return validate_data(self, X, reset=reset, dtype=check_dtype(self.dtype), order="C",
                             ensure_min_samples=1)

    def _layer(self, n_components, code_activation, output_activation, loss, corruption,
               batch_size, epochs, seed):
        from ..models import Autoencoder

        return Autoencoder(hidden_layers=(), n_components=n_components,
                           activation=self.activation, code_activation=code_activation,
                           output_activation=output_activation, loss=loss,
                           optimizer=self.optimizer, learning_rate=self.learning_rate,
                           batch_size=batch_size, max_epochs=epochs,
                           weight_decay=self.weight_decay, corruption=corruption,
                           dtype=self.dtype, n_jobs=self.n_jobs, random_state=seed,
                           verbose=self.verbose)

    def fit(self, X, y=None):
        """Pretrain the layers greedily, then fine-tune the whole stack.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        from ..models import Autoencoder

        hidden = self._check_params()
        X = self._validate(X, reset=True)
        rng = as_generator(self.random_state)
        batch_size = self.batch_size
        if batch_size > X.shape[0]:
            warnings.warn(f"batch_size={batch_size} is larger than the {X.shape[0]} training "
                          f"rows; it is clipped to {X.shape[0]}", UserWarning, stacklevel=2)
            batch_size = X.shape[0]

        self.layers_, self.pretrain_loss_curves_ = [], []
        codes = X
        last = len(hidden) - 1
        with warnings.catch_warnings():
            # Overcomplete inner layers are the user's choice; warned once below if any.
            warnings.filterwarnings("ignore", message="n_components=.*overcomplete")
            for i, width in enumerate(hidden):
                first = i == 0
                layer = self._layer(
                    width, self.code_activation if i == last else self.activation,
                    self.output_activation if first else self.activation,
                    self.loss if first else "mse", self.corruption, batch_size,
                    self.pretrain_epochs, int(rng.integers(2**31)))
                layer.fit(codes)
                self.layers_.append(layer)
                self.pretrain_loss_curves_.append(list(layer.loss_curve_))
                if i < last:
                    codes = layer.transform(codes)
        widths = (X.shape[1], *hidden)
        if any(b > a for a, b in zip(widths, widths[1:])) and self.corruption is None:
            warnings.warn(f"hidden_layers={hidden} widens somewhere without corruption: an "
                          "overcomplete layer can learn the identity map", UserWarning,
                          stacklevel=2)

        top = self.layers_[0]
        ae = Autoencoder(hidden_layers=hidden[:-1], n_components=hidden[-1],
                         activation=self.activation, code_activation=self.code_activation,
                         output_activation=top.output_activation_, loss=top.loss_,
                         optimizer=self.optimizer, learning_rate=self.learning_rate,
                         batch_size=batch_size, max_epochs=max(1, self.finetune_epochs),
                         weight_decay=self.weight_decay, dtype=self.dtype, n_jobs=self.n_jobs,
                         random_state=int(rng.integers(2**31)), verbose=self.verbose)
        weights = ([layer.get_weights()[0] for layer in self.layers_]
                   + [layer.get_weights()[1] for layer in reversed(self.layers_)])
        _fit_from_weights(ae, X, weights, self.finetune_epochs)
        self.autoencoder_ = ae
        self.loss_curve_ = list(ae.loss_curve_)
        self.n_components_ = hidden[-1]
        return self

    def transform(self, X):
        """Codes of X from the fine-tuned encoder, shape (n_samples, n_components_)."""
        check_is_fitted(self, "autoencoder_")
        return self.autoencoder_.transform(self._validate(X, reset=False))

    def inverse_transform(self, Z):
        """Reconstructions decoded from codes Z, shape (n_samples, n_features_in_)."""
        check_is_fitted(self, "autoencoder_")
        return self.autoencoder_.inverse_transform(Z)

    def reconstruct(self, X):
        """Reconstruction of X through the whole fine-tuned network."""
        check_is_fitted(self, "autoencoder_")
        return self.autoencoder_.reconstruct(self._validate(X, reset=False))

    def reconstruction_error(self, X):
        """Per-sample reconstruction loss of the fine-tuned network."""
        check_is_fitted(self, "autoencoder_")
        return self.autoencoder_.reconstruction_error(self._validate(X, reset=False))

    def score_samples(self, X):
        """Negative reconstruction error per sample: higher means more normal."""
        return -self.reconstruction_error(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            tags.transformer_tags.preserves_dtype = [check_dtype(self.dtype).name]
        except ValueError:
            tags.transformer_tags.preserves_dtype = []
        return tags


def _fit_from_weights(ae, X, weights, n_epochs):
    """Initialise `ae` on X, load `weights`, then train `n_epochs` epochs (0: none).

    ``Autoencoder`` has no public warm start, so this replays what its ``fit``
    does (check, validate, initialise) with the given weights in place of the
    random initialisation, then runs its training loop.
    """
    hidden = ae._check_params()
    X = ae._validate(X, reset=True)
    rng = ae._rng()
    ae._initialize(X, hidden, rng)
    ae._fit_rng = rng
    ae.set_weights(weights)
    if n_epochs > 0:
        ae._run(X, rng, n_epochs, False)
    return ae
