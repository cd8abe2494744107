"""Metrics comparing subspaces and measuring captured variance.

Conventions
-----------
* A basis is a 2-D array whose **rows** are the basis vectors, shape
  ``(k, d)``: the layout of ``components_`` in scikit-learn and aefast. The rows
  need not be orthonormal; every function orthonormalises them first (QR), so
  only the spanned subspace matters.
* Angles are in **radians**, in ``[0, pi/2]``, sorted in ascending order.
* All computation is in float64 whatever the input dtype.
"""

import numpy as np

__all__ = ["principal_angles", "subspace_distance", "explained_variance_captured"]


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
