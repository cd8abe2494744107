"""Streaming PCA with Hebbian rules: Oja, Sanger (GHA), Oja's subspace rule, block Oja.

Design
------
The estimator streams 2-D chunks (an array or memmap sliced into views, or any
iterable of chunks, see :func:`aefast.data.iter_chunks`) and keeps a small
state between them, never the data:

* ``_W`` (k, d): the weights of the learning rule (rows are neurons);
* ``_B`` (k, d): an orthonormal basis of their span (``_W`` itself for the
  methods that re-orthonormalise, ``orth(_W)`` for ``gha`` and ``oja``);
* ``_M`` (k, k): the scatter matrix of the stream projected on ``_B``,
  merged chunk by chunk with the parallel-variance formula of Chan et al.
  (exact mean shifts, no ``sum x^2 - n mean^2`` cancellation) and rotated into
  the new basis after every update (``T^T M T`` with ``T = B_old B_new^T``);
* the running mean, the effective sample count and the total scatter, in
  float64.

The first chunk is a warm start: the top ``k + 1`` eigenpairs of its
covariance (exact for small problems, randomized subspace iteration until the
Ritz values settle otherwise) initialise ``_W`` and estimate the eigengap
``g = lambda_k - lambda_{k+1}`` that scales the ``"auto"`` learning rate
``eta_t = c / (g (t + t0))``. Every later chunk first updates the running mean
(so the subspace is learnt on centred data), then applies the rule:

* ``oja`` / ``gha`` / ``subspace``: one compiled Numba call per chunk that
  loops over its samples (:mod:`aefast._kernels.cpu`), centring on the fly;
* ``block``: ``W <- QR(W + X_c^T diag(eta) X_c W)`` with two skinny GEMMs
  (NumPy/BLAS) on the uncentred chunk; the mean corrections, the rates and
  the QR are folded into two Numba kernels around the second GEMM
  (``block_oja_scale``, ``block_oja_basis``), so the chunk is never copied.

The Q of every thin QR (block, subspace, the Ritz basis of gha/oja) comes
from a Numba Gram-Schmidt kernel (``orthonormalize_rows``, float64, twice)
rather than LAPACK ``geqrf``: on 2 shared cores the many small multithreaded
BLAS calls inside ``geqrf`` on a 784 x 16 matrix took up to 15 ms each and
dominated the block method (measured with cProfile on Fashion-MNIST). The
chunk's mean, total scatter and finiteness check come from one pass of the
``chunk_moments`` kernel, so scikit-learn's separate finiteness pass is
skipped for streamed chunks.

The overlap ``B_old B_new^T`` that carries ``_M`` into the new basis is
replaced by its orthogonal polar factor, computed by Newton-Schulz iterations
(``polar_factor``; LAPACK SVD only if they do not converge): at 16 x 16 the
SVD's call overhead was 7% of a Fashion-MNIST pass.

``components_`` come from a Rayleigh-Ritz step on ``_M``: its eigenvectors
rotate ``_B`` into orthonormal directions ordered by the variance they
capture, and its eigenvalues are ``explained_variance_``. Because ``_M``
accumulates projections taken with the basis of the moment, the variances
are estimates that become exact as the basis settles.

Block eigengap and clock offset. When a chunk has fewer rows than columns
(d = 20,000, chunks of 1,000), its sample spectrum has a noise bulk reaching
``(1 + sqrt(d / b))^2`` times the noise level, which hides the gap: the
first-chunk estimate was 0.1 where the true gap was 10, every block step was
then 100x too large, i.e. a power iteration on the latest chunk alone, and the
subspace stayed at one chunk's accuracy (largest angle 0.9 rad where exact PCA
reaches 0.32). So ``block`` re-estimates ``g`` on every chunk from held-out
statistics: ``lambda_k`` is the k-th Ritz value of the chunk's scatter
projected on the basis that has not seen it yet (no in-sample upward bias) and
``lambda_{k+1}`` the scatter per dimension the basis leaves out (the noise
level; below ``lambda_{k+1}`` on a decaying spectrum, where ``g`` then tends
to ``lambda_k`` minus the mean tail variance, the rate that suits the captured
variance). The estimate is used from the next chunk on, so the rates of a
chunk are known before its projections (the GPU path fuses both). Its
``t0="auto"`` clock offset ``sqrt(b tr(C) lambda_k) / g`` keeps the random part
of one chunk's step, ``eta (X_c^T X_c - b C) w`` of norm about
``eta sqrt(b tr(C) lambda_k)``, below ``c``: it shrinks the first steps when
the chunks are small against ``d`` and is small otherwise (about 450
samples on Fashion-MNIST, 2,000 at d = 20,000, chunks of 1,000).

A chunk is applied atomically: it is validated first (NaN, inf, number of
features) and the new state is built from copies, so a rejected or diverging
chunk leaves the estimator exactly as it was before that chunk.
"""

import contextlib
import numbers

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils.validation import check_is_fitted, validate_data

from .._kernels import cpu as _cpu
from ..data import is_chunk_iterable, iter_chunks
from ..exceptions import TrainingDivergedError
from ._random import as_generator
from ._validation import check_device, check_dtype

