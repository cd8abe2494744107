"""Sparsity penalties, k-sparse codes and corruption in the engine and the estimator."""
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.utils.estimator_checks import parametrize_with_checks

import aefast
from aefast._ext import _network
from aefast.engine.backends import CPUBackend
from aefast.engine.network import Network
from aefast.engine.optimizers import Optimizer, OptimizerState
from aefast.engine.regularizers import make_regularization

import reference_network as ref


@pytest.fixture(scope="module")
def digits():
    return (load_digits().data / 16).astype(np.float32)


def layer_list(net):
    return [(net.weight(l).astype(float), net.bias(l).astype(float)) for l in range(net.n_layers)]


def one_step_gradient(net, loss, X, reg):
    backend = CPUBackend(net, loss, reg)
    grads = np.zeros_like(net.params)
    before = net.params.copy()
    steps, status = backend.train_batches(
        X, np.arange(len(X), dtype=np.int64), 0, len(X), len(X), Optimizer("sgd", 1e-300),
        OptimizerState(net.n_params, net.dtype), grads, 0.0, 0.0, np.empty(1))
    net.params[:] = before
    assert (steps, status) == (1, 0)
    return grads, backend


def numeric_gradient(net, objective, h=1e-6):
    p0 = net.params.copy()

    def f(p):
        net.params[:] = p
        return objective(layer_list(net))

    grad = np.array([(f(p0 + h * e) - f(p0 - h * e)) / (2 * h) for e in np.eye(p0.size)])
    net.params[:] = p0
    return grad


def small_net(code_act, seed=0, code=4):
    net = Network([5, 6, code, 6, 5], ["tanh", code_act, "tanh", "sigmoid"], np.float64)
    net.initialize(np.random.default_rng(seed))
    return net


@pytest.mark.parametrize("kind,part", [
    ("l1", aefast.L1Activity(0.3)),
    ("kl", aefast.KLSparsity(target=0.2, weight=0.4)),
])
def test_code_penalty_gradient_matches_finite_differences(kind, part):
    X = np.random.default_rng(1).uniform(0.05, 0.95, size=(9, 5))
    net = small_net("sigmoid" if kind == "kl" else "tanh")
    reg = make_regularization(part, None, code_block=2, n_code=4)
    grads, _ = one_step_gradient(net, "bce", X, reg)
    target = getattr(part, "target", None)
    numeric = numeric_gradient(net, lambda w: ref.objective_constrained(
        w, net.activations, "bce", X, 2, kind, part.weight, target))
    np.testing.assert_allclose(grads, numeric, rtol=1e-5, atol=1e-9)


