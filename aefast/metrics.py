"""Metrics comparing subspaces, measuring captured variance, sparsity and reconstruction.

Conventions
-----------
* Data, codes and reconstructions are 2-D arrays with one **sample per row**,
  shape ``(n_samples, n_features)`` (or ``(n_samples, n_components)`` for codes).
* A basis is a 2-D array whose **rows** are the basis vectors, shape
  ``(k, d)``: the layout of ``components_`` in scikit-learn and aefast. The rows
  need not be orthonormal; every function orthonormalises them first (QR), so
  only the spanned subspace matters.
* Angles are in **radians**, in ``[0, pi/2]``, sorted in ascending order.
* All computation is in float64 whatever the input dtype.
"""

import numbers

import numpy as np

__all__ = [
    "principal_angles",
    "subspace_distance",
    "explained_variance_captured",
    "l0_per_sample",
    "dead_latent_fraction",
    "normalized_mse",
]


def _orthonormal_rows(A, name):
    A = np.asarray(A, dtype=np.float64)
    if A.ndim == 1:
        A = A[np.newaxis, :]
    if A.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of basis vectors (rows), got shape {A.shape}."
        )
    if A.shape[0] == 0 or A.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {A.shape}.")
    if not np.all(np.isfinite(A)):
        raise ValueError(f"{name} contains NaN or infinity.")
    if A.shape[0] > A.shape[1]:
        raise ValueError(
            f"{name} has {A.shape[0]} basis vectors in dimension {A.shape[1]}; "
            "rows are basis vectors, so there can be at most as many rows as columns."
        )
    Q, R = np.linalg.qr(A.T)
    diag = np.abs(np.diag(R))
    if diag.size and diag.min() <= 1e-12 * max(diag.max(), np.finfo(float).tiny):
        raise ValueError(f"The rows of {name} are linearly dependent (rank-deficient).")
    return Q  # (d, k), orthonormal columns


def principal_angles(A, B):
    """Principal angles between the subspaces spanned by the rows of A and B.

    Parameters
    ----------
    A : array-like of shape (k_a, d)
        Basis of the first subspace, one basis vector per **row** (like
        ``components_``). Need not be orthonormal; must have full row rank.
    B : array-like of shape (k_b, d)
        Basis of the second subspace, one vector per row.

    Returns
    -------
    angles : ndarray of shape (min(k_a, k_b),)
        Principal angles in **radians**, ascending, each in ``[0, pi/2]``.
        The last one is the largest angle.

    Raises
    ------
    ValueError
        If a basis is not 2-D, is empty, contains NaN/inf, has more rows than
        columns, is rank-deficient, or if the two have different numbers of
        columns.

    Notes
    -----
    Computed as in Björck & Golub (1973): with orthonormal bases ``Qa``, ``Qb``
    the cosines are the singular values of ``Qa^T Qb``; small angles are taken
    from the sines (singular values of ``Qb - Qa Qa^T Qb``) for accuracy, as
    in :func:`scipy.linalg.subspace_angles`.

    Examples
    --------
    >>> import numpy as np
    >>> from aefast.metrics import principal_angles
    >>> principal_angles(np.eye(3)[:1], np.array([[1.0, 1.0, 0.0]]))
    array([0.78539816])
    """
    Qa = _orthonormal_rows(A, "A")
    Qb = _orthonormal_rows(B, "B")
    if Qa.shape[0] != Qb.shape[0]:
        raise ValueError(
            f"A and B must have the same number of columns (dimension), got "
            f"{Qa.shape[0]} and {Qb.shape[0]}."
        )
    if Qa.shape[1] < Qb.shape[1]:
        Qa, Qb = Qb, Qa
    # Qa spans the larger subspace
    C = Qa.T @ Qb
    cos = np.linalg.svd(C, compute_uv=False)
    resid = Qb - Qa @ C
    sin = np.linalg.svd(resid, compute_uv=False)
    sin = np.sort(sin)  # ascending sines <-> ascending angles
    cos = np.sort(cos)[::-1]  # descending cosines <-> ascending angles
    cos = np.clip(cos, 0.0, 1.0)
    sin = np.clip(sin, 0.0, 1.0)
    angles = np.where(cos * cos < 0.5, np.arccos(cos), np.arcsin(sin[: cos.size]))
    return angles


