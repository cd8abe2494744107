"""The compiled engine against NumPy float64 references and finite differences."""
import numpy as np
import pytest

from aefast.engine.backends import CPUBackend
from aefast.engine.network import ACTIVATIONS, Network
from aefast.engine.optimizers import Optimizer, OptimizerState

import reference_network as ref


def make_network(sizes, acts, dtype, seed=0):
    net = Network(sizes, acts, dtype=dtype)
    net.initialize(np.random.default_rng(seed))
    # Non-zero biases so their gradients are exercised too.
    net.params[net.weight_mask() == 0] = np.random.default_rng(seed + 1).normal(
        0, 0.1, size=int((net.weight_mask() == 0).sum()))
    return net


def layer_list(net):
    return [(net.weight(l).astype(float), net.bias(l).astype(float)) for l in range(net.n_layers)]


def engine_gradient(net, loss, X, weight_decay=0.0, weight_l1=0.0):
    """Gradient buffer of one full-batch step (computed before the update)."""
    backend = CPUBackend(net, loss)
    grads = np.zeros_like(net.params)
    state = OptimizerState(net.n_params, net.dtype)
    before = net.params.copy()
    steps, status = backend.train_batches(
        X, np.arange(X.shape[0], dtype=np.int64), 0, X.shape[0], X.shape[0],
        Optimizer("sgd", 1e-300), state, grads, weight_decay, weight_l1, np.empty(1))
    net.params[:] = before
    assert (steps, status) == (1, 0)
    return grads


def flat(net, pairs):
    out = np.zeros(net.n_params)
    for layer, (dW, db) in enumerate(pairs):
        net.weight(layer, out)[...] = dW
        net.bias(layer, out)[...] = db
    return out


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_network_gradient_matches_finite_differences(act, loss):
    rng = np.random.default_rng(3)
    X = rng.uniform(0.05, 0.95, size=(7, 5))
    out_act = "sigmoid" if loss == "bce" else act
    net = make_network([5, 4, 3, 4, 5], [act, act, act, out_act], np.float64)
    grads = engine_gradient(net, loss, X, weight_decay=0.1, weight_l1=0.01)
    acts = net.activations
    p0 = net.params.copy()

    def objective(params):
        net.params[:] = params
        return ref.objective(layer_list(net), net.activations, loss, X, 0.1, 0.01)

    h = 1e-6
    numeric = np.array([(objective(p0 + h * e) - objective(p0 - h * e)) / (2 * h)
                        for e in np.eye(p0.size)])
    net.params[:] = p0
    np.testing.assert_allclose(grads, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_gradient_matches_reference_backprop(act, dtype):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(13, 7)).astype(dtype)
    net = make_network([7, 6, 2, 6, 7], [act, "identity", act, "identity"], dtype)
    grads = engine_gradient(net, "mse", X, weight_decay=0.05)
    expected = flat(net, ref.gradients(layer_list(net), net.activations, "mse", X, 0.05))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(grads, expected, rtol=tol, atol=tol * 1e-2)


