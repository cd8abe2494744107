"""Data augmentation in an autoencoder's code space (DeVries & Taylor, 2017).

Encode the samples, perturb the codes, decode: new samples that follow the
data manifold the model learned instead of pixel-space transformations. The
three perturbations of *Dataset Augmentation in Feature Space* (DeVries and
Taylor, ICLR workshop 2017), for a code ``c_j`` and a code ``c_k`` drawn among
the ``n_neighbors`` nearest codes of the same class:

- noise:         ``c' = c_j + scale * sigma * eps``, ``eps ~ N(0, I)``, ``sigma``
  the per-dimension standard deviation of the codes;
- interpolation: ``c' = (c_k - c_j) * lam + c_j``;
- extrapolation: ``c' = (c_j - c_k) * lam + c_j``.

Each returns ``(X_new, y_new)``, the decoded samples and the labels of their
source samples. :func:`generate` draws new samples from a VAE's prior.

``model`` is any fitted model with ``transform`` (codes) and
``inverse_transform`` (decoding): an :class:`aefast.Autoencoder`, a VAE
(posterior means), a :class:`aefast.StackedAutoencoder`, or even PCA.
"""
import numpy as np
from sklearn.utils import check_array, check_consistent_length

from .models._random import as_generator
from .models._validation import check_float, check_int

__all__ = ["add_noise", "interpolate", "extrapolate", "generate"]


def _check_model(model, *methods):
    for method in methods:
        if not callable(getattr(model, method, None)):
            raise TypeError(f"model needs a {method}() method; {type(model).__name__} has none")


def _check_Xy(X, y):
    X = check_array(X, dtype=[np.float32, np.float64], input_name="X")
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (one label per row of X), got shape {y.shape}")
    check_consistent_length(X, y)
    return X, y


def _sources(n, n_new, rng):
    """Row indices of the source samples: every row once (n_new=None) or n_new drawn."""
    if n_new is None:
        return np.arange(n)
    n_new = check_int(n_new, "n_new", low=0)
    return rng.choice(n, size=n_new, replace=n_new > n)


def _decode(model, codes, X, clip):
    X_new = np.asarray(model.inverse_transform(codes))
    if clip:
        X_new = np.clip(X_new, X.min(), X.max())
    return X_new


def add_noise(model, X, y, scale=0.5, n_new=None, clip=False, random_state=None):
    """New samples from Gaussian noise added to the codes.

    Parameters
    ----------
    model : fitted estimator with ``transform`` and ``inverse_transform``
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Labels; a new sample takes its source's label.
    scale : float >= 0, default=0.5
        Noise level ``gamma`` relative to the per-dimension standard deviation
        of the codes of X (DeVries & Taylor use 0.5).
    n_new : int or None, default=None
        Number of new samples; ``None`` makes one per row of X (in order),
        otherwise the sources are drawn at random (with replacement only when
        ``n_new > n_samples``).
    clip : bool, default=False
        Clip the decoded samples to ``[X.min(), X.max()]``.
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    X_new : ndarray of shape (n_new, n_features)
    y_new : ndarray of shape (n_new,)
    """
    _check_model(model, "transform", "inverse_transform")
    X, y = _check_Xy(X, y)
    scale = check_float(scale, "scale", low=0)
    rng = as_generator(random_state)
    idx = _sources(X.shape[0], n_new, rng)
    codes = np.asarray(model.transform(X), dtype=np.float64)
    sigma = codes.std(axis=0)
    new = codes[idx] + scale * sigma * rng.standard_normal((idx.shape[0], codes.shape[1]))
    return _decode(model, new, X, clip), y[idx]


def _neighbour_pairs(codes, y, idx, n_neighbors, rng, what):
    """For each source row j in idx, a random row k among its same-class nearest codes."""
    from sklearn.neighbors import NearestNeighbors

    n_neighbors = check_int(n_neighbors, "n_neighbors", low=1)
    classes, counts = np.unique(y, return_counts=True)
    lonely = classes[counts < 2]
    if lonely.size:
        raise ValueError(f"{what} needs at least 2 samples of each class; class(es) "
                         f"{lonely.tolist()} have only one")
    partner = np.empty(idx.shape[0], dtype=np.int64)
    for label in classes:
        members = np.flatnonzero(y == label)
        wanted = np.flatnonzero(y[idx] == label)
        if wanted.size == 0:
            continue
        k = min(n_neighbors, members.size - 1)
        nn = NearestNeighbors(n_neighbors=k + 1).fit(codes[members])
        # position of each source among its class's members
        local = np.searchsorted(members, idx[wanted])
        neigh = nn.kneighbors(codes[idx[wanted]], return_distance=False)
        # drop the sample itself (not always first when codes are duplicated; when it
        # is not among the k + 1 at all, drop the farthest)
        keep = neigh != local[:, None]
        keep[keep.all(axis=1), -1] = False
        cand = neigh[keep].reshape(-1, k)
        pick = rng.integers(k, size=cand.shape[0])
        partner[wanted] = members[cand[np.arange(cand.shape[0]), pick]]
    return partner


