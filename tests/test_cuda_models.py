"""Models with device="cuda" against device="cpu", and device resolution.

Runs on a real GPU or under the Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``);
the fits are tiny (16 rows, 7 features, a few steps) because the simulator runs
one Python thread per CUDA thread. The device-resolution tests run everywhere.

VAEs sample eps on the device from numba.cuda.random, a different stream from
the CPU's. The CPU-vs-CUDA VAE tests make the noise the same instead of
irrelevant: the ``cpu_eps`` fixture gives each CUDA regularization, through its
``eps_rng`` hook, a copy of the generator that the CPU engine draws its eps
from, so the CUDA backend uploads exactly the CPU's eps (same draws, same
order) and whole fits, ELBOs and likelihoods must agree within float32
rounding. A separate test checks the device's own noise.
"""
import copy
import logging
import pickle
import sys

import numpy as np
import pytest
from cuda_simulator import lock_simulator_shared_arrays

import aefast
from aefast.engine import cuda_backend

HAVE_CUDA = cuda_backend.cuda_available()[0]
needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="no GPU and NUMBA_ENABLE_CUDASIM unset")

pytestmark = [
    # simulator arithmetic on NumPy scalars: xoroshiro128+ wrap-around, NaN in divergence tests
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore::numba.NumbaDeprecationWarning"),
]


@pytest.fixture(autouse=True, scope="module")
def _fast_simulator():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # the simulator's threads meet at barriers: switch quickly
    undo = lock_simulator_shared_arrays()
    yield
    undo()
    sys.setswitchinterval(old)


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).uniform(0, 1, (16, 7)).astype(np.float32)


def tiny(device, **kw):
    params = dict(hidden_layers=(5,), n_components=3, batch_size=8, max_epochs=1,
                  learning_rate=1e-2, random_state=0, device=device)
    params.update(kw)
    return aefast.Autoencoder(**params)


def assert_same_fit(cpu, gpu, X, dtype=np.float32):
    t = dict(rtol=1e-4, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)
    assert gpu.device_ == "cuda" and cpu.device_ == "cpu"
    np.testing.assert_allclose(gpu.network_.params, cpu.network_.params, **t)
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, **t)
    np.testing.assert_allclose(gpu.validation_scores_, cpu.validation_scores_, **t)
    np.testing.assert_allclose(gpu.transform(X), cpu.transform(X), **t)
    np.testing.assert_allclose(gpu.reconstruct(X), cpu.reconstruct(X), **t)
    np.testing.assert_allclose(gpu.reconstruction_error(X), cpu.reconstruction_error(X), **t)
    Z = cpu.transform(X)
    np.testing.assert_allclose(gpu.inverse_transform(Z), cpu.inverse_transform(Z), **t)


@needs_cuda
@pytest.mark.parametrize("path", ["generic", "fused"])
@pytest.mark.parametrize("kw", [
    dict(),  # data in [0, 1]: sigmoid output, cross-entropy from logits, Adam
    dict(loss="mse", activation="tanh", optimizer="momentum", nesterov=True,
         weight_decay=0.01, weight_l1=1e-3),
    dict(sparsity=aefast.TopK(2, encode_k=3, normalize_decoder=True), loss="mse"),
    dict(corruption=aefast.MaskingNoise(1.0)),  # every entry masked: same on both devices
    dict(code_activation="sigmoid", sparsity=aefast.KLSparsity(0.1, 0.2), dtype="float64",
         early_stopping=True, validation_fraction=0.25, optimizer="sgd", max_epochs=2),
], ids=["bce-adam", "mse-nesterov-penalties", "topk", "masking", "kl-float64-early-stopping"])
def test_autoencoder_matches_cpu(X, kw, path, monkeypatch):
    # tiny networks take the single-block trainer unless FUSED_MAX_WORK says otherwise
    is_topk = isinstance(kw.get("sparsity"), aefast.TopK)
    if path == "fused" and is_topk:
        pytest.skip("TopK always takes the generic path")
    if path == "generic":
        monkeypatch.setattr(cuda_backend, "FUSED_MAX_WORK", 0)
    cpu = tiny("cpu", **kw).fit(X)
    gpu = tiny("cuda", **kw).fit(X)
    assert_same_fit(cpu, gpu, X, np.float64 if kw.get("dtype") == "float64" else np.float32)
    if is_topk:
        assert gpu.dead_fraction_ == cpu.dead_fraction_
        assert np.all(np.count_nonzero(gpu.transform(X), axis=1) <= 3)


