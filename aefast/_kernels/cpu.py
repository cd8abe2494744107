"""Numba CPU kernels for Hebbian learning and streaming PCA.

Design
------
Every kernel is a pure function of arrays and scalars: it updates the weight
array it is given *in place* and reads nothing else from module state (Numba
freezes globals at compile time, so learning rates, thresholds and sizes are
always arguments). Each one loops over all the rows of a chunk inside one
compiled call; the estimators in :mod:`aefast.models` call it once per chunk.

Conventions shared by the kernels:

* ``X`` is a chunk of shape ``(n, d)``; C order is the fast path (one row is
  contiguous), any order is accepted.
* ``mean`` (shape ``(d,)``) is subtracted from every row on the fly, so the
  data are centred without making a centred copy of the chunk. Pass zeros for
  no centring.
* ``etas`` (shape ``(n,)``) holds the learning rate of every sample of the
  chunk, so any schedule -- a constant, ``c / (g (t + t0))``, a user callable
  -- is computed by the caller in NumPy (O(n), negligible next to O(n d k)).
* Weights are stored as rows: ``W`` has shape ``(k, d)`` and row ``j`` is the
  ``j``-th neuron, so every inner loop runs over a contiguous row of length
  ``d`` and vectorises.
* The float type is the caller's: ``X``, ``mean``, ``etas`` and the weights
  share one dtype (float32 or float64) and all arithmetic stays in it;
  scalar accumulators are created with that dtype so that a float32 kernel
  never silently promotes to float64.

``fastmath`` is chosen per function. The dot products ``y = W x`` and the
norms are reductions that LLVM only vectorises when it may reassociate, so the
kernels with such reductions get ``{"reassoc", "contract"}``. None of them get
``nnan``/``ninf``/``arcp``: plain Hebbian learning diverges by design, and a
too-large learning rate makes any of these rules overflow, so inf and NaN must
propagate with IEEE semantics for the estimators to detect the divergence and
roll back; the Hebb kernel also divides by a norm that may underflow to zero.

Scaling choices (measured on Fashion-MNIST, d = 784, k = 16): the per-sample
rules are sequential in the samples and their inner loops are short (one row
of ``d``), so they run single-threaded; GHA and the subspace rule fuse the
next sample's ``y = W x`` into the update pass (about 1.4x). The block method
is two skinny GEMMs per chunk and goes to BLAS from NumPy (see
:mod:`aefast.models.oja`); around them ``block_oja_scale`` (centred, rate-scaled
projections) and ``block_oja_basis`` (mean correction plus the thin QR of
``orthonormalize_rows``) replace a dozen small NumPy calls, ``polar_factor``
carries the projected scatter into the new basis, and ``chunk_moments`` gives
the running mean, the total variance and the NaN/inf check of a chunk in one
pass. These small kernels accumulate in float64 whatever the chunk's dtype.
"""

import numba
import numpy as np

__all__ = [
    "hebb_chunk",
    "oja_chunk",
    "gha_chunk",
    "subspace_chunk",
    "chunk_moments",
    "orthonormalize_rows",
    "block_oja_scale",
    "block_oja_basis",
    "polar_factor",
]

_FM_REDUCE = {"reassoc", "contract"}


@numba.njit(cache=True, fastmath=_FM_REDUCE, nogil=True)
def hebb_chunk(w, X, mean, etas, log_norm, log_norms_out):
    """Plain Hebbian rule ``w <- w + eta_t y_t x_t`` over the rows of a chunk.

    Plain Hebbian learning is linear in ``w``: ``w_{t+1} = (I + eta_t x_t x_t^T)
    w_t``, so the direction of ``w`` does not depend on its scale. The kernel
    therefore keeps the direction ``w`` at unit norm and the logarithm of the
    true norm in a separate scalar; this is the same trajectory as the textbook
    rule, only free of the overflow that the rule's exponential growth reaches
    after a few thousand samples (the divergence the lecture warns about is
    still fully recorded, in ``log_norms_out``).

    Parameters
    ----------
    w : ndarray of shape (d,)
        Unit-norm direction of the weight vector, updated in place.
    X : ndarray of shape (n, d)
        Chunk of samples (rows).
    mean : ndarray of shape (d,)
        Subtracted from every row before the update.
    etas : ndarray of shape (n,)
        Learning rate of every sample.
    log_norm : float
        Natural logarithm of the true weight norm before the chunk.
    log_norms_out : ndarray of shape (n,), float64
        Receives the logarithm of the true weight norm after every sample.

    Returns
    -------
    log_norm : float
        Logarithm of the true weight norm after the chunk.
    """
    n, d = X.shape
    zero = np.zeros(1, dtype=w.dtype)[0]
    one = np.ones(1, dtype=w.dtype)[0]
    xc = np.empty(d, dtype=w.dtype)
    for i in range(n):
        y = zero
        for l in range(d):
            v = X[i, l] - mean[l]
            xc[l] = v
            y += w[l] * v
        a = etas[i] * y
        s = zero
        for l in range(d):
            v = w[l] + a * xc[l]
            w[l] = v
            s += v * v
        nrm = np.sqrt(s)
        inv = one / nrm
        for l in range(d):
            w[l] = w[l] * inv
        log_norm += np.log(np.float64(nrm))
        log_norms_out[i] = log_norm
    return log_norm


