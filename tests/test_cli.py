"""`aefast fit` and `aefast score`: round trips through files, formats, errors, --help."""
import gzip
import struct

import numpy as np
import pytest

import aefast
from aefast import cli
from aefast.datasets import load_digits

FIT = ["--hidden-layers", "16", "--n-components", "4", "--epochs", "3", "--batch-size", "64",
       "-q"]


@pytest.fixture(scope="module")
def digits():
    X, _ = load_digits()
    return X[:400]


@pytest.fixture
def npy(tmp_path, digits):
    path = tmp_path / "x.npy"
    np.save(path, digits)
    return str(path)


def write_idx(path, images):
    """An IDX3 uint8 file, gzipped (the MNIST distribution format)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">III", *images.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + images.astype(">u1").tobytes())


def test_fit_and_score_round_trip(tmp_path, npy, digits, capsys):
    model_path = str(tmp_path / "model.npz")
    assert cli.main(["fit", npy, *FIT, "--seed", "3", "-o", model_path]) == 0
    model = aefast.load(model_path)
    assert isinstance(model, aefast.Autoencoder)
    assert model.hidden_layers == (16,) and model.n_components == 4 and model.n_epochs_ == 3
    # the same options give the same model as the Python API
    direct = aefast.Autoencoder(hidden_layers=(16,), n_components=4, max_epochs=3,
                                batch_size=64, random_state=3).fit(digits)
    np.testing.assert_array_equal(model.network_.params, direct.network_.params)

    out_npy = str(tmp_path / "scores.npy")
    assert cli.main(["score", model_path, npy, "-o", out_npy]) == 0
    scores = np.load(out_npy)
    np.testing.assert_allclose(scores, direct.reconstruction_error(digits), rtol=1e-6)
    out_csv = str(tmp_path / "scores.csv")
    assert cli.main(["score", model_path, npy, "--kind", "score_samples", "-o", out_csv]) == 0
    lines = open(out_csv).read().splitlines()
    assert lines[0] == "score_samples" and len(lines) == len(digits) + 1
    np.testing.assert_allclose(np.loadtxt(out_csv, skiprows=1), -scores, rtol=1e-6)
    capsys.readouterr()
    assert cli.main(["score", model_path, npy]) == 0
    printed = np.array(capsys.readouterr().out.split(), dtype=float)
    np.testing.assert_allclose(printed, scores, rtol=1e-6)


def test_csv_with_header_and_idx_inputs(tmp_path, digits):
    csv = tmp_path / "x.csv"
    np.savetxt(csv, digits, delimiter=",", fmt="%.6g",
               header=",".join(f"p{i}" for i in range(64)), comments="")
    np.testing.assert_allclose(cli.load_array(str(csv)), digits, rtol=1e-6)
    txt = tmp_path / "x.txt"
    np.savetxt(txt, digits[:5])
    np.testing.assert_allclose(cli.load_array(str(txt)), digits[:5], rtol=1e-6)

    images = np.round(digits[:50] * 255).astype(np.uint8).reshape(-1, 8, 8)
    idx = tmp_path / "images-idx3-ubyte.gz"
    write_idx(idx, images)
    X = cli.load_array(str(idx))
    assert X.shape == (50, 64) and X.dtype == np.float32
    np.testing.assert_allclose(X, images.reshape(50, -1) / 255, rtol=1e-6)
    np.testing.assert_array_equal(cli.load_array(str(idx), scale="none"), images.reshape(50, -1))
    np.testing.assert_allclose(cli.load_array(str(idx), scale=2.0), images.reshape(50, -1) / 2)

    model_path = str(tmp_path / "m.npz")
    assert cli.main(["fit", str(idx), *FIT, "--batch-size", "16", "-o", model_path]) == 0
    assert cli.main(["score", model_path, str(csv), "-o", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (len(digits),)


def test_linear_model(tmp_path, npy):
    model_path = str(tmp_path / "lin")
    assert cli.main(["fit", npy, "--model", "linear", "--n-components", "3", "--epochs", "2",
                     "-q", "-o", model_path]) == 0
    model = aefast.load(model_path + ".npz")
    assert isinstance(model, aefast.LinearAutoencoder) and model.n_components == 3


def test_vae_model(tmp_path, npy, capsys):
    pytest.importorskip("aefast.models.vae")
    model_path = str(tmp_path / "vae.npz")
    assert cli.main(["fit", npy, "--model", "vae", *FIT, "-o", model_path]) == 0
    model = aefast.load(model_path)
    assert type(model).__name__ == "VAE" and model.likelihood == "bernoulli"
    for kind in ("elbo", "log_likelihood"):
        out = str(tmp_path / f"{kind}.npy")
        assert cli.main(["score", model_path, npy, "--kind", kind, "--n-samples", "3",
                         "-o", out]) == 0
        first = np.load(out)
        assert first.shape == (400,) and np.all(np.isfinite(first)) and np.all(first < 0)
        assert cli.main(["score", model_path, npy, "--kind", kind, "--n-samples", "3",
                         "-o", out]) == 0
        np.testing.assert_array_equal(np.load(out), first)  # seeded: repeatable


def test_vae_missing_is_a_clear_error(tmp_path, npy, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "models.vae" or name.endswith("models.vae"):
            raise ImportError("No module named 'aefast.models.vae'")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert cli.main(["fit", npy, "--model", "vae", "-q", "-o", str(tmp_path / "v")]) == 2
    assert "aefast.VAE" in capsys.readouterr().err


def test_oja_fits_saves_and_scores(tmp_path, npy, capsys):
    model_path = str(tmp_path / "oja.npz")
    assert cli.main(["fit", npy, "--model", "oja", "--n-components", "3", "-q",
                     "-o", model_path]) == 0
    assert aefast.load(model_path).n_components == 3
    assert cli.main(["score", model_path, npy]) == 0


def test_errors(tmp_path, npy, capsys):
    model_path = str(tmp_path / "m.npz")
    assert cli.main(["fit", npy, *FIT, "-o", model_path]) == 0
    capsys.readouterr()
    assert cli.main(["fit", str(tmp_path / "missing.npy"), "-q"]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli.main(["score", str(tmp_path / "missing.npz"), npy]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert cli.main(["score", npy, npy]) == 2
    assert "not a readable aefast model" in capsys.readouterr().err
    bad = tmp_path / "narrow.npy"
    np.save(bad, np.zeros((5, 3), dtype=np.float32))
    assert cli.main(["score", model_path, str(bad)]) == 2
    assert "features" in capsys.readouterr().err
    assert cli.main(["score", model_path, npy, "--kind", "elbo"]) == 2
    assert "no elbo() method" in capsys.readouterr().err
    assert cli.main(["score", model_path, npy, "-o", str(tmp_path / "s.json")]) == 2
    assert ".npy, .csv or .txt" in capsys.readouterr().err
    vector = tmp_path / "v.npy"
    np.save(vector, np.zeros(5))
    assert cli.main(["fit", str(vector), "-q"]) == 2
    assert "2-D" in capsys.readouterr().err
    unknown = tmp_path / "x.parquet"
    unknown.write_bytes(b"PAR1")
    assert cli.main(["fit", str(unknown), "-q"]) == 2
    assert "unknown data format" in capsys.readouterr().err
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((10, 4), np.nan))
    assert cli.main(["fit", str(nan), "-q"]) == 2
    assert "NaN" in capsys.readouterr().err
    for args in (["fit", npy, "--hidden-layers", "a,b"], ["fit", npy, "--epochs", "0"],
                 ["fit", npy, "--model", "pca"], ["fit", npy, "--scale", "-1"],
                 ["score", model_path, npy, "--kind", "bogus"]):
        with pytest.raises(SystemExit):
            cli.main(args)


@pytest.mark.parametrize("command", ["fit", "score"])
def test_help_explains_every_option(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        assert action.help, f"{command}: option {action.dest} has no help"
        for flag in action.option_strings:
            assert flag in text