@needs_cuda
def test_denoising_noise_is_reproducible_and_used(X):
    noisy = [tiny("cuda", corruption=aefast.SaltPepperNoise(0.4)).fit(X) for _ in range(2)]
    clean = tiny("cuda").fit(X)
    np.testing.assert_array_equal(noisy[0].network_.params, noisy[1].network_.params)
    assert not np.allclose(noisy[0].network_.params, clean.network_.params)
    assert np.all(np.isfinite(noisy[0].network_.params))


@needs_cuda
def test_partial_fit_pickle_and_save(X, tmp_path):
    cpu = tiny("cpu").partial_fit(X).partial_fit(X)
    gpu = tiny("cuda").partial_fit(X).partial_fit(X)
    assert_same_fit(cpu, gpu, X)
    again = pickle.loads(pickle.dumps(gpu))
    np.testing.assert_array_equal(again.transform(X), gpu.transform(X))
    aefast.save(gpu, tmp_path / "model.npz")
    loaded = aefast.load(tmp_path / "model.npz")
    np.testing.assert_allclose(loaded.transform(X), gpu.transform(X), rtol=1e-6, atol=1e-7)



@needs_cuda
def test_a_gpu_model_loads_and_runs_without_a_gpu(X, tmp_path, monkeypatch):
    gpu = tiny("cuda").partial_fit(X)
    aefast.save(gpu, tmp_path / "model.npz")
    monkeypatch.setattr("aefast.engine.cuda_backend.cuda_available",
                        lambda: (False, "no GPU in this test"))
    loaded = aefast.load(tmp_path / "model.npz")
    assert loaded.device_ == "cpu"
    np.testing.assert_allclose(loaded.transform(X), gpu.transform(X), rtol=1e-5, atol=1e-6)