@pytest.mark.parametrize("name,nesterov", [("sgd", False), ("momentum", False),
                                           ("momentum", True), ("adam", False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_steps_match_numpy_reference(name, nesterov, dtype):
    rng = np.random.default_rng(11)
    X = rng.uniform(0, 1, size=(40, 9)).astype(dtype)
    net = make_network([9, 7, 3, 7, 9], ["relu", "identity", "relu", "sigmoid"], dtype)
    ref_params = net.params.astype(float)
    ref_net = Network(net.sizes, net.activations, np.float64)
    opt = Optimizer(name, 0.05, momentum=0.8, nesterov=nesterov)
    state = OptimizerState(net.n_params, net.dtype)
    order = rng.permutation(40).astype(np.int64)
    batch = 16
    losses = np.empty(3)
    steps, status = CPUBackend(net, "bce").train_batches(
        X, order, 0, 40, batch, opt, state, np.zeros_like(net.params), 0.0, 0.0, losses)
    assert (steps, status) == (3, 0) and state.t == 3
    ref_state = {}
    for t, start in enumerate(range(0, 40, batch), start=1):
        Xb = X[order[start:start + batch]].astype(float)
        ref_net.params[:] = ref_params
        pairs = layer_list(ref_net)
        np.testing.assert_allclose(losses[t - 1], ref.objective(pairs, net.activations, "bce", Xb),
                                   rtol=1e-5)
        g = flat(ref_net, ref.gradients(pairs, net.activations, "bce", Xb))
        ref_params = ref.optimizer_step(name, ref_params, g, ref_state, 0.05, t,
                                        momentum=0.8, nesterov=nesterov)
    tol = 2e-5 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(net.params, ref_params, rtol=tol, atol=tol)


@pytest.mark.parametrize("n_rows", [1, 7, 513])
@pytest.mark.parametrize("order", ["C", "F"])
def test_forward_and_row_losses_match_reference(n_rows, order):
    rng = np.random.default_rng(n_rows)
    X = np.asarray(rng.uniform(0, 1, size=(n_rows, 6)), order=order)
    net = make_network([6, 5, 2, 5, 6], ["tanh", "softplus", "leaky_relu", "sigmoid"],
                       np.float64)
    backend = CPUBackend(net, "bce")
    Xc = np.ascontiguousarray(X)
    zs, hs = ref.forward(layer_list(net), net.activations, X)
    np.testing.assert_allclose(backend.forward(Xc, 0, 4), hs[-1], rtol=1e-12)
    np.testing.assert_allclose(backend.forward(Xc, 0, 2), hs[2], rtol=1e-12)
    np.testing.assert_allclose(backend.forward(np.ascontiguousarray(hs[2]), 2, 4), hs[-1],
                               rtol=1e-12)
    per_row = [ref.loss("bce", [z[i:i + 1] for z in zs], [h[i:i + 1] for h in hs], X[i:i + 1])
               for i in range(n_rows)]
    np.testing.assert_allclose(backend.row_losses(Xc), per_row, rtol=1e-12)


def test_bce_from_logits_is_stable_for_huge_logits():
    net = Network([2, 2], ["sigmoid"], np.float64)
    net.weight(0)[...] = [[-1e4, 1e4], [0, 0]]
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    # Row 0 has logits (-1e4, 1e4) against targets (1, 0); row 1 has logits 0.
    losses = CPUBackend(net, "bce").row_losses(X)
    np.testing.assert_allclose(losses, [1e4, np.log(2)], rtol=1e-12)


def test_nonfinite_gradient_stops_before_the_update():
    net = make_network([3, 2, 3], ["identity", "identity"], np.float64)
    X = np.full((4, 3), 1e200)
    before = net.params.copy()
    steps, status = CPUBackend(net, "mse").train_batches(
        X, np.arange(4, dtype=np.int64), 0, 4, 4, Optimizer("sgd", 0.1),
        OptimizerState(net.n_params, net.dtype), np.zeros_like(net.params), 0.0, 0.0,
        np.empty(1))
    assert steps == 0 and status != 0
    np.testing.assert_array_equal(net.params, before)


def test_kernel_rejects_bad_index_and_shapes():
    net = make_network([3, 2, 3], ["relu", "identity"], np.float64)
    backend = CPUBackend(net, "mse")
    X = np.zeros((4, 3))
    args = (Optimizer("sgd", 0.1), OptimizerState(net.n_params, net.dtype),
            np.zeros_like(net.params), 0.0, 0.0, np.empty(4))
    with pytest.raises(IndexError):
        backend.train_batches(X, np.array([0, 9], dtype=np.int64), 0, 2, 2, *args)
    with pytest.raises(ValueError):
        backend.train_batches(np.zeros((4, 5)), np.arange(4, dtype=np.int64), 0, 4, 2, *args)
    with pytest.raises(IndexError):
        backend.forward(X, 0, 2, index=np.array([-1], dtype=np.int64))


def test_network_layout_and_init():
    net = Network([4, 3, 2], ["relu", "tanh"], np.float32)
    assert net.n_params == 4 * 3 + 3 + 3 * 2 + 2
    net.initialize(np.random.default_rng(0))
    assert np.shares_memory(net.weight(0), net.params)
    assert np.all(net.bias(0) == 0) and np.all(net.bias(1) == 0)
    assert net.weight_mask().sum() == 18
    with pytest.raises(ValueError, match="at least one unit"):
        Network([4, 0, 4], ["relu", "relu"])
    with pytest.raises(ValueError, match="activation"):
        Network([4, 4], ["gelu"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorised_bce_and_mse_are_accurate_over_wide_logits(dtype):
    # One layer whose weights are the identity: the logits equal the inputs'
    # transform below, spanning underflow of exp to saturation.
    rng = np.random.default_rng(0)
    d = 37
    net = Network([d, d], ["sigmoid"], dtype)
    scale = np.geomspace(1e-4, 80, d)
    net.weight(0)[...] = np.diag(scale * np.where(np.arange(d) % 2, 1, -1))
    net.bias(0)[...] = -0.5 * net.weight(0).sum(0)
    X = rng.uniform(0, 1, size=(1031, d)).astype(dtype)
    zs, hs = ref.forward(layer_list(net), net.activations, X)
    expected = [ref.loss("bce", [zs[0][i:i + 1]], None, X[i:i + 1])
                for i in range(len(X))]
    tol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(CPUBackend(net, "bce").row_losses(X), expected, rtol=tol)
    grads = engine_gradient(net, "bce", X)
    ref_grads = flat(net, ref.gradients(layer_list(net), net.activations, "bce", X))
    np.testing.assert_allclose(grads, ref_grads, rtol=10 * tol, atol=tol * 1e-3)