@numba.njit(cache=True, fastmath=_FM_REDUCE, nogil=True)
def oja_chunk(w, X, mean, etas):
    """Single-neuron Oja rule ``w <- w + eta_t y_t (x_t - y_t w)`` over a chunk.

    Parameters
    ----------
    w : ndarray of shape (d,)
        Weight vector, updated in place.
    X : ndarray of shape (n, d)
        Chunk of samples (rows).
    mean : ndarray of shape (d,)
        Subtracted from every row before the update.
    etas : ndarray of shape (n,)
        Learning rate of every sample.
    """
    n, d = X.shape
    zero = np.zeros(1, dtype=w.dtype)[0]
    for i in range(n):
        y = zero
        for l in range(d):
            y += w[l] * (X[i, l] - mean[l])
        a = etas[i] * y
        b = a * y
        for l in range(d):
            w[l] += a * (X[i, l] - mean[l]) - b * w[l]


@numba.njit(cache=True, fastmath=_FM_REDUCE, nogil=True)
def gha_chunk(W, X, mean, etas):
    """Sanger's generalized Hebbian algorithm, one sample at a time.

    For every row ``x`` (centred by ``mean``) with ``y = W x``::

        W <- W + eta_t (y x^T - LT(y y^T) W)

    computed in O(d k) per sample without forming the lower-triangular
    ``k x k`` matrix: with the residual ``r_0 = x`` and, for ``j = 0..k-1``,
    ``r_{j+1} = r_j - y_j w_j`` (old ``w_j``), row ``j`` is updated as
    ``w_j <- w_j + eta_t y_j r_{j+1}``, which is exactly row ``j`` of the
    matrix rule. One fused pass over ``d`` per neuron updates the residual and
    the weights and, since the new ``w_j`` is final at that point, also
    accumulates ``y_j`` of the next sample (2 passes over ``W`` per sample
    instead of 3; about 1.4x faster at d = 784, k = 16).

    Parameters
    ----------
    W : ndarray of shape (k, d)
        Weights, one neuron per row, updated in place.
    X : ndarray of shape (n, d)
        Chunk of samples (rows).
    mean : ndarray of shape (d,)
        Subtracted from every row before the update.
    etas : ndarray of shape (n,)
        Learning rate of every sample.
    """
    n, d = X.shape
    k = W.shape[0]
    if n == 0:
        return
    zero = np.zeros(1, dtype=W.dtype)[0]
    r = np.empty(d, dtype=W.dtype)
    xn = np.empty(d, dtype=W.dtype)
    y = np.empty(k, dtype=W.dtype)
    for l in range(d):
        r[l] = X[0, l] - mean[l]
    for j in range(k):
        s = zero
        for l in range(d):
            s += W[j, l] * r[l]
        y[j] = s
    for i in range(n):
        has_next = i + 1 < n
        if has_next:
            for l in range(d):
                xn[l] = X[i + 1, l] - mean[l]
        eta = etas[i]
        for j in range(k):
            yj = y[j]
            a = eta * yj
            if has_next:
                s = zero
                for l in range(d):
                    wjl = W[j, l]
                    rl = r[l] - yj * wjl
                    r[l] = rl
                    wn = wjl + a * rl
                    W[j, l] = wn
                    s += wn * xn[l]
                y[j] = s
            else:
                for l in range(d):
                    wjl = W[j, l]
                    rl = r[l] - yj * wjl
                    r[l] = rl
                    W[j, l] = wjl + a * rl
        if has_next:
            for l in range(d):
                r[l] = xn[l]