@needs_cuda
def test_linear_autoencoder_matches_cpu(X):
    kw = dict(n_components=2, batch_size=8, max_epochs=1, random_state=0)
    cpu = aefast.LinearAutoencoder(device="cpu", **kw).fit(X)
    gpu = aefast.LinearAutoencoder(device="cuda", **kw).fit(X)
    np.testing.assert_allclose(gpu.network_.params, cpu.network_.params, rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(gpu.components_, cpu.components_, rtol=1e-4, atol=1e-5)


@needs_cuda
@pytest.mark.parametrize("method,k", [("block", 2), ("gha", 3), ("subspace", 2), ("oja", 1)])
def test_oja_pca_matches_cpu(method, k):
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((30, 7)) * np.linspace(3, 0.5, 7) + 1).astype(np.float32)
    cpu = aefast.OjaPCA(k, method=method, batch_size=10, random_state=0).fit(X)
    gpu = aefast.OjaPCA(k, method=method, batch_size=10, random_state=0, device="cuda").fit(X)
    assert gpu.device_ == "cuda"
    np.testing.assert_allclose(gpu.components_, cpu.components_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gpu.explained_variance_, cpu.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(gpu.mean_, cpu.mean_, rtol=1e-6)


@needs_cuda
def test_backend_streaming_and_divergence(X):
    """The backend directly, both paths: streamed data gives the same steps; a
    non-finite loss stops the call before its update, as on the CPU."""
    from aefast.engine.backends import CPUBackend
    from aefast.engine.network import Network
    from aefast.engine.optimizers import Optimizer, OptimizerState

    def run(backend_cls, params=None, **kw):
        net = Network([7, 4, 7], ["relu", "identity"], np.float32)
        net.initialize(np.random.default_rng(0))
        if params is not None:
            net.params[:] = params
        backend = backend_cls(net, "mse", None, **kw)
        state = OptimizerState(net.n_params, net.dtype)
        losses = np.empty(8)
        order = np.random.default_rng(1).permutation(16).astype(np.int64)
        steps, status = backend.train_batches(X, order, 0, 16, 5, Optimizer("adam", 1e-2), state,
                                              np.zeros_like(net.params), 0.0, 0.0, losses)
        return net.params.copy(), losses[:steps], steps, status, state.t

    cpu = run(CPUBackend)
    streamed = run(cuda_backend.CUDABackend, max_data_bytes=2 * 5 * 7 * 4)  # 2 batches a chunk
    np.testing.assert_allclose(streamed[0], cpu[0], rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(streamed[1], cpu[1], rtol=1e-5)
    assert streamed[2:] == cpu[2:] == (4, 0, 4)
    bad = cpu[0].copy()
    bad[0] = np.inf
    cpu_bad = run(CPUBackend, bad)
    assert cpu_bad[2:] == (0, 1, 0)
    for fused in (True, False):
        gpu = run(cuda_backend.CUDABackend, fused=fused)
        np.testing.assert_allclose(gpu[0], cpu[0], rtol=1e-4, atol=2e-6)
        assert gpu[2:] == cpu[2:]
        gpu_bad = run(cuda_backend.CUDABackend, bad, fused=fused)
        assert gpu_bad[2:] == cpu_bad[2:]
        np.testing.assert_array_equal(gpu_bad[0], bad)  # nothing applied


@needs_cuda
@pytest.mark.parametrize("kw", [
    # the paper's setting (linear code and output); no unit is dead in the first step
    # (8 samples < dead_after), so AuxK adds nothing there
    dict(loss="mse", sparsity=aefast.TopK(2, aux_k=3, aux_weight=0.5, dead_after=12)),
    # cross-entropy from logits; the picked units' delta goes through tanh' (with ReLU,
    # dead units are mostly 0, which AuxK cannot pick)
    dict(code_activation="tanh", sparsity=aefast.TopK(2, normalize_decoder=True, aux_k=3,
                                                      aux_weight=0.5, dead_after=8)),
], ids=["mse-identity", "bce-tanh-normalized"])
def test_topk_auxk_matches_cpu(X, kw):
    # 6 latents, 2 fire per row: units that miss a batch or two are dead
    kw = dict(hidden_layers=(), n_components=6, max_epochs=2, **kw)
    cpu = tiny("cpu", **kw).fit(X)
    gpu = tiny("cuda", **kw).fit(X)
    assert_same_fit(cpu, gpu, X)
    assert gpu.dead_fraction_ == cpu.dead_fraction_
    # One step on the whole set, with and without AuxK: the same forward pass, so the
    # losses differ by the AuxK term (16 samples: some units are dead already), and the
    # parameters differ only if dead units were picked (non-zero values get gradient).
    one_step = dict(kw, batch_size=16, max_epochs=1)
    plain = tiny("cpu", **dict(one_step, sparsity=aefast.TopK(
        2, normalize_decoder=kw["sparsity"].normalize_decoder))).fit(X)
    aux = {device: tiny(device, **one_step).fit(X) for device in ("cpu", "cuda")}
    aux_loss = {device: m.loss_curve_[0] - plain.loss_curve_[0] for device, m in aux.items()}
    assert aux_loss["cuda"] > 1e-3
    assert aux_loss["cuda"] == pytest.approx(aux_loss["cpu"], rel=1e-4)
    assert np.abs(aux["cuda"].network_.params - plain.network_.params).max() > 1e-4


@needs_cuda
def test_auxk_needs_the_code_to_feed_the_output_layer():
    from aefast.engine.network import Network

    net = Network([7, 5, 6, 7], ["identity", "relu", "identity"], np.float32)
    # the code (block 1, 5 wide) goes through a hidden decoder layer
    reg = cuda_backend.make_regularization(aefast.TopK(2, aux_k=2), None, code_block=1,
                                           n_code=5)
    assert reg.aux_k == 2
    with pytest.raises(ValueError, match="AuxK needs the code"):
        cuda_backend.CUDABackend(net, "mse", reg)


# --------------------------------------------------------------------------- VAE


@pytest.fixture
def cpu_eps(monkeypatch):
    """CUDA VAEs draw eps on the host from a twin of the CPU engine's generator."""
    make = cuda_backend.make_regularization

    def make_with_cpu_eps(sparsity, corruption, code_block, n_code, rng=None, **bottleneck):
        # copy before make_regularization draws the device seed from rng
        twin = None if rng is None else np.random.Generator(copy.deepcopy(rng.bit_generator))
        reg = make(sparsity, corruption, code_block, n_code, rng, **bottleneck)
        reg.eps_rng = twin
        return reg

    # VAE._regularization imports it from the module at each call
    monkeypatch.setattr(cuda_backend, "make_regularization", make_with_cpu_eps)


@pytest.fixture(scope="module")
def X_vae():
    return np.random.default_rng(3).uniform(0, 1, (20, 6)).astype(np.float32)


def tiny_vae(device, **kw):
    params = dict(hidden_layers=(3,), n_components=2, batch_size=10, max_epochs=2,
                  learning_rate=1e-2, random_state=0, device=device)
    params.update(kw)
    return aefast.VAE(**params)


@needs_cuda
@pytest.mark.parametrize("kw", [
    dict(early_stopping=True, validation_fraction=0.25),
    dict(likelihood="gaussian", output_variance="learned", kl_warmup_epochs=2),
    dict(likelihood="gaussian", output_variance=0.5, beta=0.5, optimizer="sgd",
         dtype="float64"),
], ids=["bernoulli-early-stopping", "gaussian-learned-warmup", "gaussian-fixed-float64"])
def test_vae_matches_cpu(X_vae, kw, cpu_eps):
    # (n_samples only repeats rows in the training loop: the backend sees bigger batches)
    X = X_vae.astype(kw.get("dtype", "float32"))
    Xs = X[:5]  # inference on a few rows: the simulator is slow
    t = (dict(rtol=1e-9, atol=1e-11) if kw.get("dtype") == "float64"
         else dict(rtol=1e-4, atol=2e-6))
    cpu = tiny_vae("cpu", **kw).fit(X)
    gpu = tiny_vae("cuda", **kw).fit(X)
    assert gpu.device_ == "cuda" and cpu.device_ == "cpu"
    np.testing.assert_allclose(gpu.network_.params, cpu.network_.params, **t)
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, **t)
    np.testing.assert_allclose(gpu.validation_scores_, cpu.validation_scores_, **t)
    for a, b in zip(gpu.posterior(Xs), cpu.posterior(Xs)):
        np.testing.assert_allclose(a, b, **t)
    np.testing.assert_allclose(gpu.reconstruct(Xs), cpu.reconstruct(Xs), **t)
    Z = cpu.transform(Xs)
    np.testing.assert_allclose(gpu.inverse_transform(Z), cpu.inverse_transform(Z), **t)
    np.testing.assert_allclose(gpu.reconstruction_error(Xs), cpu.reconstruction_error(Xs), **t)
    np.testing.assert_allclose(gpu.score_samples(Xs), cpu.score_samples(Xs), **t)
    for a, b in zip(gpu.elbo(Xs, 2, random_state=5, return_parts=True),
                    cpu.elbo(Xs, 2, random_state=5, return_parts=True)):
        np.testing.assert_allclose(a, b, **t)
    np.testing.assert_allclose(gpu.log_likelihood(Xs, 3, random_state=5),
                               cpu.log_likelihood(Xs, 3, random_state=5), **t)
    if kw.get("likelihood") == "gaussian":
        np.testing.assert_allclose(gpu.output_variance_, cpu.output_variance_, **t)
    if kw.get("output_variance") == "learned":  # the learned variances were trained
        assert not np.allclose(gpu.network_.extra(), 0)


@needs_cuda
def test_vae_device_noise_trains_reproducibly(X_vae):
    """The device's own eps (numba.cuda.random): reproducible, used, and the loss falls."""
    X = X_vae[:12]
    kw = dict(batch_size=12, learning_rate=0.1)
    gpu = tiny_vae("cuda", max_epochs=5, **kw).fit(X)
    curve = gpu.loss_curve_
    assert np.all(np.isfinite(curve)) and curve[-1] < curve[0]
    once = [tiny_vae("cuda", max_epochs=1, **kw).fit(X) for _ in range(2)]
    np.testing.assert_array_equal(once[0].network_.params, once[1].network_.params)
    cpu = tiny_vae("cpu", max_epochs=1, **kw).fit(X)  # other noise: close, not equal
    assert not np.array_equal(once[0].network_.params, cpu.network_.params)
    # one Adam step moves each parameter by at most the learning rate
    np.testing.assert_allclose(once[0].network_.params, cpu.network_.params, atol=0.2 + 1e-5)
    Xs = X[:5]
    same = [gpu.elbo(Xs, random_state=1) for _ in range(2)]
    np.testing.assert_array_equal(same[0], same[1])
    assert not np.allclose(gpu.elbo(Xs, random_state=2), same[0])
    backend = gpu._sampling_backend(3)  # one backend draws afresh on each call
    assert not np.allclose(backend.vae_rows(Xs)[0], backend.vae_rows(Xs)[0])
    rec, kl = backend.vae_rows(Xs, sample=False)
    np.testing.assert_allclose(-(rec + kl), gpu.score_samples(Xs), rtol=1e-6)


@needs_cuda
@pytest.mark.parametrize("likelihood,learned", [("bernoulli", False), ("gaussian", False),
                                                ("gaussian", True)])
def test_vae_step_gradients_match_cpu_and_finite_differences(likelihood, learned):
    """One float64 step with a fixed eps (the same on both devices): the CUDA gradient
    buffer against the CPU's and against central differences of the negative ELBO."""
    import reference_network as ref
    from aefast.engine.backends import CPUBackend
    from aefast.engine.network import Network
    from aefast.engine.optimizers import Optimizer, OptimizerState
    from aefast.engine.regularizers import make_regularization

    rng = np.random.default_rng(5)
    n, d, k = 7, 5, 2
    X = rng.uniform(0.05, 0.95, size=(n, d))
    acts = ["tanh", "identity", "tanh", "sigmoid" if likelihood == "bernoulli" else "identity"]
    net = Network([d, 4, 2 * k, 4, d], acts, np.float64, n_latent=k, vae_block=2,
                  n_extra=d if learned else 0)
    net.initialize(np.random.default_rng(6))
    net.weight(1)[:, k:] *= 0.1  # moderate log-variances
    if learned:
        net.extra()[:] = rng.uniform(-1, 1, size=d)
        net.extra()[0] = 12.0  # clamped (to 10): no gradient
    loss = "bce" if likelihood == "bernoulli" else "gaussian"
    bottleneck = dict(gaussian=True, n_latent=k, kl_weight=0.7,
                      obs_off=net.extra_off if learned else -1, obs_logvar=np.log(0.6))
    before = net.params.copy()

    def step(backend):
        net.params[:] = before
        losses = np.empty(1)
        grads = np.zeros_like(before)
        steps, status = backend.train_batches(
            X, np.arange(n, dtype=np.int64), 0, n, n, Optimizer("sgd", 1e-300),
            OptimizerState(net.n_params, net.dtype), grads, 0.0, 0.0, losses)
        assert (steps, status) == (1, 0)
        return grads, losses[0]

    cpu_reg = make_regularization(None, None, 2, 2 * k, np.random.Generator(np.random.PCG64(9)),
                                  **bottleneck)
    cpu_grads, cpu_loss = step(CPUBackend(net, loss, cpu_reg))
    gpu_reg = cuda_backend.make_regularization(None, None, 2, 2 * k, np.random.default_rng(0),
                                               **bottleneck)
    gpu_reg.eps_rng = np.random.Generator(np.random.PCG64(9))
    backend = cuda_backend.CUDABackend(net, loss, gpu_reg)
    _, gpu_loss = step(backend)
    gpu_grads = backend.d_grads.copy_to_host()
    np.testing.assert_allclose(gpu_grads, cpu_grads, rtol=1e-9, atol=1e-12)
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-12)
    eps = np.random.Generator(np.random.PCG64(9)).standard_normal((n, k))

    def objective(p):
        net.params[:] = p
        weights = [(net.weight(l), net.bias(l)) for l in range(net.n_layers)]
        obs = net.extra() if learned else np.log(0.6)
        return ref.vae_objective(weights, acts, likelihood, X, 2, eps, 0.7, obs)

    assert gpu_loss == pytest.approx(objective(before), rel=1e-12)
    h = 1e-6
    numeric = np.array([(objective(before + h * e) - objective(before - h * e)) / (2 * h)
                        for e in np.eye(before.size)])
    net.params[:] = before
    np.testing.assert_allclose(gpu_grads, numeric, rtol=1e-5, atol=1e-8)
    if learned:
        assert gpu_grads[net.extra_off] == 0.0


