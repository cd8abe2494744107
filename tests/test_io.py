"""save / load: exact round trip, no pickle, clear refusal of bad files."""
import json
import zipfile

import numpy as np
import pytest
from sklearn.datasets import load_digits

import aefast


@pytest.fixture(scope="module")
def model():
    X = (load_digits().data / 16).astype(np.float32)
    return aefast.Autoencoder(hidden_layers=(16,), n_components=4, max_epochs=3,
                              early_stopping=True, random_state=0).fit(X), X


def test_round_trip_is_exact(tmp_path, model):
    ae, X = model
    path = tmp_path / "model.npz"
    aefast.save(ae, path)
    loaded = aefast.load(path)
    assert type(loaded) is aefast.Autoencoder
    assert loaded.get_params() == ae.get_params()
    np.testing.assert_array_equal(loaded.network_.params, ae.network_.params)
    np.testing.assert_array_equal(loaded.transform(X), ae.transform(X))
    np.testing.assert_array_equal(loaded.reconstruction_error(X), ae.reconstruction_error(X))
    assert loaded.loss_curve_ == ae.loss_curve_
    assert loaded.validation_scores_ == ae.validation_scores_
    assert loaded.n_epochs_ == ae.n_epochs_


def test_loaded_model_continues_training_like_the_original(tmp_path, model):
    ae, X = model
    aefast.save(ae, tmp_path / "m.npz")
    loaded = aefast.load(tmp_path / "m.npz")
    # The optimizer state travels with the model, so one more epoch from the
    # same shuffling seed gives the same parameters.
    import copy

    twin = copy.deepcopy(ae)
    twin._fit_rng = np.random.default_rng(5)
    loaded._fit_rng = np.random.default_rng(5)
    twin.partial_fit(X)
    loaded.partial_fit(X)
    np.testing.assert_array_equal(loaded.network_.params, twin.network_.params)


def test_file_holds_no_pickle(tmp_path, model):
    ae, _ = model
    aefast.save(ae, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        meta = json.loads(str(archive["__aefast__"]))
        assert all(archive[name].dtype != object for name in archive.files)
    assert meta["format"] == "aefast-model" and meta["format_version"] == 1


def test_refuses_corrupt_truncated_and_foreign_files(tmp_path, model):
    ae, _ = model
    good = tmp_path / "m.npz"
    aefast.save(ae, good)
    truncated = tmp_path / "t.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    garbage = tmp_path / "g.npz"
    garbage.write_bytes(b"not a model at all")
    foreign = tmp_path / "f.npz"
    np.savez(foreign, a=np.arange(3))
    for path in (truncated, garbage, foreign):
        with pytest.raises(aefast.ModelFileError):
            aefast.load(path)


def _rewrite(src, dst, edit):
    with np.load(src, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays["__aefast__"]))
    edit(meta, arrays)
    arrays["__aefast__"] = np.array(json.dumps(meta))
    np.savez(dst, **arrays)


@pytest.mark.parametrize("edit", [
    lambda m, a: m.update(format_version=99),
    lambda m, a: m.update({"class": "os.system"}),
    lambda m, a: a.update(params=a["params"][:-3]),
    lambda m, a: m["state"].pop("network"),
    lambda m, a: m["params"].update(n_components="many"),
])
def test_refuses_inconsistent_contents(tmp_path, model, edit):
    ae, _ = model
    aefast.save(ae, tmp_path / "m.npz")
    _rewrite(tmp_path / "m.npz", tmp_path / "bad.npz", edit)
    with pytest.raises(aefast.ModelFileError):
        aefast.load(tmp_path / "bad.npz")


def test_save_refuses_unfitted_and_foreign_objects(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        aefast.save(aefast.Autoencoder(), tmp_path / "m.npz")
    with pytest.raises(TypeError):
        aefast.save(object(), tmp_path / "m.npz")
    with pytest.raises(FileNotFoundError):
        aefast.load(tmp_path / "missing.npz")


def test_load_refuses_a_plain_npy_file(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(aefast.ModelFileError, match="not an .npz"):
        aefast.load(path)


# ------------------------------------------------------------------ OjaPCA: a stream checkpoint
@pytest.mark.parametrize("method", ["block", "gha", "subspace", "oja"])
def test_oja_checkpoint_resumes_the_stream_exactly(tmp_path, method):
    # save mid-stream, load, continue: the same components as an uninterrupted
    # stream, because the whole state (weights, projected scatter, clock, gap
    # estimates) travels with the file
    X = load_digits().data.astype(np.float32)
    k = 1 if method == "oja" else 4
    head, tail = X[:800], X[800:]
    whole = aefast.OjaPCA(k, method=method, batch_size=200, random_state=0)
    whole.partial_fit(head).partial_fit(tail)
    part = aefast.OjaPCA(k, method=method, batch_size=200, random_state=0).partial_fit(head)
    aefast.save(part, tmp_path / "oja")
    loaded = aefast.load(tmp_path / "oja.npz")
    assert type(loaded) is aefast.OjaPCA and loaded.get_params() == part.get_params()
    np.testing.assert_array_equal(loaded.components_, part.components_)
    np.testing.assert_array_equal(loaded.explained_variance_, part.explained_variance_)
    np.testing.assert_array_equal(loaded.transform(X), part.transform(X))
    assert loaded.n_samples_seen_ == part.n_samples_seen_
    loaded.partial_fit(tail)
    np.testing.assert_array_equal(loaded.components_, whole.components_)
    np.testing.assert_array_equal(loaded.mean_, whole.mean_)
    assert loaded.n_samples_seen_ == whole.n_samples_seen_ == len(X)


def test_oja_file_keeps_feature_names(tmp_path):
    pd = pytest.importorskip("pandas")
    X = load_digits().data[:300, :6]
    df = pd.DataFrame(X, columns=[f"px{i}" for i in range(6)])
    est = aefast.OjaPCA(2, batch_size=100, random_state=0).fit(df)
    aefast.save(est, tmp_path / "o.npz")
    with np.load(tmp_path / "o.npz", allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)
    loaded = aefast.load(tmp_path / "o.npz")
    assert list(loaded.feature_names_in_) == list(df.columns)
    assert list(loaded.get_feature_names_out()) == list(est.get_feature_names_out())


def test_oja_refuses_a_bad_saved_state(tmp_path):
    est = aefast.OjaPCA(2, batch_size=100, random_state=0).fit(load_digits().data[:300])
    aefast.save(est, tmp_path / "o.npz")
    for edit in (lambda m, a: a.update(W=a["W"][:1]),
                 lambda m, a: a.update(M=np.full_like(a["M"], np.nan)),
                 lambda m, a: m["state"].pop("_gap")):
        _rewrite(tmp_path / "o.npz", tmp_path / "bad.npz", edit)
        with pytest.raises(aefast.ModelFileError):
            aefast.load(tmp_path / "bad.npz")


def test_oja_with_a_callable_rate_cannot_be_saved(tmp_path):
    est = aefast.OjaPCA(2, learning_rate=lambda t: 1e-3 / (1 + t), batch_size=100,
                        random_state=0).fit(load_digits().data[:300])
    with pytest.raises(TypeError, match="cannot be saved"):
        aefast.save(est, tmp_path / "o.npz")