__all__ = ["OjaPCA"]

_METHODS = ("block", "oja", "gha", "subspace")
_PER_SAMPLE = ("oja", "gha", "subspace")

# Warm start: exact eigendecomposition up to this size of the smaller side of
# the first chunk, randomized subspace iteration beyond it.
_EXACT_WARM_START_MAX = 256
_WARM_START_ITER = 4  # at least this many iterations
_WARM_START_MAX_ITER = 20  # at most this many
_WARM_START_RTOL = 5e-3  # stop when the top Ritz values change less than this
# chunks smaller than this (in samples) are pooled for the held-out eigengap
_GAP_POOL = 256.0

_BLAS_CONTROLLER = []  # one threadpoolctl controller, built on first use


def _blas_threads(n):
    """Context limiting BLAS to ``n`` threads (a no-op for ``n=None``)."""
    if n is None:
        return contextlib.nullcontext()
    if not _BLAS_CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0].limit(limits=n, user_api="blas")


def _orth_rows(W):
    """Orthonormal rows spanning W's, in Gram-Schmidt order (float64, C order).

    A numerically rank-deficient W gives NaN rows (caught as divergence).
    """
    out = np.empty(W.shape, dtype=np.float64)
    _cpu.orthonormalize_rows(np.ascontiguousarray(W), out)
    return out


def _check_finite_chunk(sq, X, start):
    """Raise like scikit-learn if the chunk's sum of squares shows NaN or inf."""
    if np.isfinite(sq):
        return
    where = f" (in the chunk starting at sample {start})"
    if np.isnan(X).any():
        raise ValueError(f"Input X contains NaN{where}.")
    if not np.isfinite(X).all():
        raise ValueError(f"Input X contains infinity{where}.")
    raise ValueError(
        f"Input X contains values too large for a sum of squares in float64{where}."
    )


def _flip_signs(C):
    """Make the largest-magnitude entry of every row positive (svd_flip convention)."""
    idx = np.argmax(np.abs(C), axis=1)
    s = np.sign(C[np.arange(C.shape[0]), idx])
    s[s == 0] = 1
    return C * s[:, np.newaxis]


class OjaPCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Streaming principal component analysis with Hebbian learning rules.

    Learns the top ``n_components`` principal subspace of a stream of samples
    in one pass, with memory independent of the number of samples: an array,
    a ``numpy.memmap`` (read chunk by chunk, never copied whole) or any
    iterable of 2-D chunks, continued with :meth:`partial_fit`.

    Parameters
    ----------
    n_components : int, default=2
        Number of components ``k``, ``1 <= k <= n_features``; must be 1 for
        ``method="oja"``.
    method : {"block", "oja", "gha", "subspace"}, default="block"
        Learning rule.

        - ``"block"``: mini-batch Oja, ``W <- QR(W + X_b^T diag(eta) X_b W)``
          per chunk, two GEMMs per chunk (fastest);
        - ``"oja"``: the single-neuron rule ``w <- w + eta y (x - y w)``;
        - ``"gha"``: Sanger's generalized Hebbian algorithm, one sample at a
          time in O(d k) per sample; its neurons converge to the individual
          eigenvectors;
        - ``"subspace"``: Oja's subspace rule ``W <- W + eta y (x - W^T y)^T``,
          one sample at a time, re-orthonormalised once per chunk.
    learning_rate : "auto", float or callable, default="auto"
        ``"auto"``: ``eta_t = c / (g (t + t0))`` where ``t`` is the number of
        samples seen before the sample (the warm-start chunk included) and
        ``g`` the eigengap, estimated on the first chunk and, for ``block``,
        re-estimated on every chunk from held-out projections (see
        ``eigengap_``); for the per-sample
        rules it is capped at ``1 / max ||x - mean||^2`` over the samples seen
        so far, which keeps every step of a unit neuron stable. A float
        is a constant rate. A callable receives the float64 array of ``t``
        for the samples of a chunk and returns their rates (an array of the
        same shape, or a scalar).
    batch_size : int, default=1000
        Rows per chunk. The first chunk is the warm start and needs at least
        ``n_components + 2`` rows (``n_components + 1`` without centring).
        ``fit`` and ``partial_fit`` split their input into chunks of this size,
        so the result depends on ``batch_size`` only, not on how an iterable
        happens to be chunked.
    center : bool, default=True
        Centre the stream on its running mean. Without centring, the rules
        find the top eigenvectors of the second-moment matrix, which is not
        the principal subspace of non-zero-mean data.
    random_state : int, numpy.random.Generator, RandomState or None, default=None
        Seeds the randomized warm start (used when both sides of the first
        chunk exceed 256). The same seed gives the same result.
    forgetting_factor : float in (0, 1] or None, default=None
        Track a drifting stream: sample ``j`` of the past is down-weighted by
        ``forgetting_factor ** age`` in the mean and the statistics, and the
        clock ``t`` of the learning rate becomes the effective number of
        samples, which saturates at ``1 / (1 - forgetting_factor)`` so the
        rate no longer decays to zero. ``None`` (or 1) keeps all of the past.
    c : float, default=1.0
        Numerator of the ``"auto"`` learning rate.
    t0 : float >= 0 or "auto", default="auto"
        Offset of the clock in the ``"auto"`` learning rate. ``"auto"``: 0 for
        the per-sample rules (their rates are capped per sample); for
        ``block``, ``sqrt(b tr(C) lambda_k) / g`` recomputed on every chunk
        (``b`` rows per chunk, ``tr(C)`` the running total variance,
        ``lambda_k`` and ``g`` the current estimates), the offset that keeps
        the random part of one chunk's update below ``c`` in norm.
    dtype : {"float32", "float64"} or None, default="float32"
        Float type of the computation and of the outputs. ``None`` keeps
        float32 and float64 inputs as they are and converts other inputs to
        float64.
    n_jobs : int or None, default=None
        BLAS threads during ``fit``/``partial_fit`` (through threadpoolctl,
        restored afterwards). ``None``: ``block`` uses BLAS as configured;
        the per-sample methods run BLAS on 1 thread, because their BLAS work
        is small and idle BLAS workers spinning between calls steal the core
        from the single-threaded Numba loop. ``-1``: leave BLAS as configured.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where the per-chunk work runs: with ``"cuda"`` each chunk is uploaded
        once and its moments, projections and the learning rule run on the GPU
        (:mod:`aefast._kernels.cuda`); the small k x k and d x k algebra stays on
        the host. ``"auto"`` uses a GPU when one is usable.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Orthonormal principal axes, ordered by decreasing explained variance
        (the sign of each row makes its largest-magnitude entry positive).
    explained_variance_ : ndarray of shape (n_components,)
        Variance of the stream along each component (estimated from the
        projections seen while streaming, denominator ``n - 1``).
    explained_variance_ratio_ : ndarray of shape (n_components,)
        ``explained_variance_`` divided by the total variance of the stream.
    mean_ : ndarray of shape (n_features,)
        Running mean of the stream (zeros when ``center=False``).
    n_samples_seen_ : int
        Number of samples processed.
    eigengap_ : float
        The eigengap ``lambda_k - lambda_{k+1}`` used by the ``"auto"`` rate:
        estimated on the warm-start chunk, then for ``block`` on every chunk
        from held-out statistics (``lambda_k``: the k-th Ritz value of the
        chunk projected on the basis learnt before it; ``lambda_{k+1}``: the
        variance per dimension left outside that basis).
    n_components_ : int
        Number of components.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features, when the input had string column names.

    See Also
    --------
    sklearn.decomposition.IncrementalPCA : Exact PCA on all the data seen, by
        incremental SVD; slower per sample.

    Notes
    -----
    The learning rules and the ``"auto"`` schedule follow Oja (1982), Sanger
    (1989), Oja (1989) and, for the rate ``c / (g (t + t0))``, Balsubramani,
    Dasgupta and Freund (2013) and Jain et al. (2016).

    Examples
    --------
    >>> import numpy as np
    >>> from aefast.models.oja import OjaPCA
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((5000, 20)) * np.linspace(3, 0.5, 20)
    >>> pca = OjaPCA(n_components=3, method="block", random_state=0).fit(X)
    >>> pca.components_.shape
    (3, 20)
    >>> chunks = (X[i:i + 700] for i in range(0, 5000, 700))
    >>> OjaPCA(n_components=3, method="gha").fit(chunks).n_samples_seen_
    5000
    """

    def __init__(
        self,
        n_components=2,
        *,
        method="block",
        learning_rate="auto",
        batch_size=1000,
        center=True,
        random_state=None,
        forgetting_factor=None,
        c=1.0,
        t0="auto",
        dtype="float32",
        n_jobs=None,
        device="cpu",
    ):
        self.n_components = n_components
        self.method = method
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.center = center
        self.random_state = random_state
        self.forgetting_factor = forgetting_factor
        self.c = c
        self.t0 = t0
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.device = device

    def _threads(self):
        n = self.n_jobs
        if n is None:
            n = 1 if self.method in _PER_SAMPLE else None
        elif n == -1:
            n = None
        return _blas_threads(n)

    # ------------------------------------------------------------------ params
    def _check_params(self):
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}.")
        k = self.n_components
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
            raise TypeError(f"n_components must be an integer, got {k!r}.")
        if k < 1:
            raise ValueError(f"n_components must be >= 1, got n_components={k}.")
        if self.method == "oja" and k != 1:
            raise ValueError(
                f"method='oja' is the single-neuron rule and needs n_components=1, "
                f"got n_components={k}; use 'gha', 'subspace' or 'block' for more."
            )
        bs = self.batch_size
        if isinstance(bs, (bool, np.bool_)) or not isinstance(bs, numbers.Integral) or bs < 1:
            raise ValueError(f"batch_size must be a positive integer, got {bs!r}.")
        lr = self.learning_rate
        if not (isinstance(lr, str) and lr == "auto") and not callable(lr):
            if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real):
                raise ValueError(
                    f"learning_rate must be 'auto', a positive float or a callable, got {lr!r}."
                )
            if not (np.isfinite(lr) and lr > 0):
                raise ValueError(f"learning_rate must be a positive finite float, got {lr!r}.")
        ff = self.forgetting_factor
        if ff is not None:
            if isinstance(ff, (bool, np.bool_)) or not isinstance(ff, numbers.Real):
                raise ValueError(f"forgetting_factor must be None or a float, got {ff!r}.")
            if not (0.0 < ff <= 1.0):
                raise ValueError(f"forgetting_factor must be in (0, 1], got {ff!r}.")
        for name in ("c", "t0"):
            v = getattr(self, name)
            if name == "t0" and isinstance(v, str) and v == "auto":
                continue
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or not np.isfinite(v):
                what = "a finite float or 'auto'" if name == "t0" else "a finite float"
                raise ValueError(f"{name} must be {what}, got {v!r}.")
        if self.c <= 0:
            raise ValueError(f"c must be > 0, got {self.c!r}.")
        if not isinstance(self.t0, str) and self.t0 < 0:
            raise ValueError(f"t0 must be >= 0, got {self.t0!r}.")
        if self.dtype is not None:
            check_dtype(self.dtype)
        nj = self.n_jobs
        if nj is not None and (
            isinstance(nj, (bool, np.bool_)) or not isinstance(nj, numbers.Integral)
            or not (nj >= 1 or nj == -1)
        ):
            raise ValueError(f"n_jobs must be None, -1 or a positive integer, got {nj!r}.")

    def _validation_dtype(self):
        """dtype argument for validate_data: fixed after the first chunk."""
        dt = getattr(self, "_dtype", None)
        if dt is not None:
            return dt
        if self.dtype is None:
            return [np.float64, np.float32]
        return check_dtype(self.dtype)

    def _forget(self):
        ff = self.forgetting_factor
        return None if ff is None or ff == 1.0 else float(ff)

    # ------------------------------------------------------------------ fitting
    _STATE = (
        "_W", "_B", "_M", "_mean", "_n_eff", "_total", "_gap", "_lam_k", "_max_sq", "_dtype",
        "components_", "explained_variance_", "explained_variance_ratio_", "mean_",
        "n_samples_seen_", "eigengap_", "n_components_", "n_features_in_",
        "feature_names_in_", "device_",
    )

    def _reset(self):
        for name in self._STATE:
            self.__dict__.pop(name, None)

    def _snapshot(self):
        return {name: self.__dict__[name] for name in self._STATE if name in self.__dict__}

    def _restore(self, snap):
        self._reset()
        self.__dict__.update(snap)

    def fit(self, X, y=None):
        """Learn the principal subspace from ``X`` in one pass.

        Parameters
        ----------
        X : array-like, numpy.memmap or iterable of array-likes
            An array of shape (n_samples, n_features), streamed in chunks of
            ``batch_size`` rows (views: a memmap is never read whole), or an
            iterable (list, generator) of 2-D chunks with the same number of
            columns, re-chunked to ``batch_size`` rows.
        y : None
            Ignored.

        Returns
        -------
        self : OjaPCA
            The fitted estimator.

        Raises
        ------
        ValueError
            For invalid parameters, NaN/inf in the data, chunks with different
            numbers of features, ``n_components > n_features``, or a first
            chunk too small for the warm start. When a later chunk is
            rejected, the estimator keeps (and finalises) the state learnt
            from the chunks before it.
        TrainingDivergedError
            If the weights become non-finite (learning rate too large); the
            state before the offending chunk is kept.
        """
        self._check_params()
        self._reset()
        self.device_ = check_device(self.device)
        rng = as_generator(self.random_state)
        if is_chunk_iterable(X):
            chunks, validated = iter_chunks(X, self.batch_size), False
        elif isinstance(X, np.ndarray):
            if X.ndim != 2 or X.shape[0] == 0:
                # let scikit-learn word the error (1-D, 3-D, empty, ...)
                validate_data(self, X, dtype=self._validation_dtype())
                raise ValueError(f"Expected a non-empty 2-D array, got shape {X.shape}.")
            dtypes = np.atleast_1d(np.asarray(self._validation_dtype(), dtype=object))
            if X.flags.c_contiguous and any(X.dtype == dt for dt in dtypes):
                # Already what the kernels take: validate one row for the feature
                # count (finiteness is checked per chunk by the moments kernel), so
                # no chunk pays for scikit-learn's checks (~0.1 ms per chunk of 1,000).
                validate_data(self, X[:1], dtype=X.dtype, order="C")
                chunks, validated = iter_chunks(X, self.batch_size), True
            else:
                chunks, validated = iter_chunks(X, self.batch_size), False
        else:  # lists of rows, DataFrames, sparse matrices: validate as a whole
            X = validate_data(self, X, dtype=self._validation_dtype(), order="C")
            chunks, validated = iter_chunks(X, self.batch_size), True
        n_chunks = 0
        try:
            with self._threads():
                n_chunks = self._consume(chunks, rng, validated)
        except BaseException:
            if "_W" in self.__dict__:
                self._finalize()
            raise
        if n_chunks == 0:
            raise ValueError("OjaPCA.fit received no data (an empty iterable of chunks).")
        self._finalize()
        return self

    def _consume(self, chunks, rng, validated):
        n_chunks = 0
        for chunk in chunks:
            first = n_chunks == 0
            self._partial_fit_one(
                chunk, rng, reset=first and not validated, first=first,
                validate=not validated,
            )
            n_chunks += 1
        return n_chunks

    def partial_fit(self, X, y=None):
        """Continue learning from one more chunk of samples.

        The first call initialises the estimator (warm start on the first
        ``batch_size`` rows); ``X`` is validated as a whole first and then
        processed in chunks of ``batch_size`` rows, so calling ``partial_fit``
        on consecutive pieces whose sizes are multiples of ``batch_size`` gives
        the same result as ``fit`` on their concatenation.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The chunk.
        y : None
            Ignored.

        Returns
        -------
        self : OjaPCA
            The updated estimator.

        Raises
        ------
        ValueError
            For NaN/inf, a different number of features from earlier chunks,
            ``n_components > n_features``, or a first chunk too small for the
            warm start. The estimator is left exactly as it was.
        TrainingDivergedError
            If the weights become non-finite; the estimator is left as it was.
        """
        snap = self._snapshot()
        first = "_W" not in self.__dict__
        try:
            if first:
                self._check_params()
                self._reset()
                self.device_ = check_device(self.device)
            rng = as_generator(self.random_state) if first else None
            X = validate_data(self, X, reset=first, dtype=self._validation_dtype(), order="C")
            with self._threads():
                for j, chunk in enumerate(iter_chunks(X, self.batch_size)):
                    self._partial_fit_one(
                        chunk, rng, reset=False, first=first and j == 0, validate=False
                    )
            self._finalize()
        except BaseException:
            self._restore(snap)
            raise
        return self

    def _partial_fit_one(self, X, rng, *, reset, first, validate=True):
        """Validate one chunk (unless already validated) and apply it atomically."""
        snap = self._snapshot() if not first else None
        try:
            if validate:
                # finiteness is checked by the moments kernel, in the same pass
                # that computes the chunk mean (one read of the chunk instead of two)
                X = validate_data(
                    self, X, reset=reset, dtype=self._validation_dtype(), order="C",
                    copy=False, ensure_all_finite=False,
                )
            if first:
                state = self._warm_start(X, rng)
            else:
                state = self._update(X)
        except BaseException:
            if snap is not None:
                self._restore(snap)
            raise
        self.__dict__.update(state)

    # ------------------------------------------------------------------ warm start
    def _warm_start(self, X, rng):
        n, d = X.shape
        k = self.n_components
        if k > d:
            raise ValueError(
                f"n_components={k} must be <= n_features={d}: cannot learn more "
                "components than there are features."
            )
        kk = min(k + 1, d)
        n_min = kk + (1 if self.center else 0)
        if n < n_min:
            raise ValueError(
                f"The first chunk has n_samples={n}, too few for the warm start: it "
                f"needs at least {n_min} rows (n_components + {n_min - k}). Pass a "
                f"larger first chunk or a batch_size >= {n_min}."
            )
        dtype = X.dtype
        # mean and total scatter, in float64, about the first row
        shift = np.asarray(X[0], dtype=np.float64) if self.center else np.zeros(d)
        colsum = np.empty(d)
        sq, max_sq = _cpu.chunk_moments(X, shift, np.ones(n), colsum)
        _check_finite_chunk(sq, X, 0)
        if self.center:
            delta = colsum / n
            mean = shift + delta
            total = max(sq - n * float(delta @ delta), 0.0)
        else:
            mean = np.zeros(d)
            total = sq
        vals, V = self._top_eigvecs(X, mean, kk, rng)  # scatter eigenpairs, descending
        theta = vals / max(n - 1, 1)
        gap = float(theta[k - 1] - (theta[k] if kk > k else 0.0))
        W = np.ascontiguousarray(V[:, :k].T.astype(dtype))
        B = _orth_rows(W.astype(np.float64)).astype(dtype)
        # projected scatter in the basis B (Rayleigh quotient; diagonal for exact V)
        P = self._project_centred(X, B, mean)
        M = P.T @ P
        return {
            "_dtype": dtype,
            "_W": W,
            "_B": B,
            "_M": M,
            "_mean": mean,
            "_n_eff": float(n),
            "_total": float(total),
            "_gap": gap,
            "_lam_k": float(theta[k - 1]),
            "_max_sq": float(max_sq),
            "eigengap_": gap,
            "n_samples_seen_": n,
            "n_components_": k,
        }

    @staticmethod
    def _project_centred(X, B, mean):
        """(X - mean) @ B.T in float64 without a centred copy of X."""
        P = (X @ B.T).astype(np.float64)
        P -= B.astype(np.float64) @ mean
        return P

    def _top_eigvecs(self, X, mean, kk, rng):
        """Top ``kk`` eigenpairs of the scatter matrix of X about ``mean``."""
        n, d = X.shape
        if min(n, d) <= _EXACT_WARM_START_MAX:
            Xc = np.asarray(X, dtype=np.float64) - mean
            if d <= n:
                vals, V = np.linalg.eigh(Xc.T @ Xc)
                order = np.argsort(vals)[::-1][:kk]
                return np.maximum(vals[order], 0.0), V[:, order]
            vals, U = np.linalg.eigh(Xc @ Xc.T)
            order = np.argsort(vals)[::-1][:kk]
            vals = np.maximum(vals[order], 0.0)
            V = Xc.T @ U[:, order]
            norms = np.linalg.norm(V, axis=0)
            good = norms > 0
            V[:, good] /= norms[good]
            if not np.all(good):  # rank-deficient chunk: complete the basis
                V = _orth_rows(V.T + 1e-8 * rng.standard_normal(V.T.shape)).T
            return vals, V
        # randomized subspace iteration (Halko, Martinsson & Tropp 2011), until the
        # top kk Ritz values settle: a few iterations on a decaying spectrum, more
        # when the chunk has fewer rows than columns and its noise bulk comes close
        # to the k-th eigenvalue (then 4 fixed iterations gave an eigengap 100x too
        # small at d = 20,000, n = 1,000)
        r = min(d, kk + max(10, kk))
        dtype = X.dtype
        Q = _orth_rows(rng.standard_normal((d, r)).T).T
        prev = None
        for it in range(_WARM_START_MAX_ITER + 1):
            P = self._project_centred(X, np.ascontiguousarray(Q.T, dtype=dtype), mean)  # (n, r)
            if it == _WARM_START_MAX_ITER:
                break
            top = np.linalg.eigvalsh(P.T @ P)[::-1][:kk]
            if it >= _WARM_START_ITER and prev is not None and np.all(
                np.abs(top - prev) <= _WARM_START_RTOL * np.abs(top)
            ):
                break
            prev = top
            Z = (X.T @ P.astype(dtype)).astype(np.float64)
            Z -= np.outer(mean, P.sum(axis=0))
            Q = _orth_rows(Z.T).T
            if not np.all(np.isfinite(Q)):  # rank-deficient chunk: LAPACK completes it
                Q = np.linalg.qr(Z)[0]
        vals, U = np.linalg.eigh(P.T @ P)
        order = np.argsort(vals)[::-1][:kk]
        return np.maximum(vals[order], 0.0), Q @ U[:, order]

    # ------------------------------------------------------------------ one chunk
    def _rates(self, b, n_eff, lam, max_sq):
        """Per-sample learning rates and the clock values they were computed at."""
        j = np.arange(b, dtype=np.float64)
        if lam is None:
            t = n_eff + j
        else:
            p = lam**j
            t = n_eff * p + (1.0 - p) / (1.0 - lam)
        lr = self.learning_rate
        if isinstance(lr, str):
            gap = self._gap_floor()
            t0 = self.t0
            if isinstance(t0, str):  # "auto"
                t0 = 0.0
                if self.method == "block":
                    trace = self._total / max(self._n_eff - 1.0, 1.0)
                    t0 = np.sqrt(b * trace * max(self._lam_k, 0.0)) / gap
            eta = self.c / (gap * (t + t0))
            if self.method in _PER_SAMPLE and max_sq > 0:
                # eta y^2 <= eta ||x - mean||^2 <= 1 for a unit neuron: stable
                eta = np.minimum(eta, 1.0 / max_sq)
        elif callable(lr):
            eta = np.broadcast_to(np.asarray(lr(t.copy()), dtype=np.float64), (b,))
            if not np.all(np.isfinite(eta)) or np.any(eta < 0):
                raise ValueError(
                    "learning_rate callable must return finite, non-negative rates."
                )
        else:
            eta = np.full(b, float(lr))
        return np.ascontiguousarray(eta, dtype=self._dtype)

    def _held_out_gap(self, H, scatter, w, d):
        """Eigengap estimate for the next chunk, from this chunk's projections.

        ``H`` is the chunk's scatter projected on the basis ``B`` that has not
        seen the chunk yet (k x k), ``scatter`` its total scatter, ``w`` its
        (weighted) number of samples. The k-th Ritz value of ``H`` estimates
        ``lambda_k`` without the upward bias of an in-sample eigenvalue, and the
        scatter left outside ``B``, per dimension, estimates the noise level
        ``lambda_{k+1}``; chunks smaller than ``_GAP_POOL`` samples are pooled
        with the previous estimate.
        """
        if self.method != "block":
            return self._gap, self._lam_k
        k = H.shape[0]
        denom = max(w - 1.0, 1.0)
        lam_k = float(np.linalg.eigvalsh(H)[0]) / denom
        resid = max(scatter - float(np.trace(H)), 0.0) / (denom * (d - k)) if d > k else 0.0
        pool = max(0.0, _GAP_POOL - w)
        return (
            ((lam_k - resid) * w + self._gap * pool) / (w + pool),
            (lam_k * w + self._lam_k * pool) / (w + pool),
        )

    def _gap_floor(self):
        gap = self._gap
        scale = self._total / max(self._n_eff - 1.0, 1.0)
        floor = 1e-6 * scale if scale > 0 else 1.0
        return max(gap, floor)

    def _update(self, X):
        b, d = X.shape
        if d != self._W.shape[1]:  # validate_data already checks; keep kernels safe
            raise ValueError(f"X has {d} features, but OjaPCA is expecting {self._W.shape[1]}.")
        dtype = self._dtype
        lam = self._forget()
        if lam is None:
            weights, decay, wb = np.ones(b), 1.0, float(b)
        else:
            weights = lam ** np.arange(b - 1, -1, -1, dtype=np.float64)
            decay, wb = lam**b, float(weights.sum())
        n_eff, mean_old = self._n_eff, self._mean
        kern, Xk = _cpu, X
        if getattr(self, "device_", "cpu") == "cuda":  # the chunk goes to the GPU once
            from .._kernels import cuda as kern

            Xk = kern.to_device(X)

        # running mean and total scatter (Chan et al. merge), float64
        colsum = np.empty(d)
        sq, max_sq = kern.chunk_moments(Xk, mean_old, weights, colsum)
        _check_finite_chunk(sq, X, self.n_samples_seen_)
        max_sq = max(self._max_sq, max_sq)
        if self.center:
            delta = colsum / wb  # chunk mean - old mean
            dd = float(delta @ delta)
            wa = decay * n_eff
            frac = wb / (wa + wb)
            mean_new = mean_old + frac * delta
            total = decay * self._total + (sq - wb * dd) + wa * frac * dd
        else:
            mean_new, total = mean_old, decay * self._total + sq
        n_eff_new = decay * n_eff + wb

        # rates of the learning rule (the GPU's block update needs them with Z)
        etas = self._rates(b, n_eff, lam, max_sq)
        mean_k = (mean_new if self.center else np.zeros(d)).astype(dtype)

        # projected scatter merge in the current basis B
        B = self._B
        B64 = B.astype(np.float64)
        if kern is _cpu:
            Z = X @ B.T  # (b, k), working dtype
        elif self.method == "block":  # B == W: Z and the update G in one GPU pass
            Z, G = kern.block_oja_chunk(B, Xk, mean_k, etas, self.center)
        else:
            Z = kern.matmul(Xk, B, tb=True).copy_to_host()
        Zc = Z.astype(np.float64)
        if self.center:
            Zc -= B64 @ (mean_old + delta)
        Zw = Zc * weights[:, np.newaxis] if lam is not None else Zc
        H = Zw.T @ Zc  # this chunk's scatter in the basis B (held out: B has not seen it)
        M = decay * self._M + H
        if self.center:
            dz = B64 @ delta
            M += (wa * frac) * np.outer(dz, dz)
        gap, lam_k = self._held_out_gap(H, (sq - wb * dd) if self.center else sq, wb, d)

        # the learning rule
        W = self._W.copy()
        if self.method == "block":
            W_new = np.empty(W.shape)
            if kern is _cpu:
                # B == W for block: E = (X - mean) W^T diag(eta) from Z, then
                # orth(W + (X^T E)^T - esum mean^T), centring and QR in one kernel
                m = mean_new if self.center else np.zeros(d)
                E = np.empty_like(Z)
                esum = np.empty(len(W))
                _cpu.block_oja_scale(Z, B64 @ m, etas, E, esum)
                G = X.T @ E  # (d, k)
                _cpu.block_oja_basis(W, G, m, esum, W_new)
            else:  # the GPU already folded W and the mean into G
                _cpu.orthonormalize_rows(np.ascontiguousarray(G.T), W_new)
            B_new = W_new
        elif self.method == "gha":
            kern.gha_chunk(W, Xk, mean_k, etas)
            W_new = W
            B_new = _orth_rows(W) if np.all(np.isfinite(W)) else W
        elif self.method == "subspace":
            kern.subspace_chunk(W, Xk, mean_k, etas)
            W_new = B_new = _orth_rows(W) if np.all(np.isfinite(W)) else W
        else:  # oja
            kern.oja_chunk(W[0], Xk, mean_k, etas)
            W_new = W
            nrm = np.linalg.norm(W)
            B_new = W / nrm if np.isfinite(nrm) and nrm > 0 else W * np.nan
        if not (np.all(np.isfinite(W_new)) and (B_new is W_new or np.all(np.isfinite(B_new)))):
            raise TrainingDivergedError(
                f"OjaPCA(method={self.method!r}) diverged: the weights became non-finite "
                "on this chunk (learning rate too large for the scale of the data). The "
                "estimator keeps its state from before the chunk; lower learning_rate "
                "or c, or raise t0."
            )
        W_new = np.ascontiguousarray(W_new, dtype=dtype)
        B_new = np.ascontiguousarray(B_new, dtype=dtype)
        # carry the projected scatter into the new basis: each old direction's
        # statistics go to its nearest new direction (orthogonal polar factor of
        # B_old B_new^T), so the part of the basis that turned out of the old span
        # does not lose its variance
        T = B64 @ B_new.astype(np.float64).T
        polar = np.empty_like(T)
        if not _cpu.polar_factor(T, polar):  # a singular value near 0: SVD instead
            Ut, _, Vt = np.linalg.svd(T)
            polar = Ut @ Vt
        M = polar.T @ M @ polar
        return {
            "_W": W_new,
            "_B": B_new,
            "_M": 0.5 * (M + M.T),
            "_mean": mean_new,
            "_n_eff": n_eff_new,
            "_total": float(total),
            "_max_sq": max_sq,
            "_gap": gap,
            "_lam_k": lam_k,
            "eigengap_": gap,
            "n_samples_seen_": self.n_samples_seen_ + b,
        }

    def _finalize(self):
        """Rayleigh-Ritz on the projected scatter: ordered orthonormal components."""
        vals, U = np.linalg.eigh(self._M)
        order = np.argsort(vals)[::-1]
        vals, U = np.maximum(vals[order], 0.0), U[:, order]
        comps = U.T @ self._B.astype(np.float64)
        comps = _flip_signs(_orth_rows(comps))
        denom = max(self._n_eff - 1.0, np.finfo(np.float64).tiny)
        ev = vals / denom
        total_var = self._total / denom
        self.components_ = comps.astype(self._dtype)
        self.explained_variance_ = ev.astype(self._dtype)
        self.explained_variance_ratio_ = (
            ev / total_var if total_var > 0 else np.zeros_like(ev)
        ).astype(self._dtype)
        self.mean_ = self._mean.astype(self._dtype)

    # ------------------------------------------------------------------ saving
    _SAVED_SCALARS = ("_n_eff", "_total", "_gap", "_lam_k", "_max_sq", "eigengap_")
    _SAVED_ARRAYS = ("_W", "_B", "_M", "_mean")

    def _get_fitted_state(self):
        """(JSON-able dict, dict of arrays) for :func:`aefast.save`.

        The whole streaming state is kept, not only the components, so a
        loaded estimator continues with :meth:`partial_fit` exactly where the
        saved one stopped (a checkpoint of a stream).
        """
        meta = {name: float(self.__dict__[name]) for name in self._SAVED_SCALARS}
        meta.update(
            dtype=np.dtype(self._dtype).name,
            n_samples_seen=int(self.n_samples_seen_),
            n_features_in=int(self.n_features_in_),
            device=self.device_,
        )
        arrays = {name.lstrip("_"): self.__dict__[name] for name in self._SAVED_ARRAYS}
        if hasattr(self, "feature_names_in_"):
            arrays["feature_names_in"] = np.asarray(self.feature_names_in_, dtype=str)
        return meta, arrays

    def _set_fitted_state(self, meta, arrays):
        """Rebuild the state written by :meth:`_get_fitted_state` (checked)."""
        self._check_params()
        dtype = check_dtype(meta["dtype"])
        k, d = self.n_components, int(meta["n_features_in"])
        if k > d:
            raise ValueError(f"n_components={k} > n_features_in={d}")
        shapes = {"W": (k, d), "B": (k, d), "M": (k, k), "mean": (d,)}
        state = {}
        for name, shape in shapes.items():
            value = np.asarray(arrays[name])
            if value.shape != shape:
                raise ValueError(f"saved {name} has shape {value.shape}, expected {shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"saved {name} is not finite")
            keep = dtype if name in ("W", "B") else np.float64
            state["_" + name] = np.ascontiguousarray(value, dtype=keep)
        for name in self._SAVED_SCALARS:
            state[name] = float(meta[name])
        state.update(
            _dtype=dtype,
            n_samples_seen_=int(meta["n_samples_seen"]),
            n_components_=k,
            n_features_in_=d,
            # saved on a GPU, loaded where there is none: continue on the CPU
            device_="cpu" if meta["device"] == "cpu" else check_device("auto"),
        )
        if "feature_names_in" in arrays:
            names = np.asarray(arrays["feature_names_in"], dtype=object)
            if names.shape != (d,):
                raise ValueError("saved feature names do not match n_features_in")
            state["feature_names_in_"] = names
        self._reset()
        self.__dict__.update(state)
        self._finalize()

    # ------------------------------------------------------------------ transforms
    def transform(self, X):
        """Project samples on the components.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            ``(X - mean_) @ components_.T`` in the estimator's dtype.
        """
        check_is_fitted(self, "components_")
        X = validate_data(self, X, reset=False, dtype=self._dtype, order="C")
        return (X - self.mean_) @ self.components_.T

    def inverse_transform(self, X):
        """Map projections back to the input space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Projections, e.g. from :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
            ``X @ components_ + mean_``: the reconstruction of the samples
            from their projections (exact for samples in the subspace).
        """
        check_is_fitted(self, "components_")
        from sklearn.utils import check_array

        X = check_array(X, dtype=self._dtype)
        if X.shape[1] != self.components_.shape[0]:
            raise ValueError(
                f"X has {X.shape[1]} columns, but OjaPCA has "
                f"n_components={self.components_.shape[0]}."
            )
        return X @ self.components_ + self.mean_

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if self.dtype is None:
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        else:
            try:
                tags.transformer_tags.preserves_dtype = [check_dtype(self.dtype).name]
            except ValueError:
                tags.transformer_tags.preserves_dtype = []
        return tags
