"""Tests for aefast.datasets: the IDX reader, the Fashion-MNIST loader and digits."""

import gzip
import os
import struct

import numpy as np
import pytest

from aefast.datasets import FASHION_MNIST_DIR, load_digits, load_fashion_mnist, read_idx

IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(array):
    """Encode ``array`` as an IDX file (the reference writer for these tests)."""
    array = np.asarray(array)
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, compress=False):
    data = idx_bytes(array)
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)
    return path


# ---------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("dtype", list(IDX_CODES))
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((5, 3, 7)) * 50).astype(dtype)
    path = write_idx(tmp_path / "a.idx", a, compress=compress)
    b = read_idx(path)
    assert b.dtype == dtype and b.dtype.isnative
    assert b.shape == a.shape
    np.testing.assert_array_equal(a, b)
    assert b.flags.writeable and b.flags.c_contiguous


def test_read_idx_one_dimensional_and_str_path(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    path = write_idx(tmp_path / "labels", a)
    np.testing.assert_array_equal(read_idx(str(path)), a)


def test_read_idx_gzip_detected_by_content_not_name(tmp_path):
    a = np.arange(12, dtype=np.int32).reshape(3, 4)
    path = write_idx(tmp_path / "no_suffix", a, compress=True)
    np.testing.assert_array_equal(read_idx(path), a)


def test_read_idx_bad_magic(tmp_path):
    data = bytearray(idx_bytes(np.zeros((2, 2), np.uint8)))
    data[0] = 0x12
    path = tmp_path / "bad"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="magic"):
        read_idx(path)


def test_read_idx_unknown_type_code(tmp_path):
    data = bytearray(idx_bytes(np.zeros((2, 2), np.uint8)))
    data[2] = 0x42
    path = tmp_path / "bad"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="type code"):
        read_idx(path)


def test_read_idx_truncated_data(tmp_path):
    data = idx_bytes(np.ones((4, 5), np.uint8))
    path = tmp_path / "short"
    path.write_bytes(data[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    data = idx_bytes(np.ones((4, 5), np.uint8))
    path = tmp_path / "long"
    path.write_bytes(data + b"\x00")
    with pytest.raises(ValueError, match="trailing"):
        read_idx(path)


def test_read_idx_header_declares_more_dims_than_present(tmp_path):
    path = tmp_path / "hdr"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 10))
    with pytest.raises(ValueError, match="header"):
        read_idx(path)


@pytest.mark.parametrize("content", [b"", b"\x00\x00"])
def test_read_idx_too_short(tmp_path, content):
    path = tmp_path / "tiny"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)


def test_read_idx_huge_declared_shape_is_refused_without_allocating(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(bytes([0, 0, 0x0E, 3]) + struct.pack(">III", 2**31, 2**31, 2**20))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_read_idx_truncated_gzip(tmp_path):
    full = tmp_path / "full.gz"
    write_idx(full, np.arange(1000, dtype=np.int32), compress=True)
    path = tmp_path / "cut.gz"
    path.write_bytes(full.read_bytes()[:-20])
    with pytest.raises(ValueError, match="gzip|truncated"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


# ---------------------------------------------------------------------------- Fashion-MNIST


def make_fake_fashion(folder, n_train=6, n_test=4, compress=True):
    rng = np.random.default_rng(1)
    suffix = ".gz" if compress else ""
    out = {}
    for kind, stem, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(os.path.join(folder, f"{stem}-images-idx3-ubyte{suffix}"), images, compress)
        write_idx(os.path.join(folder, f"{stem}-labels-idx1-ubyte{suffix}"), labels, compress)
        out[kind] = (images, labels)
    return out


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("kind", ["train", "test"])
def test_load_fashion_mnist_from_folder(tmp_path, compress, kind):
    ref = make_fake_fashion(tmp_path, compress=compress)
    X, y = load_fashion_mnist(tmp_path, kind=kind)
    images, labels = ref[kind]
    assert X.dtype == np.float32 and X.shape == (len(labels), 784)
    assert y.dtype == np.int64
    assert X.flags.c_contiguous
    np.testing.assert_allclose(X, images.reshape(len(labels), 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    assert X.min() >= 0.0 and X.max() <= 1.0


def test_load_fashion_mnist_missing_folder_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "absent")


def test_load_fashion_mnist_missing_file_message(tmp_path):
    make_fake_fashion(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    load_fashion_mnist(tmp_path, kind="train")  # the other split is unaffected
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte.*--data PATH"):
        load_fashion_mnist(tmp_path, kind="test")


def test_load_fashion_mnist_bad_kind(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        load_fashion_mnist(tmp_path, kind="validation")


def test_load_fashion_mnist_count_mismatch(tmp_path):
    make_fake_fashion(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8), compress=True)
    with pytest.raises(ValueError, match="labels"):
        load_fashion_mnist(tmp_path)


def test_load_fashion_mnist_wrong_file_type(tmp_path):
    make_fake_fashion(tmp_path)
    # labels file put where images belong
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros(6, np.uint8), compress=True)
    with pytest.raises(ValueError, match="images"):
        load_fashion_mnist(tmp_path)


@pytest.mark.skipif(
    not os.path.isdir(FASHION_MNIST_DIR), reason="dataset-fashion-mnist not installed"
)
def test_load_fashion_mnist_installed_test_split():
    X, y = load_fashion_mnist(kind="test")
    assert X.shape == (10000, 784) and X.dtype == np.float32
    assert y.shape == (10000,) and y.dtype == np.int64
    assert 0.0 <= X.min() and X.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 1000))


# ---------------------------------------------------------------------------- digits


def test_load_digits_scaled():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32 and X.flags.c_contiguous
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10))


def test_load_digits_unscaled():
    X, _ = load_digits(scaled=False)
    Xs, _ = load_digits()
    assert X.dtype == np.float32 and X.max() == 16.0
    np.testing.assert_allclose(X / 16, Xs)
