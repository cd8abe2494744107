"""Compressor: quantization round trip, rate and distortion, rate-distortion vs PCA."""
import numpy as np
import pytest
from sklearn.decomposition import PCA

import aefast
from aefast.apps.compression import Compressor, plot_rate_distortion, psnr, rate_distortion
from aefast.datasets import load_digits


@pytest.fixture(scope="module")
def digits():
    X, _ = load_digits()
    return X[:1400], X[1400:]


@pytest.fixture(scope="module")
def autoencoder(digits):
    X_train, _ = digits
    return aefast.Autoencoder(hidden_layers=(32,), n_components=8, max_epochs=20,
                              batch_size=64, random_state=0).fit(X_train)


@pytest.mark.parametrize("bits, dtype", [(1, np.uint8), (8, np.uint8), (12, np.uint16),
                                         (16, np.uint16)])
def test_round_trip_shapes_and_dtypes(digits, autoencoder, bits, dtype):
    X_train, X_test = digits
    comp = Compressor(autoencoder, bits=bits).fit(X_train)
    q = comp.compress(X_test)
    assert q.dtype == dtype and q.shape == (len(X_test), 8)
    assert q.max() <= 2**bits - 1
    rec = comp.decompress(q)
    assert rec.shape == X_test.shape
    np.testing.assert_array_equal(comp.decompress(q.tobytes()), rec)
    # the fitted model is used as it is, not copied
    assert comp.model_ is autoencoder


def test_quantization_error_is_bounded(digits, autoencoder):
    X_train, _ = digits
    comp = Compressor(autoencoder, bits=5).fit(X_train)
    codes = autoencoder.transform(X_train).astype(np.float64)
    dequantized = comp.code_min_ + comp.compress(X_train) * comp.step_
    assert np.all(np.abs(dequantized - codes) <= comp.step_ / 2 + 1e-6 * comp.step_.max())
    np.testing.assert_allclose(comp.code_min_, codes.min(0))
    np.testing.assert_allclose(comp.code_max_, codes.max(0))


def test_pca_distortion_is_model_error_plus_quantization(digits):
    """For PCA (orthonormal decoder) the two errors are orthogonal and add up exactly."""
    X_train, _ = digits
    pca = PCA(10).fit(X_train)
    comp = Compressor(pca, bits=4).fit(X_train)
    q = comp.compress(X_train)
    code_err = (comp.code_min_ + q * comp.step_) - pca.transform(X_train)
    report = comp.report(X_train)
    d = X_train.shape[1]
    expected = report["model_mse"] + np.mean(np.sum(code_err**2, axis=1)) / d
    assert report["mse"] == pytest.approx(expected, rel=1e-4)
    bound = report["model_mse"] + np.sum((comp.step_ / 2) ** 2) / d
    assert report["model_mse"] < report["mse"] <= bound


def test_distortion_falls_with_bits(digits, autoencoder):
    X_train, X_test = digits
    reports = [Compressor(autoencoder, bits=b).fit(X_train).report(X_test) for b in (2, 4, 8)]
    psnrs = [r["psnr"] for r in reports]
    assert psnrs[0] < psnrs[1] < psnrs[2]
    # at 8 bits quantization adds little to the model's own error
    assert reports[2]["mse"] < 1.05 * reports[2]["model_mse"]


def test_report_numbers(digits, autoencoder):
    X_train, X_test = digits
    r = Compressor(autoencoder, bits=8).fit(X_train).report(X_test)
    assert r["bits_per_sample"] == 64 and r["bytes_per_sample"] == 8
    assert r["stored_bytes_per_sample"] == 8
    assert r["compression_ratio"] == 64 * 4 / 8          # vs float32 pixels
    assert r["compression_ratio_8bit"] == 64 / 8         # vs uint8 pixels
    assert r["data_range"] == 1.0
    assert r["psnr"] == pytest.approx(10 * np.log10(1 / r["mse"]))
    assert 0 <= r["clipped_fraction"] < 0.05
    r12 = Compressor(autoencoder, bits=12).fit(X_train).report(X_test)
    assert r12["bytes_per_sample"] == 12 and r12["stored_bytes_per_sample"] == 16
    assert psnr(0.0, 1.0) == float("inf")


def test_unfitted_model_is_cloned_and_fitted(digits):
    X_train, X_test = digits
    template = PCA(4)
    comp = Compressor(template, bits=8, data_range=2.0).fit(X_train)
    assert not hasattr(template, "components_") and comp.model_.n_components_ == 4
    assert comp.report(X_test)["data_range"] == 2.0


def test_rate_distortion_against_pca(digits):
    X_train, X_test = digits
    template = aefast.Autoencoder(hidden_layers=(32,), max_epochs=30, batch_size=64,
                                  learning_rate=3e-3)
    points = rate_distortion(X_train, X_test, code_sizes=[2, 8], bits=[4, 8],
                             estimator=template, random_state=0)
    assert len(points) == 2 * 2 * 2
    assert {p["method"] for p in points} == {"autoencoder", "pca"}
    for p in points:
        assert p["bits_per_sample"] == p["n_components"] * p["bits"]
    by_key = {(p["method"], p["n_components"], p["bits"]): p for p in points}
    for method in ("autoencoder", "pca"):
        assert by_key[(method, 8, 8)]["psnr"] > by_key[(method, 2, 8)]["psnr"]
    # at a 2-dimensional code the non-linear model beats PCA on digits
    assert by_key[("autoencoder", 2, 8)]["psnr"] > by_key[("pca", 2, 8)]["psnr"]


def test_plot_rate_distortion(digits):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    points = [{"method": m, "bits": 8, "bits_per_sample": 8 * k, "psnr": p}
              for m, k, p in (("pca", 2, 12.0), ("pca", 4, 14.0), ("autoencoder", 2, 13.0))]
    ax = plot_rate_distortion(points)
    assert len(ax.lines) == 2 and ax.get_xlabel().startswith("bits per sample")


def test_bad_input(digits, autoencoder):
    X_train, _ = digits
    with pytest.raises(ValueError, match="bits"):
        Compressor(autoencoder, bits=0).fit(X_train)
    with pytest.raises(ValueError, match="bits"):
        Compressor(autoencoder, bits=17).fit(X_train)
    with pytest.raises(TypeError, match="inverse_transform"):
        Compressor(object()).fit(X_train)
    comp = Compressor(autoencoder, bits=4).fit(X_train)
    with pytest.raises(ValueError, match="features"):
        comp.compress(X_train[:, :5])
    with pytest.raises(ValueError, match="shape"):
        comp.decompress(np.zeros((3, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        comp.decompress(np.full((3, 8), 16, dtype=np.uint8))
    with pytest.raises(TypeError, match="integers"):
        comp.decompress(np.zeros((3, 8)))
    with pytest.raises(ValueError, match="code_sizes"):
        rate_distortion(X_train[:10], X_train[:10], code_sizes=[20])
