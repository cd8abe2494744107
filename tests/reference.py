"""Plain NumPy float64 references of aefast's compiled kernels.

Straightforward, unfused, unoptimised code written as the textbook states each
rule. Tests compare the compiled kernels against these on fresh random inputs.
Each section below belongs to one kernel module; append new sections at the end.
"""

import numpy as np

# ============================================================================
# Hebbian learning and streaming PCA: aefast/_kernels/cpu.py
# (hebb_chunk, oja_chunk, gha_chunk, subspace_chunk, chunk_moments)
# ============================================================================


def hebb_ref(w, X, mean, etas):
    """Plain Hebb, literally: ``w <- w + eta y x`` with ``y = w . x``.

    Returns the final (unnormalised) weight vector and ``||w||`` after every
    sample. Keep ``etas`` small enough that nothing overflows.
    """
    w = np.array(w, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64) - np.asarray(mean, dtype=np.float64)
    norms = np.empty(X.shape[0])
    for i, x in enumerate(X):
        y = w @ x
        w = w + etas[i] * y * x
        norms[i] = np.linalg.norm(w)
    return w, norms


def oja_ref(w, X, mean, etas):
    """Single-neuron Oja rule ``w <- w + eta y (x - y w)``."""
    w = np.array(w, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64) - np.asarray(mean, dtype=np.float64)
    for i, x in enumerate(X):
        y = w @ x
        w = w + etas[i] * y * (x - y * w)
    return w


def gha_ref(W, X, mean, etas):
    """Sanger's rule in matrix form ``W <- W + eta (y x^T - LT(y y^T) W)``.

    ``W`` has shape (k, d), one neuron per row; ``LT`` keeps the lower
    triangle, diagonal included.
    """
    W = np.array(W, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64) - np.asarray(mean, dtype=np.float64)
    for i, x in enumerate(X):
        y = W @ x
        W = W + etas[i] * (np.outer(y, x) - np.tril(np.outer(y, y)) @ W)
    return W


def subspace_ref(W, X, mean, etas):
    """Oja's subspace rule ``W <- W + eta y (x - W^T y)^T`` (no re-orthonormalisation)."""
    W = np.array(W, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64) - np.asarray(mean, dtype=np.float64)
    for i, x in enumerate(X):
        y = W @ x
        W = W + etas[i] * np.outer(y, x - W.T @ y)
    return W


def chunk_moments_ref(X, shift, weights):
    """Weighted column sums, weighted sum of squared row norms and the largest
    squared row norm of ``X - shift``."""
    Xs = np.asarray(X, dtype=np.float64) - np.asarray(shift, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    row_sq = np.einsum("ij,ij->i", Xs, Xs)
    return w @ Xs, float(w @ row_sq), float(row_sq.max(initial=0.0))


def orthonormalize_rows_ref(W):
    """Q^T of the QR factorisation of W^T, signs making R's diagonal positive."""
    Q, R = np.linalg.qr(np.asarray(W, dtype=np.float64).T)
    return (Q * np.sign(np.diag(R))).T


def polar_factor_ref(T):
    """Orthogonal polar factor ``U V^T`` of ``T = U S V^T`` by LAPACK SVD."""
    U, _, Vt = np.linalg.svd(np.asarray(T, dtype=np.float64))
    return U @ Vt


def block_oja_ref(W, X, mean, etas):
    """One block-Oja step ``W <- QR(W + X_c^T diag(eta) X_c W)`` on rows of W.

    Returns orthonormal rows spanning the updated subspace (signs so that the
    R factor has a positive diagonal).
    """
    W = np.asarray(W, dtype=np.float64)
    Xc = np.asarray(X, dtype=np.float64) - np.asarray(mean, dtype=np.float64)
    G = W.T + Xc.T @ (np.asarray(etas, dtype=np.float64)[:, None] * (Xc @ W.T))
    Q, R = np.linalg.qr(G)
    return (Q * np.sign(np.diag(R))).T