def subspace_distance(A, B):
    """Distance between the subspaces spanned by the rows of A and B.

    Parameters
    ----------
    A : array-like of shape (k, d)
        Basis of the first subspace, one vector per **row**.
    B : array-like of shape (k, d)
        Basis of the second subspace, one vector per row, same ``k``.

    Returns
    -------
    distance : float
        ``||P_A - P_B||_2``, the spectral norm of the difference of the
        orthogonal projectors, which equals the sine of the largest principal
        angle: 0 for identical subspaces, 1 when some direction of one is
        orthogonal to the other.

    Raises
    ------
    ValueError
        On the inputs rejected by :func:`principal_angles`, or when the two
        subspaces have different dimensions (the projector distance is then 1
        trivially, which is rarely what was meant).

    Examples
    --------
    >>> import numpy as np
    >>> from aefast.metrics import subspace_distance
    >>> float(subspace_distance(np.eye(3)[:2], np.eye(3)[[1, 0]]))
    0.0
    """
    A_ = np.asarray(A)
    B_ = np.asarray(B)
    ka = 1 if A_.ndim == 1 else A_.shape[0]
    kb = 1 if B_.ndim == 1 else B_.shape[0]
    if A_.ndim <= 2 and B_.ndim <= 2 and ka != kb:
        raise ValueError(
            f"A and B must span subspaces of the same dimension, got {ka} and {kb} rows."
        )
    return float(np.sin(principal_angles(A, B)[-1]))