def _pairwise(model, X, y, lam, n_neighbors, n_new, clip, random_state, sign, what):
    _check_model(model, "transform", "inverse_transform")
    X, y = _check_Xy(X, y)
    rng = as_generator(random_state)
    idx = _sources(X.shape[0], n_new, rng)
    codes = np.asarray(model.transform(X), dtype=np.float64)
    k = _neighbour_pairs(codes, y, idx, n_neighbors, rng, what)
    cj, ck = codes[idx], codes[k]
    # interpolation: (c_k - c_j) * lam + c_j ; extrapolation: (c_j - c_k) * lam + c_j
    new = sign * (cj - ck) * lam + cj
    return _decode(model, new, X, clip), y[idx]


def interpolate(model, X, y, lam=0.5, n_neighbors=10, n_new=None, clip=False,
                random_state=None):
    """New samples between same-class nearest neighbours in code space.

    ``c' = (c_k - c_j) * lam + c_j`` for each source ``c_j`` and a ``c_k``
    drawn among its ``n_neighbors`` nearest same-class codes.

    Parameters
    ----------
    model : fitted estimator with ``transform`` and ``inverse_transform``
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Labels; every class needs at least two samples.
    lam : float in [0, 1], default=0.5
        0 returns the source's code, 1 its neighbour's.
    n_neighbors : int, default=10
        How many nearest same-class codes (Euclidean) the partner is drawn
        from; capped at the class size minus one.
    n_new : int or None, default=None
        ``None``: one per row of X, in order; otherwise drawn at random.
    clip : bool, default=False
        Clip the decoded samples to ``[X.min(), X.max()]``.
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    X_new : ndarray of shape (n_new, n_features)
    y_new : ndarray of shape (n_new,)
        The source's label (the partner has the same).
    """
    lam = check_float(lam, "lam", low=0, high=1)
    return _pairwise(model, X, y, lam, n_neighbors, n_new, clip, random_state, -1.0,
                     "interpolate")


def extrapolate(model, X, y, lam=0.5, n_neighbors=10, n_new=None, clip=False,
                random_state=None):
    """New samples beyond each code, away from a same-class nearest neighbour.

    ``c' = (c_j - c_k) * lam + c_j`` for each source ``c_j`` and a ``c_k``
    drawn among its ``n_neighbors`` nearest same-class codes (DeVries &
    Taylor's best variant, lam = 0.5).

    Parameters
    ----------
    model : fitted estimator with ``transform`` and ``inverse_transform``
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Labels; every class needs at least two samples.
    lam : float >= 0, default=0.5
    n_neighbors : int, default=10
    n_new : int or None, default=None
        ``None``: one per row of X, in order; otherwise drawn at random.
    clip : bool, default=False
        Clip the decoded samples to ``[X.min(), X.max()]``.
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    X_new : ndarray of shape (n_new, n_features)
    y_new : ndarray of shape (n_new,)
    """
    lam = check_float(lam, "lam", low=0)
    return _pairwise(model, X, y, lam, n_neighbors, n_new, clip, random_state, 1.0,
                     "extrapolate")


def generate(vae, n, random_state=None):
    """Draw ``n`` new samples from a generative model (``vae.sample``).

    Parameters
    ----------
    vae : fitted model with ``sample(n, random_state=...)``, e.g. ``aefast.VAE``
    n : int >= 1
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    X_new : ndarray of shape (n, n_features)
        Unlabelled samples (decoded draws from the prior).
    """
    if not callable(getattr(vae, "sample", None)):
        raise TypeError(f"generate needs a generative model with a sample() method (such as "
                        f"aefast.VAE); {type(vae).__name__} has none")
    n = check_int(n, "n", low=1)
    return np.asarray(vae.sample(n, random_state=random_state))