@numba.njit(cache=True, fastmath=_FM_REDUCE, nogil=True)
def subspace_chunk(W, X, mean, etas):
    """Oja's subspace rule, one sample at a time.

    For every row ``x`` (centred by ``mean``) with ``y = W x``::

        W <- W + eta_t y (x - W^T y)^T

    in O(d k) per sample: one pass over ``W`` forms the residual
    ``r = x - W^T y`` from the old weights, a second applies the rank-one
    update and, fused into it, accumulates ``y`` of the next sample from the
    new weights. The rule keeps ``W`` only approximately orthonormal; the
    caller re-orthonormalises once per chunk.

    Parameters
    ----------
    W : ndarray of shape (k, d)
        Weights, one neuron per row, updated in place.
    X : ndarray of shape (n, d)
        Chunk of samples (rows).
    mean : ndarray of shape (d,)
        Subtracted from every row before the update.
    etas : ndarray of shape (n,)
        Learning rate of every sample.
    """
    n, d = X.shape
    k = W.shape[0]
    if n == 0:
        return
    zero = np.zeros(1, dtype=W.dtype)[0]
    xc = np.empty(d, dtype=W.dtype)
    xn = np.empty(d, dtype=W.dtype)
    r = np.empty(d, dtype=W.dtype)
    y = np.empty(k, dtype=W.dtype)
    for l in range(d):
        xc[l] = X[0, l] - mean[l]
    for j in range(k):
        s = zero
        for l in range(d):
            s += W[j, l] * xc[l]
        y[j] = s
    for i in range(n):
        has_next = i + 1 < n
        for l in range(d):
            r[l] = xc[l]
        for j in range(k):
            yj = y[j]
            for l in range(d):
                r[l] -= yj * W[j, l]
        eta = etas[i]
        if has_next:
            for l in range(d):
                xn[l] = X[i + 1, l] - mean[l]
            for j in range(k):
                a = eta * y[j]
                s = zero
                for l in range(d):
                    wn = W[j, l] + a * r[l]
                    W[j, l] = wn
                    s += wn * xn[l]
                y[j] = s
            for l in range(d):
                xc[l] = xn[l]
        else:
            for j in range(k):
                a = eta * y[j]
                for l in range(d):
                    W[j, l] += a * r[l]


@numba.njit(cache=True, fastmath=_FM_REDUCE, nogil=True)
def chunk_moments(X, shift, weights, colsum_out):
    """Weighted first and second moments of a chunk about a shift, in float64.

    One pass over the chunk computes, with every value promoted to float64::

        colsum_out[l] = sum_i weights[i] * (X[i, l] - shift[l])
        sq            = sum_i weights[i] * ||X[i] - shift||^2
        max_sq        = max_i ||X[i] - shift||^2

    Taking the shift close to the mean (the running mean of a stream) keeps
    the second moment free of the cancellation of ``sum x^2 - n mean^2``.
    A NaN or inf anywhere in ``X`` makes ``sq`` non-finite, which is how the
    estimators check a chunk's finiteness in the same pass.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Chunk of samples (rows), float32 or float64.
    shift : ndarray of shape (d,), float64
        Subtracted from every row.
    weights : ndarray of shape (n,), float64
        Weight of every sample (ones for plain moments).
    colsum_out : ndarray of shape (d,), float64
        Receives the weighted column sums of ``X - shift``.

    Returns
    -------
    sq : float
        Weighted sum of the squared norms of the rows of ``X - shift``.
    max_sq : float
        Largest squared norm of a row of ``X - shift`` (unweighted; 0 for an
        empty chunk).
    """
    n, d = X.shape
    for l in range(d):
        colsum_out[l] = 0.0
    sq = 0.0
    max_sq = 0.0
    for i in range(n):
        wi = weights[i]
        s = 0.0
        for l in range(d):
            v = np.float64(X[i, l]) - shift[l]
            colsum_out[l] += wi * v
            s += v * v
        sq += wi * s
        if s > max_sq:
            max_sq = s
    return sq, max_sq


@numba.njit(cache=True, fastmath=_FM_REDUCE, nogil=True)
def orthonormalize_rows(W, out):
    """Orthonormalise the rows of W by modified Gram-Schmidt, twice, in float64.

    Row ``j`` of ``out`` is the normalised component of row ``j`` of ``W``
    orthogonal to rows ``0..j-1``: the ``Q^T`` of a QR factorisation of
    ``W^T`` with a positive ``R`` diagonal. Re-orthogonalising once more
    ("twice is enough", Giraud et al. 2005) gives orthonormality to machine
    precision for any numerically full-rank ``W``. O(d k^2), no BLAS: it
    replaces LAPACK ``geqrf`` on the thin (d, k) matrices of the streaming
    updates, whose many small multithreaded BLAS calls dominated when the
    cores were shared.

    Parameters
    ----------
    W : ndarray of shape (k, d)
        Rows to orthonormalise (any float dtype; read only).
    out : ndarray of shape (k, d), float64
        Receives the orthonormal rows. A row that is numerically dependent
        on the previous ones (norm 0 after projection) comes out as NaN, so
        the caller can detect the rank deficiency.
    """
    k, d = W.shape
    for j in range(k):
        for l in range(d):
            out[j, l] = W[j, l]
        for _ in range(2):
            for i in range(j):
                s = 0.0
                for l in range(d):
                    s += out[i, l] * out[j, l]
                for l in range(d):
                    out[j, l] -= s * out[i, l]
            s = 0.0
            for l in range(d):
                s += out[j, l] * out[j, l]
            nrm = np.sqrt(s)
            inv = 1.0 / nrm if nrm > 0.0 else np.nan
            for l in range(d):
                out[j, l] *= inv


