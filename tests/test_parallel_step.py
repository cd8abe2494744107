"""The data-parallel training step (n_threads > 1) against the serial one.

Each worker trains its part of the batch and the parts' gradients are summed,
so a data-parallel fit must equal the serial fit up to the order of the
floating-point sums: float64 and a tight tolerance. The random draws
(corruption, VAE noise) are made in batch order in both, so noisy parts
compare value for value too (with parts whose sizes keep the corruption's
word boundaries: rows x features a multiple of 4).
"""
import numpy as np
import pytest

import aefast
import aefast.models.autoencoder as autoencoder_module
from aefast._ext import _network
from aefast.engine.threads import SERIAL, StepThreads


def _data(n=110, d=8, seed=0, unit=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.5
    if unit:
        X = 1.0 / (1.0 + np.exp(-X))
    return X


CASES = {
    "mse-adam-penalties": (dict(hidden_layers=(6,), n_components=3, weight_decay=1e-3,
                                weight_l1=1e-4), False),
    "bce-momentum": (dict(hidden_layers=(6,), n_components=3, optimizer="momentum", nesterov=True,
                          learning_rate=0.05), True),
    "l1-activity": (dict(hidden_layers=(6,), n_components=4,
                         sparsity=aefast.L1Activity(0.01)), False),
    "kl-sparsity": (dict(hidden_layers=(6,), n_components=4, code_activation="sigmoid",
                         sparsity=aefast.KLSparsity(0.1, 0.5)), True),
    "topk-auxk": (dict(hidden_layers=(), n_components=12, loss="mse",
                       output_activation="identity",
                       sparsity=aefast.TopK(3, normalize_decoder=True, aux_k=2,
                                            dead_after=30)), False),
    "masking": (dict(hidden_layers=(6,), n_components=3,
                     corruption=aefast.MaskingNoise(0.3)), True),
    "gaussian-noise": (dict(hidden_layers=(6,), n_components=3,
                            corruption=aefast.GaussianNoise(0.2)), False),
    "salt-pepper": (dict(hidden_layers=(6,), n_components=3,
                         corruption=aefast.SaltPepperNoise(0.2)), True),
}


def _fit(make, X, options, monkeypatch):
    monkeypatch.setattr(autoencoder_module, "step_thread_options",
                        lambda *args, **kwargs: options)
    return make().fit(X)


def _assert_same_fit(serial, parallel):
    np.testing.assert_allclose(parallel.loss_curve_, serial.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(parallel.network_.params, serial.network_.params,
                               rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("name", sorted(CASES))
def test_parallel_fit_equals_serial_fit(name, workers, monkeypatch):
    params, unit = CASES[name]
    X = _data(unit=unit)
    # batch 24 splits into parts of 12 or 8 rows (x 8 features: whole noise words);
    # the last batch (14 rows) into uneven parts.
    kw = dict(batch_size=24, max_epochs=3, validation_fraction=0.0, dtype="float64",
              random_state=0, learning_rate=0.01)
    kw.update(params)

    def make():
        return aefast.Autoencoder(**kw)

    serial = _fit(make, X, [SERIAL], monkeypatch)
    parallel = _fit(make, X, [StepThreads(1, workers)], monkeypatch)
    _assert_same_fit(serial, parallel)
    if "sparsity" in params and isinstance(params["sparsity"], aefast.TopK):
        assert parallel.dead_fraction_ == serial.dead_fraction_


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_parallel_vae_fit_equals_serial_fit(likelihood, monkeypatch):
    X = _data(unit=True)

    def make():
        return aefast.VAE(hidden_layers=(6,), n_components=2, likelihood=likelihood,
                          n_samples=2, batch_size=24, max_epochs=3, validation_fraction=0.0,
                          dtype="float64", random_state=0, learning_rate=0.01)

    serial = _fit(make, X, [SERIAL], monkeypatch)
    parallel = _fit(make, X, [StepThreads(1, 2)], monkeypatch)
    _assert_same_fit(serial, parallel)


def test_float32_parallel_fit_is_close(monkeypatch):
    X = _data(n=300, d=20).astype(np.float32)

    def make():
        return aefast.Autoencoder(hidden_layers=(16,), n_components=4, batch_size=64,
                                  max_epochs=2, validation_fraction=0.0, random_state=0)

    serial = _fit(make, X, [SERIAL], monkeypatch)
    parallel = _fit(make, X, [StepThreads(1, 2)], monkeypatch)
    np.testing.assert_allclose(parallel.loss_curve_, serial.loss_curve_, rtol=1e-4)
    np.testing.assert_allclose(parallel.network_.params, serial.network_.params, atol=1e-4)


def test_workspace_sizes_per_part_are_aligned():
    sizes = np.array([8, 6, 3, 6, 8], dtype=np.int64)
    ws, delta = _network.workspace_sizes(sizes, 25, 0, 3)
    per_rows = 9  # ceil(25 / 3)
    assert ws % 3 == 0 and delta % 3 == 0
    assert ws // 3 >= per_rows * int(sizes.sum()) and (ws // 3) % 16 == 0
    assert delta // 3 >= 2 * per_rows * 8 and (delta // 3) % 16 == 0
    assert _network.workspace_sizes(sizes, 25, 0, 1) == (25 * int(sizes.sum()), 2 * 8 * 25)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_result_depends_on_parts_not_threads(dtype):
    """Parts run by one thread or by two give the same bits (the chooser may switch)."""
    from aefast.engine.backends import CPUBackend
    from aefast.engine.network import Network
    from aefast.engine.optimizers import Optimizer, OptimizerState

    X = _data(n=200, d=12).astype(dtype)
    results = []
    for workers in (1, 2, 1):
        net = Network([12, 8, 3, 8, 12], ["relu", "identity", "relu", "identity"], dtype=dtype)
        net.initialize(np.random.default_rng(0))
        backend = CPUBackend(net, "mse")
        state = OptimizerState(net.n_params, net.dtype)
        order = np.random.default_rng(1).permutation(200).astype(np.int64)
        losses = np.empty(8)
        steps, status = backend.train_batches(
            X, order, 0, 200, 25, Optimizer("adam", 1e-2), state, np.zeros_like(net.params),
            0.0, 0.0, losses, workers=workers, parts=2)
        assert (steps, status) == (8, 0)
        results.append((net.params.copy(), losses.copy()))
    for params, losses in results[1:]:
        np.testing.assert_array_equal(params, results[0][0])
        np.testing.assert_array_equal(losses, results[0][1])


def test_chooser_options_share_the_parts():
    from aefast.engine.threads import ThreadChooser

    assert ThreadChooser([SERIAL, StepThreads(1, 2)]).parts == 2
    assert ThreadChooser([StepThreads(1, 2), StepThreads(None, 1)]).parts == 2
    assert ThreadChooser([SERIAL]).parts == 1
