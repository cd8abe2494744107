"""The variational autoencoder: the engine with a Gaussian-sampling bottleneck.

The VAE is the same network and the same compiled training step as
:class:`~aefast.Autoencoder`, with one part plugged in: the encoder's last
(linear) layer emits ``[mu | log sigma^2]`` and the decoder reads
``z = mu + sigma * eps`` sampled inside the compiled step (see
:mod:`aefast.engine.bottleneck`). The objective is the negative ELBO per
sample, ``-log p(x|z) + beta * KL(q(z|x) || N(0, I))``, summed over features
and averaged over the batch.
"""
import numbers

import numpy as np
from scipy.special import logsumexp
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from ..engine.bottleneck import LOGVAR_MAX, LOGVAR_MIN
from ..engine.network import Network
from ..engine.regularizers import make_regularization
from ._random import as_generator
from ._validation import check_device, check_dtype, check_float, check_int, in_unit_interval
from .autoencoder import Autoencoder

LIKELIHOODS = ("bernoulli", "gaussian")
# Rows decoded per call of the importance-weighted likelihood: bounds its memory.
_LOG_LIKELIHOOD_ROWS = 65_536


class VAE(Autoencoder):
    """Variational autoencoder (Kingma & Welling 2014) trained by the compiled engine.

    Parameters
    ----------
    hidden_layers : sequence of int, default=(400,)
        Hidden widths of the encoder; the decoder mirrors them. ``()`` gives
        the linear VAE (linear encoder and decoder).
    n_components : int, default=20
        Dimension of the latent z. The encoder's last layer has
        ``2 * n_components`` linear outputs: the means and log-variances of
        q(z|x) = N(mu, diag sigma^2).
    likelihood : {"bernoulli", "gaussian"}, default="bernoulli"
        p(x|z). ``"bernoulli"``: the decoder outputs logits and the
        cross-entropy is computed stably from them; the data must lie in
        [0, 1]. Values strictly between 0 and 1 are used as they are, as soft
        targets (what most VAE code does with grey-level images); they are not
        binarized, and then ``elbo`` and ``log_likelihood`` are not those of a
        normalized density of the grey levels (the continuous Bernoulli is not
        implemented). Binarize first (``X > 0.5``, or stochastically) for
        likelihoods comparable with the literature. ``"gaussian"``: the decoder
        outputs the mean; the variance is ``output_variance``.
    output_variance : float or "learned", default=1.0
        Gaussian likelihood only: a fixed variance for every feature, or
        ``"learned"``: one log-variance per feature, trained with the network
        (clamped like the encoder's, see below).
    beta : float, default=1.0
        Weight of the KL term (beta-VAE).
    kl_warmup_epochs : int, default=0
        Linear KL warm-up: in epoch ``e`` (counted from 0 over all fits and
        partial fits) the KL weight is ``beta * min(1, e / kl_warmup_epochs)``,
        so the first epoch trains the reconstruction alone.
    n_samples : int, default=1
        Monte-Carlo samples of z per input in training. Each input enters its
        batch ``n_samples`` times (its encoder pass is repeated), so the
        gradient is the average over the samples.
    activation : str, default="relu"
        Activation of the hidden layers.
    corruption : GaussianNoise, MaskingNoise, SaltPepperNoise or None
        Optional input corruption in training (a denoising VAE).
    optimizer, learning_rate, momentum, nesterov, beta_1, beta_2, epsilon,
    batch_size, max_epochs, shuffle, early_stopping, validation_fraction,
    n_iter_no_change, tol, weight_decay, weight_l1, init, dtype, device,
    n_jobs, random_state, verbose
        As in :class:`~aefast.Autoencoder`. ``batch_size`` counts inputs (not
        Monte-Carlo samples); early stopping watches the one-sample ELBO of
        the validation rows.

    Attributes
    ----------
    loss_curve_ : list of float
        Training negative ELBO per sample, one entry per epoch (with the KL
        weight of that epoch and the weight penalties).
    validation_scores_ : list of float
        Validation ELBO per sample when ``early_stopping``.
    n_epochs_ : int
    network_ : aefast.engine.network.Network

    Notes
    -----
    Stability: the encoder's log-variances are clamped to
    ``[LOGVAR_MIN, LOGVAR_MAX] = [-20, 10]`` before use (no gradient flows
    where the clamp is active), so ``exp`` never overflows and sigma never
    reaches 0; the Bernoulli cross-entropy is computed from logits. A
    non-finite loss or gradient stops training with
    :class:`~aefast.TrainingDivergedError` and keeps the last finite
    parameters.
    """

    # Autoencoder parts that a VAE does not have; its methods read them.
    sparsity = None
    code_activation = "identity"

    def __init__(self, hidden_layers=(400,), n_components=20, likelihood="bernoulli",
                 output_variance=1.0, beta=1.0, kl_warmup_epochs=0, n_samples=1,
                 activation="relu", corruption=None, optimizer="adam", learning_rate=1e-3,
                 momentum=0.9, nesterov=False, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 batch_size=128, max_epochs=100, shuffle=True, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, weight_decay=0.0,
                 weight_l1=0.0, init="auto", dtype="float32", device="cpu", n_jobs=None,
                 random_state=None, verbose=False):
        self.hidden_layers = hidden_layers
        self.n_components = n_components
        self.likelihood = likelihood
        self.output_variance = output_variance
        self.beta = beta
        self.kl_warmup_epochs = kl_warmup_epochs
        self.n_samples = n_samples
        self.activation = activation
        self.corruption = corruption
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
        self.init = init
        self.dtype = dtype
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        hidden = self._check_layers()
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood={self.likelihood!r} is not supported; choose "
                             "'bernoulli' or 'gaussian'")
        self._obs_log_variance()
        check_float(self.beta, "beta", low=0)
        check_int(self.kl_warmup_epochs, "kl_warmup_epochs", low=0)
        check_int(self.n_samples, "n_samples", low=1)
        self._check_training_params()
        return hidden

    def _obs_log_variance(self):
        """None for a learned Gaussian variance, else the fixed log-variance."""
        v = self.output_variance
        if isinstance(v, str):
            if v != "learned":
                raise ValueError(f"output_variance must be a positive number or 'learned', "
                                 f"got {v!r}")
            return None
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"output_variance must be a positive number or 'learned', "
                            f"got {v!r}")
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"output_variance must be a positive number, got {v!r}")
        return float(np.log(v))

    def _learned_variance(self):
        return self.likelihood == "gaussian" and self._obs_log_variance() is None

    # ---------------------------------------------------------------- network
    def _layer_plan(self, n_features, hidden, output_activation):
        k = self.n_components
        sizes = [n_features, *hidden, 2 * k, *hidden[::-1], n_features]
        acts = ([self.activation] * len(hidden) + ["identity"]
                + [self.activation] * len(hidden) + [output_activation])
        return sizes, acts

    def _initialize(self, X, hidden, rng):
        self.device_ = check_device(self.device)  # first: a bad device leaves no state
        if self.likelihood == "bernoulli":
            if not in_unit_interval(X):
                raise ValueError("likelihood='bernoulli' needs data in [0, 1]; scale the data "
                                 "(e.g. divide pixels by 255) or use likelihood='gaussian'")
            self.loss_, self.output_activation_ = "bce", "sigmoid"
        else:
            self.loss_, self.output_activation_ = "gaussian", "identity"
        sizes, acts = self._layer_plan(X.shape[1], hidden, self.output_activation_)
        self.n_encoder_layers_ = len(hidden) + 1
        self.network_ = Network(
            sizes, acts, dtype=check_dtype(self.dtype), n_latent=self.n_components,
            vae_block=self.n_encoder_layers_,
            n_extra=X.shape[1] if self._learned_variance() else 0).initialize(rng, self.init)
        self._code_sparsity = None
        self._reset_training_state(rng)

    def _rows_per_input(self):
        return int(self.n_samples)

    def _kl_weight(self, epochs_done):
        if self.kl_warmup_epochs and epochs_done < self.kl_warmup_epochs:
            return float(self.beta) * epochs_done / self.kl_warmup_epochs
        return float(self.beta)

    def _epoch_hook(self, regularization):
        def set_kl_weight(epochs_done):
            regularization.kl_weight = self._kl_weight(epochs_done)
        return set_kl_weight

    def _regularization(self, corruption=None, noise_rng=None):
        """The compiled step's bottleneck; ``noise_rng`` draws eps (and the corruption)."""
        if noise_rng is None:
            # Inference that does not sample (transform, decode) still needs the part.
            noise_rng = np.random.default_rng(0)
        log_var = self._obs_log_variance()
        learned = self.loss_ == "gaussian" and log_var is None
        make = make_regularization
        if getattr(self, "device_", "cpu") == "cuda":
            from ..engine.cuda_backend import make_regularization as make
        return make(
            None, corruption, self.n_encoder_layers_, 2 * self.n_components, noise_rng,
            gaussian=True, n_latent=self.n_components,
            kl_weight=self._kl_weight(getattr(self, "n_epochs_", 0)),
            obs_off=self.network_.extra_off if learned else -1,
            obs_logvar=0.0 if log_var is None else log_var)

    def _sampling_backend(self, random_state):
        from ..engine.backends import get_backend

        rng = as_generator(random_state)
        return get_backend(self.device_, self.network_, self.loss_,
                           self._regularization(None, rng))

    def _check_likelihood_data(self, X):
        if self.loss_ == "bce" and not in_unit_interval(X):
            raise ValueError("likelihood='bernoulli' needs data in [0, 1]")

    # -------------------------------------------------------------- inference
    def _posterior(self, X):
        stats = self._forward(X, 0, self.n_encoder_layers_)
        k = self.n_components
        return stats[:, :k], np.clip(stats[:, k:], LOGVAR_MIN, LOGVAR_MAX)

    def transform(self, X):
        """Posterior means E[z | x], shape (n_samples, n_components); deterministic."""
        check_is_fitted(self, "network_")
        X = self._validate(X, reset=False)
        return self._posterior(X)[0]

    def posterior(self, X):
        """Posterior means and (clamped) log-variances of q(z|x), each (n_samples, n_components)."""
        check_is_fitted(self, "network_")
        X = self._validate(X, reset=False)
        return self._posterior(X)

    def inverse_transform(self, Z):
        """Decoder means E[x | z] for latents Z (Bernoulli: probabilities)."""
        return super().inverse_transform(Z)

    def reconstruct(self, X):
        """Decoder mean at the posterior mean: E[x | z = E[z | x]] (no sampling)."""
        return super().reconstruct(X)

    def reconstruction_error(self, X):
        """Reconstruction NLL at the posterior mean, averaged over features, per sample."""
        check_is_fitted(self, "network_")
        X = self._validate(X, reset=False)
        self._check_likelihood_data(X)
        with self._blas_threads():
            rec, _ = self._backend().vae_rows(X, sample=False)
        return rec / X.shape[1]

    def elbo(self, X, n_samples=1, random_state=None, return_parts=False):
        """Per-sample evidence lower bound, averaged over ``n_samples`` draws of z.

        Parameters
        ----------
        X : array-like of shape (n, n_features)
        n_samples : int, default=1
            Draws of z ~ q(z|x) averaged per sample.
        random_state : int, Generator or None
            Source of the draws.
        return_parts : bool, default=False
            Also return the reconstruction term E[log p(x|z)] and the KL term.

        Returns
        -------
        elbo : ndarray of shape (n,)
            ``E_q[log p(x|z)] - KL(q(z|x) || p(z))`` in nats (the KL at
            weight 1, whatever ``beta`` was in training).
        reconstruction, kl : ndarrays of shape (n,)
            Only with ``return_parts``; ``elbo = reconstruction - kl``.
        """
        check_is_fitted(self, "network_")
        check_int(n_samples, "n_samples", low=1)
        X = self._validate(X, reset=False)
        self._check_likelihood_data(X)
        backend = self._sampling_backend(random_state)
        rec = np.zeros(X.shape[0])
        with self._blas_threads():
            for _ in range(n_samples):
                r, kl = backend.vae_rows(X, sample=True)
                rec -= r
        rec /= n_samples
        elbo = rec - kl
        return (elbo, rec, kl) if return_parts else elbo

    def log_likelihood(self, X, n_samples=1000, random_state=None):
        """Importance-weighted estimate of log p(x) per sample (the IWAE bound).

        ``log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)`` with ``z_k ~ q(z|x)``,
        computed with log-sum-exp. It is a lower bound on log p(x) that
        increases with K (in expectation) and equals the ELBO for K = 1. The
        decodes run in batches of at most 65,536 rows, so K = 5,000 fits in
        memory.

        Parameters
        ----------
        X : array-like of shape (n, n_features)
        n_samples : int, default=1000
            K, importance samples per input.
        random_state : int, Generator or None

        Returns
        -------
        ndarray of shape (n,), in nats.
        """
        check_is_fitted(self, "network_")
        K = check_int(n_samples, "n_samples", low=1)
        X = self._validate(X, reset=False)
        self._check_likelihood_data(X)
        rng = as_generator(random_state)
        backend = self._sampling_backend(0)
        mu, log_var = (a.astype(np.float64) for a in self._posterior(X))
        sd = np.exp(0.5 * log_var)
        k = self.n_components
        out = np.empty(X.shape[0])
        per_call = max(1, _LOG_LIKELIHOOD_ROWS // K)
        log_2pi = np.log(2 * np.pi)
        with self._blas_threads():
            for start in range(0, X.shape[0], per_call):
                rows = np.arange(start, min(start + per_call, X.shape[0]), dtype=np.int64)
                eps = rng.standard_normal((rows.shape[0], K, k))
                z = mu[rows, None, :] + sd[rows, None, :] * eps
                log_q = -0.5 * (np.sum(eps * eps, axis=2)
                                + np.sum(log_var[rows], axis=1)[:, None] + k * log_2pi)
                log_p = -0.5 * (np.sum(z * z, axis=2) + k * log_2pi)
                z_rows = np.ascontiguousarray(z.reshape(-1, k), dtype=self.network_.dtype)
                rec = backend.decode_losses(z_rows, X, np.repeat(rows, K)).reshape(-1, K)
                out[rows] = logsumexp(log_p - log_q - rec, axis=1) - np.log(K)
        return out

    def score_samples(self, X):
        """Deterministic ELBO per sample: higher means more normal.

        ``log p(x | z = mu) - KL(q(z|x) || p(z))``: the reconstruction term
        taken at the posterior mean instead of averaged over q (its
        zeroth-order approximation), so that each row's score depends on
        that row alone, with no sampling noise. ``elbo`` and
        ``log_likelihood`` give the sampled estimates.
        """
        check_is_fitted(self, "network_")
        X = self._validate(X, reset=False)
        self._check_likelihood_data(X)
        with self._blas_threads():
            rec, kl = self._backend().vae_rows(X, sample=False)
        return -(rec + kl)

    def score(self, X, y=None):
        """Mean of ``score_samples``."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None, return_latent=False):
        """Draw z ~ N(0, I) and decode: the decoder means of ``n_samples`` new samples.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            E[x | z] (Bernoulli: pixel probabilities).
        Z : ndarray of shape (n_samples, n_components)
            Only with ``return_latent``.
        """
        check_is_fitted(self, "network_")
        n = check_int(n_samples, "n_samples", low=1)
        rng = as_generator(random_state)
        Z = rng.standard_normal((n, self.n_components)).astype(self.network_.dtype)
        X = self.inverse_transform(Z)
        return (X, Z) if return_latent else X

    def interpolate(self, x_a, x_b, n_steps=10):
        """Decoder means along the straight line between the posterior means of two inputs.

        Parameters
        ----------
        x_a, x_b : array-like of shape (n_features,) or (1, n_features)
        n_steps : int, default=10
            Points on the line, both ends included.

        Returns
        -------
        ndarray of shape (n_steps, n_features)
        """
        check_is_fitted(self, "network_")
        n_steps = check_int(n_steps, "n_steps", low=2)
        ends = []
        for name, x in (("x_a", x_a), ("x_b", x_b)):
            x = check_array(np.atleast_2d(x), dtype=self.network_.dtype, input_name=name)
            if x.shape != (1, self.n_features_in_):
                raise ValueError(f"{name} must be one sample of {self.n_features_in_} "
                                 f"features, got shape {x.shape}")
            ends.append(self.transform(x)[0])
        t = np.linspace(0.0, 1.0, n_steps, dtype=self.network_.dtype)[:, None]
        return self.inverse_transform((1 - t) * ends[0] + t * ends[1])

    @property
    def output_variance_(self):
        """Per-feature variance of the Gaussian likelihood (None for Bernoulli)."""
        check_is_fitted(self, "network_")
        if self.loss_ != "gaussian":
            return None
        log_var = self._obs_log_variance()
        if log_var is None:
            return np.exp(np.clip(self.network_.extra().astype(np.float64),
                                  LOGVAR_MIN, LOGVAR_MAX))
        return np.full(self.n_features_in_, np.exp(log_var))
