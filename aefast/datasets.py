"""Default data sets: scikit-learn's digits (embedded) and Fashion-MNIST (IDX files).

``load_digits`` needs nothing beyond scikit-learn, which ships the 1,797 8x8 digit images
inside its wheel, so it is the data every example and test can rely on. Fashion-MNIST is read
from the IDX files of the Debian package ``dataset-fashion-mnist`` (installed under
``/usr/share/datasets/fashion-mnist/``) or from any folder holding the same four files,
gzipped or not; nothing is ever downloaded.

``read_idx`` is the generic IDX reader behind it. IDX is the format of the original MNIST
distribution: two zero bytes, a type code, the number of dimensions, one big-endian ``uint32``
per dimension, then the values in big-endian C order. The reader checks all of it and refuses a
corrupt, truncated or padded file with a ``ValueError`` rather than returning wrong data.
"""

import gzip
import math
import os
import zlib

import numpy as np

__all__ = ["load_digits", "load_fashion_mnist", "read_idx", "FASHION_MNIST_DIR"]

#: Where the Debian package ``dataset-fashion-mnist`` installs the Fashion-MNIST IDX files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

# IDX type code -> (NumPy dtype of the big-endian values on disk)
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_FASHION_HELP = (
    "Fashion-MNIST is not bundled with aefast. Install it with "
    "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu; files go to {default}/), "
    "or download the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into a folder and pass it as "
    "`path=` (or `--data PATH` on the command line)."
)


def load_digits(scaled=True):
    """Load scikit-learn's handwritten digits, embedded in scikit-learn (no download).

    Parameters
    ----------
    scaled : bool, default=True
        If True, divide the pixel values (integers 0 to 16) by 16 so that they lie in
        ``[0, 1]``, which makes them suitable for a sigmoid output and cross-entropy loss.
        If False, return the raw values 0 to 16 (still as float32).

    Returns
    -------
    X : ndarray of shape (1797, 64), dtype float32
        One flattened 8x8 image per row, C-contiguous.
    y : ndarray of shape (1797,), dtype int64
        The digit shown in each image, 0 to 9.

    Examples
    --------
    >>> from aefast.datasets import load_digits
    >>> X, y = load_digits()
    >>> X.shape, X.dtype, float(X.max())
    ((1797, 64), dtype('float32'), 1.0)
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    data = _sk_load_digits()
    X = np.ascontiguousarray(data.data, dtype=np.float32)
    if scaled:
        X /= np.float32(16.0)
    y = np.asarray(data.target, dtype=np.int64)
    return X, y


def _read_bytes(path):
    """Return the whole (decompressed) content of ``path`` as bytes."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            with gzip.open(path, "rb") as f:
                return f.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc
    with open(path, "rb") as f:
        return f.read()


def read_idx(path):
    """Read an IDX file (the MNIST file format), gzipped or not.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip compression is detected from the content, not the name.

    Returns
    -------
    array : ndarray
        The values with the shape stored in the header, in native byte order, with the
        dtype the header names (uint8, int8, int16, int32, float32 or float64).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a valid IDX file: wrong magic number, unknown type code, a
        header shorter than its dimensions require, or a data section whose size does not
        match the dimensions (truncated or padded file), or a corrupt gzip stream.

    Notes
    -----
    The header is ``0x00 0x00``, a type code byte (``0x08`` uint8, ``0x09`` int8,
    ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of
    dimensions as one byte, then each dimension as a big-endian uint32. The values follow
    in big-endian C order.

    Examples
    --------
    >>> from aefast.datasets import read_idx
    >>> images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> images.shape  # doctest: +SKIP
    (10000, 28, 28)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(raw)} bytes, header needs 4)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file (magic number {raw[:4].hex()} does not start with 0000)"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: not an IDX file (unknown type code 0x{code:02x}; expected one of "
            + ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
            + ")"
        )
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(
            f"{path}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions need {header_len})"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    actual = len(raw) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX file {what}: header says shape {shape} of {dtype.newbyteorder('=')} "
            f"({expected} data bytes) but the file holds {actual}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    # native byte order, writeable, owning its memory
    return data.astype(dtype.newbyteorder("="), copy=True)


def _find(folder, stem):
    """Return the path of ``stem`` or ``stem + '.gz'`` in ``folder``, or None."""
    for name in (stem, stem + ".gz"):
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def load_fashion_mnist(path=None, kind="train"):
    """Load Fashion-MNIST from its IDX files, scaled to ``[0, 1]``.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Folder holding the IDX files (``train-images-idx3-ubyte[.gz]``,
        ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``,
        ``t10k-labels-idx1-ubyte[.gz]``). Defaults to :data:`FASHION_MNIST_DIR`
        (``/usr/share/datasets/fashion-mnist``), where the Debian package
        ``dataset-fashion-mnist`` installs them.
    kind : {"train", "test"}, default="train"
        Which split: 60,000 training or 10,000 test images.

    Returns
    -------
    X : ndarray of shape (n_samples, 784), dtype float32
        The 28x28 images flattened row by row, divided by 255, C-contiguous.
    y : ndarray of shape (n_samples,), dtype int64
        Class labels 0 to 9.

    Raises
    ------
    FileNotFoundError
        If the folder or one of the two files of the split is missing; the message says
        how to install the data.
    ValueError
        If ``kind`` is not "train" or "test", a file is not a valid IDX file, or images and
        labels disagree in number or shape.

    Examples
    --------
    >>> from aefast.datasets import load_fashion_mnist
    >>> X, y = load_fashion_mnist(kind="test")  # doctest: +SKIP
    >>> X.shape, y.shape  # doctest: +SKIP
    ((10000, 784), (10000,))
    """
    if kind not in _FASHION_FILES:
        raise ValueError(f"kind must be 'train' or 'test', got {kind!r}")
    folder = FASHION_MNIST_DIR if path is None else os.fspath(path)
    help_text = _FASHION_HELP.format(default=FASHION_MNIST_DIR)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Fashion-MNIST folder not found: {folder}. {help_text}")
    image_stem, label_stem = _FASHION_FILES[kind]
    image_path = _find(folder, image_stem)
    label_path = _find(folder, label_stem)
    missing = [s for s, p in ((image_stem, image_path), (label_stem, label_path)) if p is None]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST {kind} files missing in {folder}: "
            + ", ".join(f"{s}[.gz]" for s in missing)
            + f". {help_text}"
        )

    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{image_path}: expected uint8 images of shape (n, rows, cols), "
            f"got {images.dtype} of shape {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(
            f"{label_path}: expected uint8 labels of shape (n,), "
            f"got {labels.dtype} of shape {labels.shape}"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Fashion-MNIST {kind}: {images.shape[0]} images but {labels.shape[0]} labels"
        )
    n = images.shape[0]
    X = images.reshape(n, -1).astype(np.float32)
    X /= np.float32(255.0)
    y = labels.astype(np.int64)
    return X, y
