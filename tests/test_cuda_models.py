"""Models with device="cuda" against device="cpu", and device resolution.

Runs on a real GPU or under the Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``);
the fits are tiny (16 rows, 7 features, a few steps) because the simulator runs
one Python thread per CUDA thread. The device-resolution tests run everywhere.
"""
import logging
import pickle
import sys

import numpy as np
import pytest

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
    yield
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
def test_auxk_is_refused_on_cuda(X):
    with pytest.raises(NotImplementedError, match="aux_k"):
        tiny("cuda", hidden_layers=(), sparsity=aefast.TopK(2, aux_k=2)).fit(X)


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
