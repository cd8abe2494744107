"""The deep autoencoder estimator: a thin scikit-learn front end to the engine."""
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted, validate_data

from ..engine.backends import INFERENCE_BLOCK_ROWS, get_backend
from ..engine.losses import resolve_loss
from ..engine.network import Network, check_activation
from ..engine.optimizers import Optimizer, OptimizerState
from ..engine.regularizers import (check_corruption, check_sparsity, make_regularization,
                                   part_from_dict)
from ..engine.threads import (ThreadChooser, blas_threads, step_thread_options,
                              threads_for_step)
from ..engine.training import History, TrainingConfig, split_validation, train
from ._random import as_generator
from ._validation import (check_device, check_dtype, check_float, check_int,
                          in_unit_interval)


class Autoencoder(TransformerMixin, BaseEstimator):
    """Deep autoencoder trained by backpropagation in compiled code.

    The encoder maps ``n_features -> hidden_layers -> n_components``; the
    decoder mirrors it back to ``n_features``. Training minimises the mean
    reconstruction loss (plus weight penalties) by mini-batch optimisation;
    every step (gather, forward, loss, backward, update) runs in Cython with
    BLAS, without returning to Python.

    Parameters
    ----------
    hidden_layers : tuple of int, default=(128, 64)
        Widths of the encoder's hidden layers; the decoder mirrors them. ``()``
        maps input and code directly (with identity activations: the linear
        autoencoder).
    n_components : int, default=32
        Width of the code. Larger than ``n_features`` gives an overcomplete code.
    activation : str, default="relu"
        Activation of hidden layers: identity, relu, leaky_relu, tanh, sigmoid,
        softplus.
    code_activation : str, default="identity"
        Activation of the code layer.
    output_activation : str, default="auto"
        Activation of the output layer; ``"auto"`` is sigmoid with the
        cross-entropy loss and identity with MSE.
    loss : {"auto", "mse", "bce"}, default="auto"
        ``"auto"`` uses Bernoulli cross-entropy (computed stably from logits)
        when the training data lie in [0, 1], MSE otherwise. Both are means over
        samples and features.
    optimizer : {"adam", "sgd", "momentum"}, default="adam"
    learning_rate : float, default=1e-3
    momentum : float, default=0.9
        Used by ``optimizer="momentum"``.
    nesterov : bool, default=False
        Nesterov momentum for ``optimizer="momentum"``.
    beta_1, beta_2, epsilon : float
        Adam's hyper-parameters (PyTorch's defaults).
    batch_size : int, default=256
        Rows per step; clipped (with a warning) to the number of training rows.
    max_epochs : int, default=100
    shuffle : bool, default=True
        Shuffle the rows every epoch (through an index; the data are never copied).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows, stop when the validation
        score has not improved by ``tol`` for ``n_iter_no_change`` epochs, and
        keep the best parameters.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
        Epochs without improvement before stopping (on the training loss when
        ``early_stopping`` is False).
    tol : float, default=1e-4
    weight_decay : float, default=0.0
        L2 penalty ``weight_decay / 2 * sum W**2`` on weights (not biases).
    weight_l1 : float, default=0.0
        L1 penalty ``weight_l1 * sum |W|`` on weights (not biases). Plain
        (sub)gradient descent on it drives weights towards zero and makes them
        oscillate around it rather than land on exact zeros: expect many
        near-zero weights (|w| of the order of ``learning_rate``), not a
        sparse matrix.
    sparsity : None, aefast.L1Activity, aefast.KLSparsity or aefast.TopK
        Constraint on the code: an L1 penalty on code activations, Ng's KL
        penalty on their mean (needs ``code_activation="sigmoid"``), or a
        k-sparse code.
    corruption : None, aefast.GaussianNoise, aefast.MaskingNoise or aefast.SaltPepperNoise
        Noise applied to the inputs of each training batch (denoising
        autoencoder); the target stays the clean input, and ``transform`` /
        ``reconstruct`` never corrupt.
    init : {"auto", "he", "glorot"}, default="auto"
        He for the ReLU family, Glorot otherwise (per layer) under ``"auto"``.
    dtype : {"float32", "float64"}, default="float32"
        Floating type of the parameters and computations; inputs are converted.
    device : {"cpu", "auto", "cuda"}, default="cpu"
    n_jobs : int or None, default=None
        Threads of fit and inference. None: a training step whose largest
        GEMM is under 2**20 multiply-adds (batch x layer weights) runs on one
        thread; larger steps are data-parallel over as many threads as BLAS
        is configured for (each thread trains its part of the batch), and
        ``fit`` times that on a few calls against one thread (up to 2**27)
        or BLAS's own threads (beyond), keeps the faster and re-checks
        periodically, since threads that wait on each other slow down
        many-fold when another process shares the cores. Inference runs BLAS
        on one thread below 2**24 (see ``aefast.engine.threads``).
        -1: BLAS as configured, serial steps. A positive value: that many
        threads.
    random_state : int, numpy.random.Generator or None
        Seeds initialisation, shuffling and the validation split.
    verbose : bool, default=False
        Print loss and samples/s every epoch.

    Attributes
    ----------
    network_ : aefast.engine.Network
        Sizes, activations and the flat parameter buffer.
    loss_ : str
        The resolved loss.
    output_activation_ : str
        The resolved output activation.
    loss_curve_ : list of float
        Mean training objective of each epoch.
    validation_scores_ : list of float
        Negative validation loss of each epoch (early stopping only).
    best_validation_score_ : float or None
    n_epochs_ : int
        Epochs trained, summed over fit and partial_fit calls.
    n_features_in_ : int
    dead_fraction_ : float or None
        TopK only: fraction of code units never selected with a non-zero
        value during the last training epoch.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> import aefast
    >>> X = load_digits().data / 16
    >>> ae = aefast.Autoencoder(hidden_layers=(64,), n_components=8, max_epochs=5,
    ...                         random_state=0).fit(X)
    >>> ae.transform(X).shape
    (1797, 8)
    """

    def __init__(self, hidden_layers=(128, 64), n_components=32, activation="relu",
                 code_activation="identity", output_activation="auto", loss="auto",
                 optimizer="adam", learning_rate=1e-3, momentum=0.9, nesterov=False,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, batch_size=256, max_epochs=100,
                 shuffle=True, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=10, tol=1e-4, weight_decay=0.0, weight_l1=0.0,
                 sparsity=None, corruption=None, init="auto", dtype="float32", device="cpu", n_jobs=None,
                 random_state=None, verbose=False):
        self.hidden_layers = hidden_layers
        self.n_components = n_components
        self.activation = activation
        self.code_activation = code_activation
        self.output_activation = output_activation
        self.loss = loss
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.weight_decay = weight_decay
        self.weight_l1 = weight_l1
        self.sparsity = sparsity
        self.corruption = corruption
        self.init = init
        self.dtype = dtype
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        hidden = self._check_layers()
        check_activation(self.code_activation, "code_activation")
        if self.output_activation != "auto":
            check_activation(self.output_activation, "output_activation")
        check_sparsity(self.sparsity, self.n_components, self.code_activation, hidden)
        self._check_training_params()
        return hidden

    def _check_layers(self):
        """Validate hidden_layers, n_components and activation; returns the hidden tuple."""
        try:
            hidden = tuple(self.hidden_layers)
        except TypeError:
            raise TypeError(
                f"hidden_layers must be a sequence of ints, got {self.hidden_layers!r}") from None
        for width in hidden:
            check_int(width, "hidden_layers entries", low=1)
        check_int(self.n_components, "n_components", low=1)
        check_activation(self.activation, "activation")
        return hidden

    def _check_training_params(self):
        """Validate what the training loop, the optimizer and the data type need."""
        check_int(self.batch_size, "batch_size", low=1)
        check_int(self.max_epochs, "max_epochs", low=1)
        check_int(self.n_iter_no_change, "n_iter_no_change", low=1)
        check_float(self.tol, "tol", low=0)
        check_float(self.weight_decay, "weight_decay", low=0)
        check_float(self.weight_l1, "weight_l1", low=0)
        check_corruption(self.corruption)
        if self.early_stopping:
            check_float(self.validation_fraction, "validation_fraction", low=0,
                        low_inclusive=False, high=1)
        if self.n_jobs is not None:
            check_int(self.n_jobs, "n_jobs", low=-1)
        check_dtype(self.dtype)
        self._make_optimizer()  # validates the optimizer before any state is touched

    def _make_optimizer(self):
        return Optimizer(self.optimizer, check_float(self.learning_rate, "learning_rate"),
                         check_float(self.momentum, "momentum"), bool(self.nesterov),
                         check_float(self.beta_1, "beta_1"), check_float(self.beta_2, "beta_2"),
                         check_float(self.epsilon, "epsilon"))

    def _validate(self, X, reset):
        dtype = check_dtype(self.dtype)
        return validate_data(self, X, reset=reset, dtype=dtype, order="C",
                             ensure_min_samples=1)

    def _layer_plan(self, n_features, hidden, output_activation):
        sizes = [n_features, *hidden, self.n_components, *hidden[::-1], n_features]
        acts = ([self.activation] * len(hidden) + [self.code_activation]
                + [self.activation] * len(hidden) + [output_activation])
        return sizes, acts

    def _rng(self):
        return as_generator(self.random_state)

    # --------------------------------------------------------------- training
    def _initialize(self, X, hidden, rng):
        self.device_ = check_device(self.device)  # first: a bad device leaves no state
        self.loss_, self.output_activation_ = resolve_loss(
            self.loss, self.output_activation, in_unit_interval(X))
        sizes, acts = self._layer_plan(X.shape[1], hidden, self.output_activation_)
        self.network_ = Network(sizes, acts, dtype=check_dtype(self.dtype)).initialize(
            rng, self.init)
        self.n_encoder_layers_ = len(hidden) + 1
        if self.n_components > X.shape[1] and self.sparsity is None and self.corruption is None:
            warnings.warn(
                f"n_components={self.n_components} > n_features={X.shape[1]}: an overcomplete "
                "code with no sparsity and no corruption can learn the identity map",
                UserWarning, stacklevel=3)
        # The code constraint is part of the fitted model: inference keeps using it
        # even if the parameter changes later.
        self._code_sparsity = self.sparsity
        self._reset_training_state(rng)

    def _reset_training_state(self, rng):
        """Fresh noise stream, optimizer state and history for a new fit."""
        self._noise_rng = np.random.default_rng(rng.integers(2**63))
        self.dead_fraction_ = None
        self._optimizer_state = OptimizerState(self.network_.n_params, self.network_.dtype)
        self._history = History()
        self.loss_curve_ = self._history.loss_curve
        self.validation_scores_ = self._history.validation_scores
        self.best_validation_score_ = None
        self.n_epochs_ = 0

    def _check_batch_size(self, n_rows):
        if self.batch_size > n_rows:
            warnings.warn(f"batch_size={self.batch_size} is larger than the {n_rows} training "
                          f"rows; it is clipped to {n_rows}", UserWarning, stacklevel=3)
            return n_rows
        return self.batch_size

    def _run(self, X, rng, n_epochs, early_stopping):
        if self.loss_ == "bce" and not in_unit_interval(X):
            raise ValueError("this model was trained with loss='bce', which needs data in [0, 1]")
        if early_stopping:
            train_idx, val_idx = split_validation(X.shape[0], self.validation_fraction, rng)
        else:
            train_idx, val_idx = np.arange(X.shape[0], dtype=np.int64), None
        config = TrainingConfig(
            batch_size=self._check_batch_size(train_idx.shape[0]), max_epochs=self.max_epochs,
            shuffle=self.shuffle, early_stopping=early_stopping,
            n_iter_no_change=self.n_iter_no_change, tol=self.tol,
            weight_decay=self.weight_decay, weight_l1=self.weight_l1, verbose=self.verbose,
            repeat=self._rows_per_input())
        regularization = self._regularization(self.corruption, self._noise_rng)
        backend = get_backend(self.device_, self.network_, self.loss_, regularization)
        rows = config.batch_size * config.repeat
        # Serial or data-parallel steps, BLAS threads: timed as we go when in doubt.
        options = step_thread_options(self.n_jobs, self.network_, rows)
        chooser = getattr(self, "_thread_chooser", None)
        if chooser is None or chooser.options != options:
            # kept across partial_fit calls: its timings stay valid
            chooser = self._thread_chooser = ThreadChooser(options)
        try:
            with blas_threads(options[0].blas if len(options) == 1 else None):
                train(backend, self._make_optimizer(), self._optimizer_state, X, train_idx,
                      val_idx, config, rng, self._history, n_epochs=n_epochs,
                      before_epoch=self._epoch_hook(regularization), thread_chooser=chooser)
        finally:
            self.n_epochs_ = self._history.n_epochs
            if self._history.validation_scores:
                self.best_validation_score_ = self._history.best_validation_score
            if self._code_sparsity is not None and self._code_sparsity.kind == "topk":
                self.dead_fraction_ = float(np.mean(regularization.fired == 0))
        return self

    def _rows_per_input(self):
        """How many times each training row enters its batch (the VAE's n_samples)."""
        return 1

    def _epoch_hook(self, regularization):
        """Called before each epoch by the training loop (None: nothing to do)."""
        return None

    def _regularization(self, corruption=None, noise_rng=None):
        """The compiled step's view of the code constraint (and corruption)."""
        make = make_regularization
        if getattr(self, "device_", "cpu") == "cuda":
            from ..engine.cuda_backend import make_regularization as make
        return make(self._code_sparsity, corruption, self.n_encoder_layers_,
                                   self.n_components, noise_rng)

    def _blas_threads(self, rows=INFERENCE_BLOCK_ROWS):
        """BLAS thread limit for steps of `rows` rows (see aefast.engine.threads)."""
        return blas_threads(threads_for_step(self.n_jobs, self.network_, rows))

    def fit(self, X, y=None):
        """Train from a fresh initialisation.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; a float32 C-contiguous array or memmap is used in
            place, anything else is converted once.
        y : ignored

        Returns
        -------
        self
        """
        hidden = self._check_params()
        X = self._validate(X, reset=True)
        rng = self._rng()
        self._initialize(X, hidden, rng)
        self._fit_rng = rng
        return self._run(X, rng, None, self.early_stopping)

    def partial_fit(self, X, y=None):
        """Train one epoch on X, initialising the model on the first call.

        Returns
        -------
        self
        """
        first = not hasattr(self, "network_")
        hidden = self._check_params()
        X = self._validate(X, reset=first)
        if first:
            rng = self._rng()
            self._initialize(X, hidden, rng)
            self._fit_rng = rng
        return self._run(X, self._fit_rng, 1, False)

    # -------------------------------------------------------------- inference
    def _backend(self):
        return get_backend(self.device_, self.network_, self.loss_, self._regularization())

    def _forward(self, X, first, last):
        with self._blas_threads():
            return self._backend().forward(X, first, last)

    def transform(self, X):
        """Codes of X, shape (n_samples, n_components)."""
        check_is_fitted(self, "network_")
        X = self._validate(X, reset=False)
        return self._forward(X, 0, self.n_encoder_layers_)

    def inverse_transform(self, Z):
        """Reconstructions decoded from codes Z, shape (n_samples, n_features)."""
        check_is_fitted(self, "network_")
        Z = check_array(Z, dtype=self.network_.dtype, order="C", input_name="Z")
        if Z.shape[1] != self.n_components:
            raise ValueError(
                f"Z has {Z.shape[1]} columns, but the code has {self.n_components} components")
        return self._forward(Z, self.n_encoder_layers_, self.network_.n_layers)

    def reconstruct(self, X):
        """Reconstruction of X through the whole network (outputs, not logits)."""
        check_is_fitted(self, "network_")
        X = self._validate(X, reset=False)
        return self._forward(X, 0, self.network_.n_layers)

    def reconstruction_error(self, X):
        """Per-sample reconstruction loss (the training loss, mean over features)."""
        check_is_fitted(self, "network_")
        X = self._validate(X, reset=False)
        if self.loss_ == "bce" and not in_unit_interval(X):
            raise ValueError("the cross-entropy loss needs data in [0, 1]")
        with self._blas_threads():
            return self._backend().row_losses(X)

    def score_samples(self, X):
        """Negative reconstruction error per sample: higher means more normal."""
        return -self.reconstruction_error(X)

    def score(self, X, y=None):
        """Mean of ``score_samples``: the negative mean reconstruction loss."""
        return float(np.mean(self.score_samples(X)))

    def get_weights(self):
        """Copies of each layer's ``(W, b)``, W of shape (n_in, n_out), encoder first."""
        check_is_fitted(self, "network_")
        net = self.network_
        return [(net.weight(l).copy(), net.bias(l).copy()) for l in range(net.n_layers)]

    def set_weights(self, weights):
        """Set each layer's ``(W, b)`` (shapes as returned by ``get_weights``)."""
        check_is_fitted(self, "network_")
        net = self.network_
        if len(weights) != net.n_layers:
            raise ValueError(f"expected {net.n_layers} (W, b) pairs, got {len(weights)}")
        for layer, (W, b) in enumerate(weights):
            if np.shape(W) != net.weight(layer).shape or np.shape(b) != net.bias(layer).shape:
                raise ValueError(f"layer {layer}: expected shapes {net.weight(layer).shape} "
                                 f"and {net.bias(layer).shape}")
            if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
                raise ValueError(f"layer {layer}: weights must be finite")
        for layer, (W, b) in enumerate(weights):
            net.weight(layer)[...] = W
            net.bias(layer)[...] = b
        return self

    # ------------------------------------------------------------- save/load
    def _get_fitted_state(self):
        """(JSON-able dict, dict of arrays) describing the fitted model."""
        meta = {
            "network": self.network_.to_state(),
            "loss": self.loss_,
            "output_activation": self.output_activation_,
            "n_encoder_layers": self.n_encoder_layers_,
            "device": self.device_,
            "n_features_in": self.n_features_in_,
            "loss_curve": [float(v) for v in self.loss_curve_],
            "validation_scores": [float(v) for v in self.validation_scores_],
            "best_validation_score": self.best_validation_score_,
            "n_epochs": self.n_epochs_,
            "code_sparsity": None if self._code_sparsity is None else self._code_sparsity.to_dict(),
            "dead_fraction": self.dead_fraction_,
        }
        arrays = {"params": self.network_.params, **self._optimizer_state.to_arrays()}
        return meta, arrays

    def _set_fitted_state(self, meta, arrays):
        hidden = self._check_params()
        self.network_ = Network.from_state(meta["network"], arrays["params"])
        expected = self._layer_plan(int(meta["n_features_in"]), hidden, meta["output_activation"])
        if ([int(s) for s in self.network_.sizes], list(self.network_.activations)) != expected:
            raise ValueError("the saved network does not match the saved parameters")
        self.loss_ = meta["loss"]
        self.output_activation_ = meta["output_activation"]
        self.n_encoder_layers_ = int(meta["n_encoder_layers"])
        # A model trained on a GPU still loads where there is none: it then runs
        # on the CPU (the parameters are host arrays either way).
        self.device_ = "cpu" if meta["device"] == "cpu" else check_device("auto")
        self.n_features_in_ = int(meta["n_features_in"])
        self._optimizer_state = OptimizerState.from_arrays(
            arrays, self.network_.n_params, self.network_.dtype)
        self._history = History(loss_curve=list(meta["loss_curve"]),
                                validation_scores=list(meta["validation_scores"]),
                                n_epochs=int(meta["n_epochs"]))
        self.loss_curve_ = self._history.loss_curve
        self.validation_scores_ = self._history.validation_scores
        self.best_validation_score_ = meta["best_validation_score"]
        self.n_epochs_ = int(meta["n_epochs"])
        self._fit_rng = self._rng()
        sparsity = meta.get("code_sparsity")
        self._code_sparsity = None if sparsity is None else part_from_dict(sparsity)
        self.dead_fraction_ = meta.get("dead_fraction")
        self._noise_rng = np.random.default_rng(self._fit_rng.integers(2**63))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            tags.transformer_tags.preserves_dtype = [check_dtype(self.dtype).name]
        except ValueError:
            tags.transformer_tags.preserves_dtype = []
        return tags