def test_topk_gradient_matches_finite_differences_away_from_ties():
    X = np.random.default_rng(2).uniform(0.05, 0.95, size=(6, 5))
    net = small_net("identity", seed=3, code=7)
    net = Network([5, 6, 7, 6, 5], ["tanh", "identity", "tanh", "sigmoid"], np.float64)
    net.initialize(np.random.default_rng(3))
    reg = make_regularization(aefast.TopK(3), None, code_block=2, n_code=7)
    zs, hs = ref.forward(layer_list(net), net.activations, X)
    gaps = -np.diff(np.sort(hs[2], axis=1)[:, ::-1], axis=1)[:, 2]
    assert gaps.min() > 1e-4  # the 3rd and 4th largest are well apart: no tie within h
    grads, _ = one_step_gradient(net, "bce", X, reg)
    numeric = numeric_gradient(net, lambda w: ref.objective_constrained(
        w, net.activations, "bce", X, 2, topk=3))
    np.testing.assert_allclose(grads, numeric, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_codes_have_exactly_k_nonzeros(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(33, 10)).astype(dtype)
    net = Network([10, 12, 10], ["identity", "identity"], dtype)
    net.initialize(rng)
    reg = make_regularization(aefast.TopK(4, encode_k=6), None, code_block=1, n_code=12)
    _, backend = one_step_gradient(net, "mse", X, reg)
    ws = backend._workspace(33)[0]
    code = ws[33 * 10: 33 * 22].reshape(33, 12)
    assert np.all(np.count_nonzero(code, axis=1) == 4)
    expected = ref.keep_topk(X.astype(float) @ net.weight(0) + net.bias(0), 4)
    np.testing.assert_allclose(code, expected, rtol=1e-5, atol=1e-6)
    # Inference keeps encode_k units, and the decode of a sparse code matches a dense one.
    codes = backend.forward(X, 0, 1)
    assert np.all(np.count_nonzero(codes, axis=1) == 6)
    np.testing.assert_allclose(backend.forward(X, 0, 2), backend.forward(codes, 1, 2),
                               rtol=1e-5, atol=1e-6)


def test_estimator_topk_codes_and_dead_fraction(digits):
    ae = aefast.Autoencoder(hidden_layers=(32,), n_components=40, code_activation="relu",
                            sparsity=aefast.TopK(5, encode_k=10), max_epochs=5,
                            random_state=0).fit(digits)
    assert np.all(np.count_nonzero(ae.transform(digits), axis=1) <= 10)
    assert 0 <= ae.dead_fraction_ <= 1
    ae = aefast.Autoencoder(hidden_layers=(32,), n_components=40, sparsity=aefast.TopK(5),
                            max_epochs=5, random_state=0).fit(digits)
    assert np.all(np.count_nonzero(ae.transform(digits), axis=1) == 5)


def test_kl_sparsity_drives_mean_activation_to_target(digits):
    ae = aefast.Autoencoder(hidden_layers=(64,), n_components=64, code_activation="sigmoid",
                            sparsity=aefast.KLSparsity(target=0.05, weight=0.5),
                            max_epochs=60, batch_size=64, random_state=0).fit(digits)
    mean_activation = ae.transform(digits).mean()
    assert abs(mean_activation - 0.05) < 0.2 * 0.05


def test_l1_activity_shrinks_codes(digits):
    kw = dict(hidden_layers=(64,), n_components=32, code_activation="relu", max_epochs=30,
              batch_size=64, random_state=0)
    plain = aefast.Autoencoder(**kw).fit(digits).transform(digits)
    sparse = aefast.Autoencoder(sparsity=aefast.L1Activity(0.01), **kw).fit(digits).transform(digits)
    assert np.abs(sparse).sum(1).mean() < 0.5 * np.abs(plain).sum(1).mean()


def test_denoising_beats_plain_on_corrupted_digits(digits):
    kw = dict(hidden_layers=(64,), n_components=32, max_epochs=60, batch_size=64,
              random_state=0)
    plain = aefast.Autoencoder(**kw).fit(digits)
    denoising = aefast.Autoencoder(corruption=aefast.MaskingNoise(0.3), **kw).fit(digits)
    rng = np.random.default_rng(7)
    corrupted = digits * (rng.uniform(size=digits.shape) >= 0.3)
    err = {name: np.mean((model.reconstruct(corrupted) - digits) ** 2)
           for name, model in (("plain", plain), ("denoising", denoising))}
    assert err["denoising"] < err["plain"]
    # transform and reconstruct never corrupt: they are deterministic.
    np.testing.assert_array_equal(denoising.reconstruct(digits), denoising.reconstruct(digits))


def test_weight_l1_gives_near_zero_weights(digits):
    kw = dict(hidden_layers=(64,), n_components=16, max_epochs=30, batch_size=64,
              random_state=0, learning_rate=1e-3)
    dense = aefast.Autoencoder(**kw).fit(digits).network_.weight(0)
    sparse = aefast.Autoencoder(weight_l1=1e-3, **kw).fit(digits).network_.weight(0)
    # As documented: subgradient steps leave weights oscillating within about lr of 0.
    near_zero = lambda W: np.mean(np.abs(W) < 2e-3)  # noqa: E731
    assert near_zero(sparse) > 0.5 and near_zero(sparse) > 3 * near_zero(dense)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_corruption_matches_box_muller_on_the_generator_words(dtype):
    clean = np.linspace(-1, 1, 1001).astype(dtype)  # odd length: the last word gives one
    out = np.empty_like(clean)
    reg = make_regularization(None, aefast.GaussianNoise(0.5), 0, 1, np.random.default_rng(42))
    _network.corrupt(clean, out, reg)
    words = np.random.default_rng(42).bit_generator.random_raw((clean.size + 1) // 2)
    u1 = ((words >> np.uint64(40)) + np.uint64(1)).astype(float) / 2.0**24
    u2 = ((words >> np.uint64(16)) & np.uint64(0xFFFFFF)).astype(float) / 2.0**24
    r = np.sqrt(-2 * np.log(u1))
    noise = np.empty(2 * words.size)
    noise[0::2], noise[1::2] = r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, clean + 0.5 * noise[:clean.size], rtol=tol, atol=tol)


def test_gaussian_corruption_is_standard_normal():
    clean = np.zeros(400_000, dtype=np.float32)
    out = np.empty_like(clean)
    reg = make_regularization(None, aefast.GaussianNoise(2.0), 0, 1, np.random.default_rng(0))
    _network.corrupt(clean, out, reg)
    z = out / 2.0
    assert abs(z.mean()) < 0.01 and abs(z.var() - 1) < 0.01
    assert abs(np.mean(z ** 4) - 3) < 0.05              # Gaussian kurtosis
    assert abs(np.mean(z[0::2] * z[1::2])) < 0.01       # the two normals of a pair are independent
    assert np.all(np.isfinite(out)) and np.abs(z).max() < 6.5


@pytest.mark.parametrize("part", [aefast.MaskingNoise(0.3),
                                  aefast.SaltPepperNoise(0.2, low=-1.0, high=2.0)])
def test_masking_and_salt_pepper_match_numpy_generator_exactly(part):
    clean = np.random.default_rng(0).uniform(0.1, 0.9, 20_000)
    out = np.empty_like(clean)
    reg = make_regularization(None, part, 0, 1, np.random.default_rng(5))
    _network.corrupt(clean, out, reg)
    # The kernel splits each 64-bit draw into four 16-bit uniforms.
    words = np.random.default_rng(5).integers(0, 2**64, size=-(-clean.size // 4),
                                              dtype=np.uint64, endpoint=False)
    u = words.view(np.uint16)[: clean.size].astype(np.uint32)
    hit = u < np.uint32(round(part.fraction * 2**16))
    if isinstance(part, aefast.MaskingNoise):
        expected = np.where(hit, 0.0, clean)
    else:
        expected = np.where(hit, np.where(u & 1, part.high, part.low), clean)
    np.testing.assert_array_equal(out, expected)
    # And the statistics the parameter promises.
    assert abs(hit.mean() - part.fraction) < 4 * np.sqrt(part.fraction / clean.size)


def test_overcomplete_without_constraint_warns(digits):
    with pytest.warns(UserWarning, match="identity"):
        aefast.Autoencoder(hidden_layers=(), n_components=80, max_epochs=1).fit(digits)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aefast.Autoencoder(hidden_layers=(), n_components=80, max_epochs=1, batch_size=64,
                           sparsity=aefast.TopK(10)).fit(digits)


def test_save_load_keeps_the_code_constraint(tmp_path, digits):
    ae = aefast.Autoencoder(hidden_layers=(16,), n_components=20, sparsity=aefast.TopK(3, 6),
                            corruption=aefast.SaltPepperNoise(0.1), max_epochs=2,
                            random_state=0).fit(digits)
    aefast.save(ae, tmp_path / "m.npz")
    loaded = aefast.load(tmp_path / "m.npz")
    assert loaded.sparsity == ae.sparsity and loaded.corruption == ae.corruption
    np.testing.assert_array_equal(loaded.transform(digits), ae.transform(digits))
    assert loaded.dead_fraction_ == ae.dead_fraction_


@pytest.mark.parametrize("make,match", [
    (lambda: aefast.TopK(0), "k"),
    (lambda: aefast.TopK(4, encode_k=2), "encode_k"),
    (lambda: aefast.TopK(2.5), "integer"),
    (lambda: aefast.KLSparsity(target=0.0), "target"),
    (lambda: aefast.KLSparsity(target=1.2), "target"),
    (lambda: aefast.KLSparsity(weight=-1), "weight"),
    (lambda: aefast.L1Activity(-0.1), "weight"),
    (lambda: aefast.GaussianNoise(-0.1), "std"),
    (lambda: aefast.MaskingNoise(1.5), "fraction"),
    (lambda: aefast.SaltPepperNoise(-0.1), "fraction"),
    (lambda: aefast.GaussianNoise(float("nan")), "std"),
])
def test_bad_part_parameters(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize("params,match", [
    (dict(sparsity=aefast.TopK(50)), "n_components"),
    (dict(sparsity=aefast.TopK(3, encode_k=50)), "n_components"),
    (dict(sparsity=aefast.KLSparsity()), "sigmoid"),
    (dict(sparsity="topk"), "sparsity"),
    (dict(corruption=0.3), "corruption"),
])
def test_bad_estimator_parameters(digits, params, match):
    with pytest.raises((ValueError, TypeError), match=match):
        aefast.Autoencoder(hidden_layers=(8,), n_components=10, max_epochs=1, **params).fit(digits)


@parametrize_with_checks([
    aefast.Autoencoder(hidden_layers=(8,), n_components=3, max_epochs=2, batch_size=16,
                       sparsity=aefast.TopK(1), corruption=aefast.MaskingNoise(0.2),
                       random_state=0),
    aefast.Autoencoder(hidden_layers=(8,), n_components=3, max_epochs=2, batch_size=16,
                       code_activation="sigmoid", sparsity=aefast.KLSparsity(0.1, 0.1),
                       corruption=aefast.GaussianNoise(0.1), random_state=0),
])
def test_sklearn_compatible_with_parts(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


def test_auxk_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    X = rng.uniform(0.05, 0.95, size=(5, 6))
    net = Network([6, 9, 6], ["identity", "sigmoid"], np.float64)
    net.initialize(rng)
    part = aefast.TopK(2, aux_k=3, aux_weight=0.5, dead_after=1)
    reg = make_regularization(part, None, code_block=1, n_code=9)
    grads, _ = one_step_gradient(net, "bce", X, reg)
    # The residual is a constant target and the dead set is that of this batch.
    zs, hs = ref.forward_constrained(layer_list(net), net.activations, X, 1, topk=2)
    residual = X - hs[-1]
    dense0 = X @ net.weight(0) + net.bias(0)
    dead = np.count_nonzero(hs[1], axis=0) == 0
    assert dead.sum() >= 3

    def objective(w):
        dense = X @ w[0][0] + w[0][1]
        return (ref.objective_constrained(w, net.activations, "bce", X, 1, topk=2)
                + ref.auxk_loss(w[1][0], dense, residual, dead, 3, 0.5))

    numeric = numeric_gradient(net, objective)
    np.testing.assert_allclose(grads, numeric, rtol=1e-5, atol=1e-9)
    assert np.all(np.isfinite(dense0))


def test_auxk_revives_dead_latents(digits):
    kw = dict(hidden_layers=(), n_components=256, loss="mse", max_epochs=30, batch_size=64,
              random_state=0)
    plain = aefast.Autoencoder(sparsity=aefast.TopK(8), **kw).fit(digits)
    aux = aefast.Autoencoder(sparsity=aefast.TopK(8, aux_k=64, dead_after=300), **kw).fit(digits)
    assert aux.dead_fraction_ < 0.9 * plain.dead_fraction_


def test_auxk_needs_single_decoder_layer(digits):
    with pytest.raises(ValueError, match="hidden_layers"):
        aefast.Autoencoder(hidden_layers=(8,), n_components=10, max_epochs=1,
                           sparsity=aefast.TopK(2, aux_k=2)).fit(digits)