@needs_cuda
def test_vae_backend_checks():
    from aefast.engine.network import Network

    net = Network([5, 4, 3, 5], ["identity", "relu", "sigmoid"], np.float32, n_latent=2,
                  vae_block=1)
    with pytest.raises(ValueError, match="Gaussian bottleneck"):
        cuda_backend.CUDABackend(net, "bce", None)
    reg = cuda_backend.make_regularization(None, None, 1, 2, np.random.default_rng(0),
                                           gaussian=True, n_latent=1)
    with pytest.raises(ValueError, match="Gaussian bottleneck"):  # the network's z is 2 wide
        cuda_backend.CUDABackend(net, "bce", reg)
    reg = cuda_backend.make_regularization(None, None, 1, 4, np.random.default_rng(0),
                                           gaussian=True, n_latent=2)
    with pytest.raises(ValueError, match="kl_weight"):
        reg.kl_weight = -1.0
    reg.kl_weight = 0.25
    assert reg.kl_weight == 0.25
    net = Network([5, 4, 5], ["identity", "sigmoid"], np.float32, n_latent=2, vae_block=1)
    with pytest.raises(ValueError, match="fused"):
        cuda_backend.CUDABackend(net, "bce", reg, fused=True)._use_fused(4)
    with pytest.raises(ValueError, match="seed"):
        unseeded = cuda_backend.make_regularization(None, None, 1, 4, None, gaussian=True,
                                                    n_latent=2)
        cuda_backend.CUDABackend(net, "bce", unseeded).vae_rows(np.zeros((3, 5), np.float32))