@numba.njit(cache=True, fastmath=_FM_REDUCE, nogil=True)
def block_oja_scale(Z, mp, etas, E, esum):
    """Centred projections scaled by the learning rates, and their column sums.

    ``E[i, j] = (Z[i, j] - mp[j]) * etas[i]`` and ``esum[j] = sum_i E[i, j]``
    (accumulated in float64), where ``Z = X W^T`` of the uncentred chunk and
    ``mp = W mean``: the right-hand side of the block-Oja GEMM ``X^T E``. The
    CPU twin of ``block_oja_scale_kernel`` in :mod:`aefast._kernels.cuda`.

    Parameters
    ----------
    Z : ndarray of shape (n, k)
    mp : ndarray of shape (k,), float64
    etas : ndarray of shape (n,)
    E : ndarray of shape (n, k)
        Receives the scaled projections (the dtype of the GEMM).
    esum : ndarray of shape (k,), float64
        Receives the column sums of ``E`` (as stored).
    """
    n, k = Z.shape
    for j in range(k):
        esum[j] = 0.0
    for i in range(n):
        eta = np.float64(etas[i])
        for j in range(k):
            e = (np.float64(Z[i, j]) - mp[j]) * eta
            E[i, j] = e
            esum[j] += np.float64(E[i, j])


@numba.njit(cache=True, fastmath=_FM_REDUCE, nogil=True)
def block_oja_basis(W, G, mean, esum, out):
    """Orthonormal rows of the block-Oja update, from its GEMM part, in float64.

    Forms ``W + G^T - esum mean^T`` (``G = X^T E`` of the uncentred chunk,
    ``esum`` the column sums of ``E``, so the mean correction turns it into
    ``X_c^T E`` without a centred copy of ``X``) and orthonormalises its rows
    as :func:`orthonormalize_rows` does, in one pass over ``G`` instead of the
    four NumPy calls and the transposed copy it replaces. A non-finite ``G``
    gives NaN rows.

    Parameters
    ----------
    W : ndarray of shape (k, d)
        Current weights (rows).
    G : ndarray of shape (d, k)
        ``X^T E``.
    mean : ndarray of shape (d,)
        The mean subtracted from the chunk (zeros without centring).
    esum : ndarray of shape (k,)
        Column sums of ``E``.
    out : ndarray of shape (k, d), float64
        Receives the orthonormal rows.
    """
    k, d = W.shape
    for j in range(k):
        ej = esum[j]
        for l in range(d):
            out[j, l] = np.float64(W[j, l]) + np.float64(G[l, j]) - ej * mean[l]
    orthonormalize_rows(out, out)


@numba.njit(cache=True, nogil=True)
def polar_factor(T, out):
    """Orthogonal polar factor ``U V^T`` of a square ``T = U S V^T`` (Newton-Schulz).

    Iterates ``X <- X (3 I - X^T X) / 2`` from ``X = T``, which converges
    quadratically to the polar factor when the singular values of ``T`` lie
    in ``(0, sqrt(3))``, as those of a product of two orthonormal bases do
    (cosines of principal angles): a few k x k products instead of a LAPACK
    SVD, whose call overhead dominated on 16 x 16.

    Parameters
    ----------
    T : ndarray of shape (k, k), float64
        The matrix, with singular values in ``(0, 1]`` in practice.
    out : ndarray of shape (k, k), float64
        Receives the polar factor.

    Returns
    -------
    converged : bool
        False when ``||X^T X - I||_F`` did not drop below ``1e-12`` within 100
        iterations (a singular value near 0 or above ``sqrt(3)``); the caller
        then falls back to an SVD.
    """
    k = T.shape[0]
    X = T.copy()
    A = np.empty((k, k))
    for _ in range(100):
        # A = X^T X - I, err = ||A||_F
        err = 0.0
        for i in range(k):
            for j in range(k):
                s = 0.0
                for r in range(k):
                    s += X[r, i] * X[r, j]
                if i == j:
                    s -= 1.0
                A[i, j] = s
                err += s * s
        if not np.isfinite(err):
            break
        if err < 1e-24:
            out[:, :] = X
            return True
        # X <- X (I - A / 2) = X (3 I - X^T X) / 2
        for r in range(k):
            for j in range(k):
                s = X[r, j]
                for i in range(k):
                    s -= 0.5 * X[r, i] * A[i, j]
                out[r, j] = s
        X[:, :] = out
    return False