def explained_variance_captured(X, components):
    """Fraction of the total variance of X captured by a subspace.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data, one sample per row. It is centred by its own column means.
    components : array-like of shape (k, n_features)
        Basis of the subspace, one vector per **row**; orthonormalised first,
        so any basis of the same subspace gives the same value.

    Returns
    -------
    fraction : float
        ``||X_c Q||_F^2 / ||X_c||_F^2`` in ``[0, 1]``, where ``X_c`` is the
        centred data and ``Q`` an orthonormal basis of the subspace (columns).
        Exact PCA's top-``k`` components maximise it over all k-dimensional
        subspaces, so the ratio of a method's value to exact PCA's is its
        share of the attainable variance.

    Raises
    ------
    ValueError
        If X is not 2-D, has fewer than two samples, has zero total variance,
        contains NaN/inf, or if its number of columns differs from that of
        ``components``.

    Examples
    --------
    >>> import numpy as np
    >>> from aefast.metrics import explained_variance_captured
    >>> X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.5], [0.0, -0.5]])
    >>> round(explained_variance_captured(X, [[1.0, 0.0]]), 3)
    0.8
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array, got shape {X.shape}.")
    if X.shape[0] < 2:
        raise ValueError(f"X needs at least 2 samples, got n_samples={X.shape[0]}.")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinity.")
    Q = _orthonormal_rows(components, "components")
    if Q.shape[0] != X.shape[1]:
        raise ValueError(
            f"components have {Q.shape[0]} features but X has {X.shape[1]} features."
        )
    Xc = X - X.mean(axis=0)
    total = float(np.einsum("ij,ij->", Xc, Xc))
    if total <= 0.0:
        raise ValueError("X has zero total variance.")
    P = Xc @ Q
    return float(np.einsum("ij,ij->", P, P) / total)


def _check_samples(X, name):
    """A non-empty, finite, 2-D float64 array of samples (rows)."""
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {X.dtype}.")
    X = X.astype(np.float64, copy=False)
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (n_samples, n_columns), got shape {X.shape}."
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {X.shape}.")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or infinity.")
    return X


def _check_tol(tol):
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, numbers.Real):
        raise TypeError(f"tol must be a non-negative float, got {tol!r}.")
    tol = float(tol)
    if not (np.isfinite(tol) and tol >= 0.0):
        raise ValueError(f"tol must be a finite float >= 0, got tol={tol!r}.")
    return tol


def l0_per_sample(codes, tol=0.0):
    """Number of active (non-zero) code units of every sample.

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_components)
        Codes, one sample per row (e.g. ``Autoencoder.transform(X)``).
    tol : float, default=0.0
        A unit is active when ``|code| > tol``; the default counts the exact
        non-zeros (a TopK code has exactly ``k`` per row, ties aside).

    Returns
    -------
    l0 : ndarray of shape (n_samples,), dtype int64
        Number of entries of each row with ``|code| > tol``.

    Raises
    ------
    TypeError
        If ``codes`` is not numeric or ``tol`` is not a number.
    ValueError
        If ``codes`` is not 2-D, is empty or contains NaN/inf, or if ``tol`` is
        negative or not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from aefast.metrics import l0_per_sample
    >>> l0_per_sample([[0.0, 1.5, -2.0], [0.0, 0.0, 0.1]])
    array([2, 1])
    >>> l0_per_sample([[0.0, 1.5, -2.0], [0.0, 0.0, 0.1]], tol=0.5)
    array([2, 0])
    """
    Z = _check_samples(codes, "codes")
    tol = _check_tol(tol)
    return np.count_nonzero(np.abs(Z) > tol, axis=1).astype(np.int64)


def dead_latent_fraction(codes, tol=0.0):
    """Fraction of code units that are never active on the given samples.

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_components)
        Codes, one sample per row.
    tol : float, default=0.0
        A unit is active on a sample when ``|code| > tol``.

    Returns
    -------
    fraction : float
        Number of columns ``j`` with ``|codes[i, j]| <= tol`` for every row
        ``i``, divided by ``n_components``; in ``[0, 1]``. It depends on the
        rows given: a unit dead on a small sample may fire on a larger one
        (``Autoencoder.dead_fraction_`` counts over the last training epoch).

    Raises
    ------
    TypeError
        If ``codes`` is not numeric or ``tol`` is not a number.
    ValueError
        If ``codes`` is not 2-D, is empty or contains NaN/inf, or if ``tol`` is
        negative or not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from aefast.metrics import dead_latent_fraction
    >>> dead_latent_fraction([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    0.5
    """
    Z = _check_samples(codes, "codes")
    tol = _check_tol(tol)
    alive = np.any(np.abs(Z) > tol, axis=0)
    return float(np.count_nonzero(~alive) / Z.shape[1])


def normalized_mse(X, X_hat, *, per_sample=False):
    """Mean squared reconstruction error relative to predicting the mean.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Original samples, one per row.
    X_hat : array-like of shape (n_samples, n_features)
        Their reconstructions (e.g. ``Autoencoder.reconstruct(X)``).
    per_sample : bool, default=False
        Return one value per sample instead of one for the whole array.

    Returns
    -------
    nmse : float, or ndarray of shape (n_samples,) when ``per_sample=True``
        ``MSE / D`` with ``MSE = mean_ij (X_ij - X_hat_ij)^2`` and the
        denominator

            ``D = mean_ij (X_ij - mu_j)^2``,  ``mu_j = mean_i X_ij``,

        the mean over all ``n_samples * n_features`` entries of the squared
        deviation of X from its per-feature (column) mean, i.e. the MSE of the
        trivial reconstruction that predicts every sample by the mean sample of
        X (population variance, ``ddof=0``, averaged over features). 0 is a
        perfect reconstruction, 1 is no better than the mean, above 1 is worse.
        With ``per_sample=True`` entry ``i`` is
        ``mean_j (X_ij - X_hat_ij)^2 / D`` with the same ``D`` for every
        sample, so the per-sample values average to the global one.

    Raises
    ------
    TypeError
        If an input is not numeric.
    ValueError
        If an input is not 2-D, is empty or contains NaN/inf, if the shapes of
        ``X`` and ``X_hat`` differ, or if ``D == 0`` (a single sample, or all
        samples identical; deviations at the rounding level of the mean count
        as zero): the error relative to the mean is then undefined.

    Examples
    --------
    >>> import numpy as np
    >>> from aefast.metrics import normalized_mse
    >>> X = np.array([[0.0, 0.0], [2.0, 4.0]])  # mean (1, 2), D = (1 + 4) / 2 = 2.5
    >>> normalized_mse(X, X + 0.5)  # MSE 0.25
    0.1
    >>> normalized_mse(X, np.tile(X.mean(axis=0), (2, 1)))
    1.0
    """
    X = _check_samples(X, "X")
    X_hat = _check_samples(X_hat, "X_hat")
    if X.shape != X_hat.shape:
        raise ValueError(
            f"X and X_hat must have the same shape, got {X.shape} and {X_hat.shape}."
        )
    Xc = X - X.mean(axis=0)
    denom = float(np.einsum("ij,ij->", Xc, Xc)) / Xc.size
    # deviations at the rounding level of the mean (constant data) count as zero
    rounding = 8.0 * X.shape[0] * np.finfo(np.float64).eps * float(np.abs(X).max())
    if not denom > rounding * rounding:
        raise ValueError(
            "X has zero variance about its per-feature mean (a single sample, or all "
            "samples equal): the normalized MSE, whose denominator is the MSE of "
            "predicting that mean, is undefined."
        )
    R = X - X_hat
    if per_sample:
        return np.einsum("ij,ij->i", R, R) / (X.shape[1] * denom)
    return float(np.einsum("ij,ij->", R, R) / R.size / denom)