# --------------------------------------------------------------------------- device resolution


def _no_gpu(monkeypatch):
    monkeypatch.setattr(cuda_backend, "cuda_available", lambda: (False, "no GPU in this test"))


def test_cuda_without_gpu_is_a_clear_error(X, monkeypatch):
    _no_gpu(monkeypatch)
    with pytest.raises(ValueError, match="device='cuda' needs a usable CUDA GPU"):
        tiny("cuda").fit(X)
    with pytest.raises(ValueError, match="cuda"):
        aefast.OjaPCA(2, device="cuda").fit(X)


def test_auto_falls_back_to_cpu_with_a_log_line(X, monkeypatch, caplog):
    _no_gpu(monkeypatch)
    with caplog.at_level(logging.INFO, logger="aefast"):
        model = tiny("auto").fit(X)
    assert model.device_ == "cpu"
    assert any("using the CPU" in r.getMessage() and r.levelno == logging.INFO
               for r in caplog.records)


def test_auto_picks_cuda_when_available(monkeypatch):
    from aefast.models._validation import check_device

    monkeypatch.setattr(cuda_backend, "cuda_available", lambda: (True, "a test GPU"))
    assert check_device("auto") == "cuda"
    assert check_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device"):
        check_device("tpu")


def test_simulator_counts_only_when_enabled(monkeypatch):
    import numba

    monkeypatch.setattr(numba.config, "ENABLE_CUDASIM", 0)
    monkeypatch.setattr("numba.cuda.is_available", lambda: False, raising=False)
    assert cuda_backend.cuda_available()[0] is False
    monkeypatch.setattr(numba.config, "ENABLE_CUDASIM", 1)
    assert cuda_backend.cuda_available()[0] is True
