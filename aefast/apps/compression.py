"""Lossy compression with an autoencoder's code: quantize, store, decode.

A sample is stored as its code, each dimension quantized uniformly to ``bits``
bits over the range that dimension takes on the training codes. The decoder
(shared by every sample, not counted in the rate) turns the integers back into
a reconstruction. Any model with ``transform`` and ``inverse_transform`` works:
an :class:`aefast.Autoencoder`, a VAE, or scikit-learn's ``PCA``, which is how
:func:`rate_distortion` compares the two at equal code bits.
"""
import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from ..models._validation import check_float, check_int


def _is_fitted(model):
    try:
        check_is_fitted(model)
    except NotFittedError:
        return False
    except TypeError:  # not an estimator scikit-learn can inspect: assume ready
        return True
    return True


class Compressor(BaseEstimator):
    """Quantize an autoencoder's codes to ``bits`` bits per dimension.

    Parameters
    ----------
    model : estimator with ``transform`` and ``inverse_transform``
        The code model. If it is already fitted it is used as it is (not
        copied); otherwise ``fit`` trains a clone of it on the same data.
    bits : int in [1, 16], default=8
        Bits per code dimension. Codes are stored as ``uint8`` up to 8 bits
        and ``uint16`` above.
    data_range : float or None, default=None
        Peak-to-peak range of the data for the PSNR. ``None`` uses
        ``max - min`` of the training data (1.0 for images scaled to [0, 1]).

    Attributes
    ----------
    model_ : estimator
        The fitted code model.
    code_min_, code_max_ : ndarray of shape (n_components,)
        Per-dimension range of the training codes; the quantization grid has
        ``2**bits`` levels from ``code_min_`` to ``code_max_``, and codes
        outside it are clipped.
    step_ : ndarray of shape (n_components,)
        Grid spacing ``(code_max_ - code_min_) / (2**bits - 1)``; the
        quantization error of an in-range code is at most ``step_ / 2``.
    data_range_ : float
        The range used by the PSNR.
    n_components_ : int
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.decomposition import PCA
    >>> from aefast.datasets import load_digits
    >>> import aefast
    >>> X, _ = load_digits()
    >>> comp = aefast.Compressor(PCA(16), bits=8).fit(X)
    >>> codes = comp.compress(X)
    >>> codes.dtype, codes.shape
    (dtype('uint8'), (1797, 16))
    >>> comp.report(X)["bytes_per_sample"]
    16.0
    """

    def __init__(self, model, bits=8, data_range=None):
        self.model = model
        self.bits = bits
        self.data_range = data_range

    def _check_params(self):
        bits = check_int(self.bits, "bits", low=1, high=16)
        if not (hasattr(self.model, "transform") and hasattr(self.model, "inverse_transform")):
            raise TypeError("model needs transform and inverse_transform methods, got "
                            f"{type(self.model).__name__}")
        if self.data_range is not None:
            check_float(self.data_range, "data_range", low=0, low_inclusive=False)
        return bits

    def fit(self, X, y=None):
        """Learn the code ranges (and train the model first if it is unfitted).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : ignored

        Returns
        -------
        self
        """
        bits = self._check_params()
        X = check_array(X, dtype=[np.float32, np.float64], input_name="X")
        self.model_ = self.model if _is_fitted(self.model) else clone(self.model).fit(X)
        codes = np.asarray(self.model_.transform(X), dtype=np.float64)
        self.code_min_ = codes.min(axis=0)
        self.code_max_ = codes.max(axis=0)
        self.levels_ = 2**bits - 1
        self.step_ = (self.code_max_ - self.code_min_) / self.levels_
        self.dtype_ = np.dtype(np.uint8 if bits <= 8 else np.uint16)
        self.data_range_ = (float(np.ptp(X)) if self.data_range is None
                            else float(self.data_range))
        if self.data_range_ == 0:
            self.data_range_ = 1.0
        self.n_components_ = codes.shape[1]
        self.n_features_in_ = X.shape[1]
        self._bits = bits
        return self

    def compress(self, X):
        """Quantized codes of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_components_), uint8 or uint16
            ``round((code - code_min_) / step_)``, clipped to ``[0, 2**bits - 1]``.
            ``.tobytes()`` gives the byte string.
        """
        check_is_fitted(self, "model_")
        X = check_array(X, dtype=[np.float32, np.float64], input_name="X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but the Compressor was fitted "
                             f"with {self.n_features_in_}")
        codes = np.asarray(self.model_.transform(X), dtype=np.float64)
        scale = np.divide(1.0, self.step_, out=np.zeros_like(self.step_), where=self.step_ > 0)
        q = np.rint((codes - self.code_min_) * scale)
        return np.clip(q, 0, self.levels_).astype(self.dtype_)

    def decompress(self, codes):
        """Reconstructions from quantized codes.

        Parameters
        ----------
        codes : array-like of shape (n_samples, n_components_), integers
            As returned by :meth:`compress` (or a byte string of them, which is
            reshaped).

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_)
        """
        check_is_fitted(self, "model_")
        if isinstance(codes, (bytes, bytearray, memoryview)):
            codes = np.frombuffer(codes, dtype=self.dtype_).reshape(-1, self.n_components_)
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.n_components_:
            raise ValueError(f"codes must have shape (n_samples, {self.n_components_}), "
                             f"got {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer):
            raise TypeError(f"codes must be integers (from compress), got {codes.dtype}")
        if codes.size and (codes.min() < 0 or codes.max() > self.levels_):
            raise ValueError(f"codes must lie in [0, {self.levels_}] for bits={self._bits}")
        Z = self.code_min_ + codes.astype(np.float64) * self.step_
        return np.asarray(self.model_.inverse_transform(Z))

    def report(self, X):
        """Rate and distortion of compressing X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        dict
            - ``bits_per_sample``: ``n_components * bits``;
            - ``bytes_per_sample``: ``bits_per_sample / 8``, the size of a
              bit-packed code (``compress`` returns one ``uint8``/``uint16``
              per dimension: ``stored_bytes_per_sample``);
            - ``compression_ratio``: raw float32 input (``4 * n_features``
              bytes) over ``bytes_per_sample``;
            - ``compression_ratio_8bit``: raw 8-bit input (``n_features``
              bytes, e.g. uint8 pixels) over ``bytes_per_sample``;
            - ``mse``: mean squared error of ``decompress(compress(X))``, over
              samples and features;
            - ``model_mse``: the same without quantization,
              ``inverse_transform(transform(X))``;
            - ``psnr``: ``10 log10(data_range**2 / mse)`` in dB;
            - ``data_range``: the range used for the PSNR;
            - ``clipped_fraction``: fraction of code values outside the
              training range (clipped by the quantizer).

            The rate counts the codes only: the decoder and the code ranges
            are stored once, not per sample.
        """
        check_is_fitted(self, "model_")
        X = check_array(X, dtype=[np.float32, np.float64], input_name="X")
        q = self.compress(X)
        rec = self.decompress(q)
        codes = np.asarray(self.model_.transform(X), dtype=np.float64)
        model_rec = np.asarray(self.model_.inverse_transform(codes))
        X64 = X.astype(np.float64)
        mse = float(np.mean((X64 - rec) ** 2))
        bits = self.n_components_ * self._bits
        return {
            "n_components": int(self.n_components_),
            "bits": int(self._bits),
            "bits_per_sample": int(bits),
            "bytes_per_sample": bits / 8,
            "stored_bytes_per_sample": int(self.n_components_ * self.dtype_.itemsize),
            "compression_ratio": 4 * self.n_features_in_ / (bits / 8),
            "compression_ratio_8bit": self.n_features_in_ / (bits / 8),
            "mse": mse,
            "model_mse": float(np.mean((X64 - model_rec) ** 2)),
            "psnr": psnr(mse, self.data_range_),
            "data_range": self.data_range_,
            "clipped_fraction": float(np.mean((codes < self.code_min_)
                                              | (codes > self.code_max_))),
        }


def psnr(mse, data_range):
    """Peak signal-to-noise ratio ``10 log10(data_range**2 / mse)`` in dB (inf at mse 0)."""
    if mse <= 0:
        return float("inf")
    return float(10 * np.log10(data_range**2 / mse))


def _default_autoencoder(n_features, random_state):
    from ..models import Autoencoder

    return Autoencoder(hidden_layers=(min(128, max(1, n_features)),), n_components=2,
                       max_epochs=50, batch_size=128, random_state=random_state)


def rate_distortion(X_train, X_test, code_sizes, bits=8, estimator=None, data_range=None,
                    random_state=None):
    """Rate-distortion points of an autoencoder and of PCA at equal code bits.

    For each code size ``k`` and each ``b`` in ``bits``, an autoencoder with
    ``n_components=k`` and ``PCA(k)`` are fitted on ``X_train``, their codes
    quantized to ``b`` bits per dimension (:class:`Compressor`), and
    ``X_test`` compressed: both spend ``k * b`` bits per sample.

    Parameters
    ----------
    X_train, X_test : array-like of shape (n_samples, n_features)
    code_sizes : sequence of int
    bits : int or sequence of int, default=8
    estimator : aefast autoencoder or None, default=None
        Template for the autoencoder (cloned with ``n_components=k``). ``None``:
        ``Autoencoder(hidden_layers=(min(128, n_features),), max_epochs=50,
        batch_size=128)``.
    data_range : float or None, default=None
        For the PSNR; ``None`` uses ``max - min`` of ``X_train``.
    random_state : int or None, default=None
        Seeds the autoencoders (replacing the template's seed when not None).

    Returns
    -------
    list of dict
        One per (method, k, b), method ``"autoencoder"`` or ``"pca"``, with the
        keys of :meth:`Compressor.report` plus ``method``.
    """
    from sklearn.decomposition import PCA

    X_train = check_array(X_train, dtype=[np.float32, np.float64], input_name="X_train")
    X_test = check_array(X_test, dtype=[np.float32, np.float64], input_name="X_test")
    sizes = [check_int(k, "code_sizes entries", low=1) for k in np.atleast_1d(code_sizes)]
    bit_list = [check_int(b, "bits entries", low=1, high=16) for b in np.atleast_1d(bits)]
    if max(sizes) > min(X_train.shape):
        raise ValueError(f"code_sizes up to {max(sizes)} need at least that many samples and "
                         f"features for PCA; X_train has shape {X_train.shape}")
    if data_range is None:
        data_range = float(np.ptp(X_train)) or 1.0
    template = (_default_autoencoder(X_train.shape[1], random_state) if estimator is None
                else clone(estimator))
    if random_state is not None and "random_state" in template.get_params(deep=False):
        template.set_params(random_state=random_state)
    points = []
    for k in sizes:
        models = {"autoencoder": clone(template).set_params(n_components=k).fit(X_train),
                  "pca": PCA(k, svd_solver="full").fit(X_train)}
        for method, model in models.items():
            for b in bit_list:
                rep = Compressor(model, bits=b, data_range=data_range).fit(X_train).report(X_test)
                points.append({"method": method, **rep})
    return points


def plot_rate_distortion(points, ax=None):
    """Draw PSNR against bits per sample, one line per method and bit depth.

    Parameters
    ----------
    points : list of dict
        As returned by :func:`rate_distortion`.
    ax : matplotlib Axes or None
        Where to draw; ``None`` makes a new figure.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ImportError
        When matplotlib is not installed (``pip install aefast[plot]``).
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plot_rate_distortion needs matplotlib: pip install "
                          "'aefast[plot]'") from exc
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    groups = {}
    for p in points:
        groups.setdefault((p["method"], p["bits"]), []).append(p)
    methods = sorted({method for method, _ in groups})
    depths = sorted({bits for _, bits in groups})
    styles = ("-", "--", ":", "-.")
    for (method, bits), pts in sorted(groups.items()):
        pts = sorted(pts, key=lambda p: p["bits_per_sample"])
        ax.plot([p["bits_per_sample"] for p in pts], [p["psnr"] for p in pts], marker="o",
                color=f"C{methods.index(method)}",
                linestyle=styles[depths.index(bits) % len(styles)],
                label=f"{method}, {bits} bits/dim")
    ax.set_xlabel("bits per sample (code)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("Rate-distortion: autoencoder vs PCA")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return ax
