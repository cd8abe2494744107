"""The numba.cuda twins (aefast/_kernels/cuda.py) against NumPy references and CPU kernels.

Runs on a real GPU, or under the Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``),
where the module's launch geometry is tiny so that these small inputs span
several blocks. Skipped when neither is available.
"""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from cuda_simulator import lock_simulator_shared_arrays

from aefast.engine.cuda_backend import cuda_available

if not cuda_available()[0]:
    pytest.skip("numba.cuda has no GPU and the simulator is off (NUMBA_ENABLE_CUDASIM=1)",
                allow_module_level=True)

from numba import cuda  # noqa: E402

import reference as ref  # noqa: E402
import reference_network as rn  # noqa: E402
from aefast._kernels import cpu as C  # noqa: E402
from aefast._kernels import cuda as K  # noqa: E402
from aefast.engine.bottleneck import LOGVAR_MAX, LOGVAR_MIN  # noqa: E402
from aefast.engine.network import ACTIVATIONS  # noqa: E402

DTYPES = [np.float32, np.float64]

pytestmark = [
    # the simulator runs xoroshiro128+ on NumPy uint64 scalars (wrap-around warnings) and
    # initialises its states in object mode
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore::numba.NumbaDeprecationWarning"),
]


@pytest.fixture(autouse=True, scope="module")
def _fast_simulator():
    """The simulator runs one Python thread per CUDA thread: switch threads quickly."""
    old = sys.getswitchinterval()
    if K.SIMULATOR:
        sys.setswitchinterval(1e-5)
    undo = lock_simulator_shared_arrays()
    yield
    undo()
    sys.setswitchinterval(old)


def tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)


def dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def zeros_status():
    return dev(np.zeros(2, dtype=np.int64))


def no_obs(dtype=np.float64):
    """The Gaussian-likelihood arguments of the loss kernels when the loss is not Gaussian."""
    return dev(np.zeros(1, dtype)), dev(np.zeros(1, dtype)), False, 0.0


def test_geometry_spans_several_blocks():
    # The inputs below (7 to 13 wide) must cross block boundaries.
    assert K.TILE < 7 and K.COL_X < 7 and K.ROW_BLOCK < 7 and K.OJA_BLOCK < 7


# --------------------------------------------------------------------------- GEMM


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_tiled_gemm(dtype, ta, tb):
    rng = np.random.default_rng(0)
    m, n, kd = 9, 7, 6
    A = rng.standard_normal((kd, m) if ta else (m, kd)).astype(dtype)
    B = rng.standard_normal((n, kd) if tb else (kd, n)).astype(dtype)
    Cd = cuda.device_array((m + 2, n), dtype=dtype)  # larger buffer: only [:m] is written
    K.launch_gemm(dev(A), dev(B), Cd, m, n, kd, ta, tb)
    expected = (A.T if ta else A).astype(float) @ (B.T if tb else B).astype(float)
    np.testing.assert_allclose(Cd.copy_to_host()[:m], expected, **tol(dtype))
    # the public matmul wrapper (cuBLAS when CuPy is there, else the same kernel)
    np.testing.assert_allclose(K.matmul(A, B, ta=ta, tb=tb).copy_to_host(), expected,
                               **tol(dtype))


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_gemm_epilogue_and_bias_activation(act):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((9, 5))
    W = rng.standard_normal((5, 7))
    b = rng.standard_normal(7)
    code = ACTIVATIONS.index(act)
    expected = rn.activation(act, A @ W + b)
    Cd = cuda.device_array((9, 7))
    K.launch_gemm(dev(A), dev(W), Cd, 9, 7, 5, bias=dev(b), act=code, slope=rn.LEAKY_SLOPE)
    np.testing.assert_allclose(Cd.copy_to_host(), expected, rtol=1e-12, atol=1e-12)
    Z = dev(A @ W)
    K.bias_act_kernel[K._grid(63), K.BLOCK](Z, dev(b), 9, 7, code, rn.LEAKY_SLOPE)
    np.testing.assert_allclose(Z.copy_to_host(), expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- loss and backward


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss,act", [("mse", a) for a in ACTIVATIONS] + [("bce", "sigmoid")])
def test_loss_delta(dtype, loss, act):
    rng = np.random.default_rng(2)
    rows, cols = 7, 9
    z = rng.standard_normal((rows + 1, cols))
    x = rng.uniform(0, 1, (rows + 1, cols))
    out = (z if loss == "bce" else rn.activation(act, z)).astype(dtype)  # BCE keeps logits
    scale = 1.0 / (rows * cols)
    delta = cuda.device_array((rows + 1, cols), dtype=dtype)
    gb = cuda.device_array(cols, dtype=dtype)
    nslots = K._cols_grid(cols)
    partials = dev(np.zeros((3, nslots)))
    status = zeros_status()
    K.loss_delta_kernel[nslots, (K.COL_X, K.COL_Y)](
        dev(out), dev(x.astype(dtype)), delta, rows, cols, int(loss == "bce"),
        ACTIVATIONS.index(act), rn.LEAKY_SLOPE, scale, gb, partials, 1, 0, status,
        *no_obs(dtype))
    zs, xs = z[:rows], x.astype(dtype).astype(float)[:rows]
    if loss == "mse":
        hs = out.astype(float)[:rows]
        expected_loss = np.sum((hs - xs) ** 2)
        expected_delta = 2 * scale * (hs - xs) * rn.activation_derivative(act, zs)
    else:
        zs = out.astype(float)[:rows]
        expected_loss = np.sum(np.maximum(zs, 0) - zs * xs + np.log1p(np.exp(-np.abs(zs))))
        expected_delta = scale * (1 / (1 + np.exp(-zs)) - xs)
    t = dict(rtol=1e-4, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)
    if act == "relu" and loss == "mse":  # act' through the output: 0 where relu(z) = 0
        expected_delta[hs <= 0] = 0
    np.testing.assert_allclose(partials.copy_to_host()[1].sum(), expected_loss, **t)
    np.testing.assert_allclose(delta.copy_to_host()[:rows], expected_delta, **t)
    np.testing.assert_allclose(gb.copy_to_host(), expected_delta.sum(axis=0), **t)
    assert status.copy_to_host()[0] == 0
    # a non-finite output sets the loss status with the step index
    bad = out.copy()
    bad[2, 3] = np.nan
    K.loss_delta_kernel[nslots, (K.COL_X, K.COL_Y)](
        dev(bad), dev(x.astype(dtype)), delta, rows, cols, int(loss == "bce"),
        ACTIVATIONS.index(act), rn.LEAKY_SLOPE, scale, gb, partials, 2, 0, status,
        *no_obs(dtype))
    assert list(status.copy_to_host()) == [K.ST_NONFINITE_LOSS, 2]


def test_row_losses():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((9, 7))
    x = rng.uniform(0, 1, (9, 7))
    res = cuda.device_array(9)
    for loss in (0, 1):
        K.row_loss_kernel[K._grid(9), K.BLOCK](dev(z), dev(x), 9, 7, loss, res, 7.0,
                                               dev(np.zeros(1)), False, 0.0)
        if loss:
            expected = np.mean(np.maximum(z, 0) - z * x + np.log1p(np.exp(-np.abs(z))), axis=1)
        else:
            expected = np.mean((z - x) ** 2, axis=1)
        np.testing.assert_allclose(res.copy_to_host(), expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("learned", [False, True])
def test_gaussian_nll_loss_delta_and_variance_gradient(dtype, learned):
    """LOSS_GAUSS (the VAE's): per-feature log-variances, learned (clamped, with their
    gradient as a column sum) or fixed; the row losses are the same NLL."""
    rng = np.random.default_rng(16)
    rows, cols = 7, 9
    out = rng.standard_normal((rows + 1, cols)).astype(dtype)
    x = rng.standard_normal((rows + 1, cols)).astype(dtype)
    raw = rng.uniform(-1.5, 1.5, cols)
    raw[1], raw[4] = -25.0, 12.0  # clamped: no gradient
    raw = raw.astype(dtype)
    fixed = float(np.log(0.7))
    lv = np.clip(raw.astype(float), LOGVAR_MIN, LOGVAR_MAX) if learned else np.full(cols, fixed)
    scale = 1.0 / rows
    delta = cuda.device_array((rows + 1, cols), dtype=dtype)
    gb = cuda.device_array(cols, dtype=dtype)
    glv = dev(np.full(cols, 99.0, dtype))
    nslots = K._cols_grid(cols)
    partials = dev(np.zeros((1, nslots)))
    status = zeros_status()
    K.loss_delta_kernel[nslots, (K.COL_X, K.COL_Y)](
        dev(out), dev(x), delta, rows, cols, K.LOSS_GAUSS, K.ACT_IDENTITY, 0.0, scale, gb,
        partials, 0, 0, status, dev(raw), glv, learned, fixed)
    o, t_ = out.astype(float)[:rows], x.astype(float)[:rows]
    r2 = (o - t_) ** 2 * np.exp(-lv)
    nll = 0.5 * (r2 + lv + np.log(2 * np.pi))
    expected_delta = scale * (o - t_) * np.exp(-lv)
    t = dict(rtol=1e-4, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(partials.copy_to_host().sum(), nll.sum(), **t)
    np.testing.assert_allclose(delta.copy_to_host()[:rows], expected_delta, **t)
    np.testing.assert_allclose(gb.copy_to_host(), expected_delta.sum(axis=0), **t)
    if learned:
        free = (raw >= LOGVAR_MIN) & (raw <= LOGVAR_MAX)
        np.testing.assert_allclose(glv.copy_to_host(),
                                   np.sum(0.5 * scale * (1 - r2), axis=0) * free, **t)
    else:
        np.testing.assert_array_equal(glv.copy_to_host(), 99.0)  # untouched
    res = cuda.device_array(rows)
    K.row_loss_kernel[K._grid(rows), K.BLOCK](dev(out), dev(x), rows, cols, K.LOSS_GAUSS, res,
                                              1.0, dev(raw), learned, fixed)
    np.testing.assert_allclose(res.copy_to_host(), nll.sum(axis=1), **t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_act_grad_with_bias_gradient(dtype, act):
    rng = np.random.default_rng(4)
    rows, cols = 7, 9
    z = rng.standard_normal((rows, cols))
    h = rn.activation(act, z).astype(dtype)
    d = rng.standard_normal((rows, cols)).astype(dtype)
    dd, gb = dev(d), cuda.device_array(cols, dtype=dtype)
    K.act_grad_kernel[K._cols_grid(cols), (K.COL_X, K.COL_Y)](
        dd, dev(h), rows, cols, ACTIVATIONS.index(act), rn.LEAKY_SLOPE, 0, 0.0,
        dev(np.zeros(cols)), dev(np.zeros((1, 1), np.uint8)), False, dev(np.zeros((1, 1), dtype)),
        False, gb, zeros_status())
    deriv = rn.activation_derivative(act, z)
    if act == "relu":
        deriv[h <= 0] = 0
    expected = d.astype(float) * deriv
    t = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dd.copy_to_host(), expected, **t)
    np.testing.assert_allclose(gb.copy_to_host(), expected.sum(axis=0), **t)


@pytest.mark.parametrize("kind", ["l1", "kl"])
def test_code_penalty_value_and_gradient(kind):
    rng = np.random.default_rng(5)
    rows, width, weight, target = 7, 9, 0.3, 0.1
    z = rng.standard_normal((rows, width))
    code = rn.activation("sigmoid" if kind == "kl" else "identity", z)
    code_k = 1 if kind == "l1" else 2
    nslots = K._cols_grid(width)
    partials = dev(np.zeros((1, nslots)))
    pgrad = dev(np.zeros(width))
    K.code_penalty_kernel[nslots, (K.COL_X, K.COL_Y)](
        dev(code), rows, width, code_k, weight, target, pgrad, partials, 0, 0, zeros_status())
    np.testing.assert_allclose(partials.copy_to_host().sum(),
                               rn.code_penalty(kind, code, weight, target), rtol=1e-12)
    # gradient of the penalty through the backward kernel (identity activation)
    d = rng.standard_normal((rows, width))
    dd = dev(d)
    K.act_grad_kernel[nslots, (K.COL_X, K.COL_Y)](
        dd, dev(code), rows, width, 0, 0.0, code_k, weight, pgrad,
        dev(np.zeros((1, 1), np.uint8)), False, dev(np.zeros((1, 1))), False,
        cuda.device_array(width), zeros_status())
    eps = 1e-6
    num = np.zeros_like(code)
    for i in range(rows):
        for j in range(width):
            up, dn = code.copy(), code.copy()
            up[i, j] += eps
            dn[i, j] -= eps
            num[i, j] = (rn.code_penalty(kind, up, weight, target)
                         - rn.code_penalty(kind, dn, weight, target)) / (2 * eps)
    np.testing.assert_allclose(dd.copy_to_host() - d, num, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("with_extra", [False, True])
def test_topk_mask_in_backward(with_extra):
    rng = np.random.default_rng(6)
    d = rng.standard_normal((5, 7))
    h = rng.standard_normal((5, 7))
    mask = (rng.uniform(size=(5, 7)) < 0.4).astype(np.uint8)
    # AuxK's delta (on unselected units) is added after the mask, into the bias gradient too
    extra = rng.standard_normal((5, 7)) * (1 - mask) if with_extra else np.zeros((1, 1))
    dd, gb = dev(d), cuda.device_array(7)
    K.act_grad_kernel[K._cols_grid(7), (K.COL_X, K.COL_Y)](
        dd, dev(h), 5, 7, 0, 0.0, 0, 0.0, dev(np.zeros(7)), dev(mask), True, dev(extra),
        with_extra, gb, zeros_status())
    expected = d * mask + (extra if with_extra else 0.0)
    np.testing.assert_allclose(dd.copy_to_host(), expected)
    np.testing.assert_allclose(gb.copy_to_host(), expected.sum(axis=0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_penalty_and_gradient_check(dtype):
    rng = np.random.default_rng(7)
    n = 29
    p = rng.standard_normal(n).astype(dtype)
    p[3] = 0.0
    g = rng.standard_normal(n).astype(dtype)
    wmask = (np.arange(n) % 5 != 0).astype(np.uint8)  # biases at multiples of 5
    l2, l1 = 0.1, 0.01
    grid = K._grid(n)
    partials = dev(np.zeros((2, grid)))
    gd, status = dev(g), zeros_status()
    K.penalty_check_kernel[grid, K.BLOCK](dev(p), gd, n, dev(wmask), l2, l1, partials, 1, 0,
                                          status)
    w = p.astype(float) * wmask
    np.testing.assert_allclose(partials.copy_to_host()[1].sum(),
                               np.sum(0.5 * l2 * w ** 2 + l1 * np.abs(w)), rtol=1e-6)
    expected = g + wmask * (l2 * p.astype(float) + l1 * np.sign(p.astype(float)))
    np.testing.assert_allclose(gd.copy_to_host(), expected, **tol(dtype))
    assert status.copy_to_host()[0] == 0
    g[11] = np.inf
    K.penalty_check_kernel[grid, K.BLOCK](dev(p), dev(g), n, dev(wmask), 0.0, 0.0, partials, 0,
                                          0, status)
    assert list(status.copy_to_host()) == [K.ST_NONFINITE_GRAD, 0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,nesterov", [("sgd", False), ("momentum", False),
                                           ("momentum", True), ("adam", False)])
def test_optimizers(dtype, name, nesterov):
    rng = np.random.default_rng(8)
    n = 37
    p = rng.standard_normal(n).astype(dtype)
    state, expected = {}, p.astype(float)
    pd, s1, s2 = dev(p), dev(np.zeros(n, dtype)), dev(np.zeros(n, dtype))
    code = {"sgd": 0, "momentum": 2 if nesterov else 1, "adam": 3}[name]
    lr, mu, b1, b2, eps = 0.01, 0.9, 0.9, 0.999, 1e-8
    for t in (1, 2, 3):
        g = rng.standard_normal(n).astype(dtype)
        expected = rn.optimizer_step(name, expected, g.astype(float), state, lr, t, mu,
                                     nesterov, b1, b2, eps)
        K.optimizer_kernel[K._grid(n), K.BLOCK](
            pd, dev(g), s1, s2, n, code, lr, mu, b1, b2, lr / (1 - b1 ** t),
            1 / math.sqrt(1 - b2 ** t), eps, zeros_status())
    np.testing.assert_allclose(pd.copy_to_host(), expected, **tol(dtype))
    # a set status skips the update
    before = pd.copy_to_host()
    K.optimizer_kernel[K._grid(n), K.BLOCK](
        pd, dev(g), s1, s2, n, code, lr, mu, b1, b2, 1.0, 1.0, eps,
        dev(np.array([K.ST_NONFINITE_GRAD, 0])))
    np.testing.assert_array_equal(pd.copy_to_host(), before)


def test_normalize_rows():
    W = np.random.default_rng(9).standard_normal((7, 5))
    W[2] = 0
    Wd = dev(W)
    K.normalize_rows_kernel[K._grid(7), K.BLOCK](Wd, 7, 5, zeros_status())
    norms = np.linalg.norm(W, axis=1, keepdims=True)
    np.testing.assert_allclose(Wd.copy_to_host(), np.where(norms > 0, W / np.where(
        norms > 0, norms, 1), 0), rtol=1e-12)


# --------------------------------------------------------------------------- top-k


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3, 9])
def test_topk_matches_stable_argsort(dtype, k):
    rng = np.random.default_rng(10)
    X = rng.integers(-3, 4, size=(6, 9)).astype(dtype)  # many ties
    X[0, :] = 1.0
    values, indices = K.topk(X, k)
    order = np.argsort(-X, axis=1, kind="stable")[:, :k]  # lower column first among equals
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_array_equal(values, np.take_along_axis(X, order, axis=1))
    assert values.dtype == dtype


def test_topk_sparsify_counts_firings():
    rng = np.random.default_rng(11)
    rows, width, k = 5, 9, 3
    X = rng.standard_normal((rows, width))
    X[1, :] = 0.0  # a row of zeros: selected, but not counted as firing
    Xd = dev(X)
    vals = cuda.device_array((rows, k))
    idx = cuda.device_array((rows, k), dtype=np.int64)
    mask = cuda.device_array((rows, width), dtype=np.uint8)
    fired = dev(np.zeros(width, np.int64))
    last = dev(np.zeros(width, np.int64))
    dense = dev(np.full((rows, width), np.nan))
    K.topk_rows_kernel[2, K.ROW_BLOCK](Xd, rows, width, k, vals, idx, mask, True, fired, last,
                                       42, True, dense, True, zeros_status())
    expected = rn.keep_topk(X, k)
    np.testing.assert_array_equal(Xd.copy_to_host(), expected)
    np.testing.assert_array_equal(dense.copy_to_host(), X)  # the row before sparsifying
    sel = np.argsort(-X, axis=1, kind="stable")[:, :k]
    m = np.zeros_like(X, dtype=np.uint8)
    np.put_along_axis(m, sel, 1, axis=1)
    np.testing.assert_array_equal(mask.copy_to_host(), m)
    counts = np.zeros(width, np.int64)
    for i in range(rows):
        for j in sel[i]:
            counts[j] += X[i, j] != 0
    np.testing.assert_array_equal(fired.copy_to_host(), counts)
    np.testing.assert_array_equal(last.copy_to_host(), np.where(counts > 0, 42, 0))


def auxk_reference(dense, target, out, logits, W, dead, aux_k, aux_weight, code_deriv):
    """NumPy float64 AuxK of one batch (the CPU's ``_auxk``, written out).

    Returns the loss, the gradient with respect to e_hat, the picked values
    alone (zeros elsewhere), the code delta of the picked units (through
    ``code_deriv``, the code activation's derivative at the dense code) and
    each row's picks (indices, -1 past the last; values), best first.
    """
    rows, width = dense.shape
    d = W.shape[1]
    x_hat = 1 / (1 + np.exp(-out)) if logits else out
    residual = target - x_hat
    m = min(aux_k, int(dead.sum()))
    picks = np.full((rows, aux_k), -1, np.int64)
    picked = np.zeros((rows, aux_k))
    code = np.zeros_like(dense)
    for i in range(rows):
        keep = np.argsort(-np.where(dead, dense[i], -np.inf), kind="stable")[:m]
        picks[i, :m] = keep
        picked[i, :m] = dense[i, keep]
        code[i, keep] = dense[i, keep]   # picks of value 0 add nothing
    # without dead units the step has no AuxK term (the CPU skips such rows)
    diff = (residual - code @ W) if m else np.zeros_like(residual)
    loss = aux_weight * np.mean(diff ** 2)
    grad = -2.0 * aux_weight / (rows * d) * diff
    code_delta = np.where(code != 0, (grad @ W.T) * code_deriv, 0.0)
    return loss, grad, code, code_delta, picks, picked


@pytest.mark.parametrize("dtype,logits,act", [(np.float32, False, "identity"),
                                              (np.float64, True, "tanh")])
@pytest.mark.parametrize("dead_units", ["several", "fewer-than-aux-k", "none"])
def test_auxk_matches_reference(dtype, logits, act, dead_units):
    rng = np.random.default_rng(12)
    rows, width, d, aux_k, aux_weight = 7, 13, 9, 4, 0.3   # > AUX_GRID rows, > ROW_BLOCK wide
    samples, dead_after = 100, 30
    # dead: samples - last_fired >= dead_after (70 is just dead, 71 just alive)
    last = rng.choice([71, 90, 100], size=width)
    if dead_units == "several":
        last[[0, 3, 4, 8, 9, 12]] = [0, 70, 10, 70, 0, 40]
    elif dead_units == "fewer-than-aux-k":
        last[[5, 11]] = [70, 0]
    dead = samples - last >= dead_after
    z = rng.standard_normal((rows, width))
    z[2, [3, 8]] = 3.0                 # the best dead units of row 2 tie: lower column first
    z[4, dead] = 0.0                   # a row whose dead units are all zero: nothing decoded
    dense = rn.activation(act, z).astype(dtype)
    deriv = rn.activation_derivative(act, z)
    W = rng.standard_normal((width, d)).astype(dtype)
    target = rng.uniform(0, 1, (rows, d)).astype(dtype)
    out = rng.standard_normal((rows, d)).astype(dtype)
    loss, grad, code, code_delta, picks, picked = auxk_reference(
        dense.astype(float), target.astype(float), out.astype(float), logits, W.astype(float),
        dead, aux_k, aux_weight, deriv)
    # the loss also agrees with the one of the CPU's tests (0 when no unit is dead)
    residual = target - (1 / (1 + np.exp(-out.astype(float))) if logits else out)
    assert loss == pytest.approx(rn.auxk_loss(W.astype(float), dense.astype(float),
                                              residual, dead, aux_k, aux_weight))
    code_d = dev(dense)
    vals = dev(np.full((rows, aux_k), np.nan, dtype))
    idx = dev(np.full((rows, aux_k), 99, np.int64))
    delta_d = dev(np.full((rows, width), np.nan, dtype))
    grad_d = dev(np.full((rows, d), np.nan, dtype))
    partials = dev(np.full((2, K.AUX_GRID + 1), np.nan))
    K.auxk_kernel[K.AUX_GRID, K.ROW_BLOCK](
        code_d, dev(target), dev(out), logits, dev(W), rows, width, d, aux_k, aux_weight,
        dead_after, dev(last.astype(np.int64)), samples, ACTIVATIONS.index(act), rn.LEAKY_SLOPE,
        vals, idx, delta_d, grad_d, partials, 1, 1, zeros_status())
    t = tol(dtype)
    parts = partials.copy_to_host()
    np.testing.assert_allclose(parts[1, 1:].sum(), loss, **t)
    assert np.isnan(parts[0]).all() and np.isnan(parts[1, 0])   # only its own slots
    np.testing.assert_array_equal(idx.copy_to_host(), picks)
    np.testing.assert_allclose(vals.copy_to_host(), picked, **t)
    np.testing.assert_allclose(grad_d.copy_to_host(), grad, **t)
    np.testing.assert_array_equal(code_d.copy_to_host() != 0, code != 0)
    np.testing.assert_allclose(code_d.copy_to_host(), code, **t)
    np.testing.assert_allclose(delta_d.copy_to_host(), code_delta, **t)
    if dead_units == "several":
        assert picks[2, :2].tolist() == [3, 8] and not code[4].any()
    # the output weights' gradient the backend forms from them: code^T grad, added in place
    gW = rng.standard_normal((width, d)).astype(dtype)
    gW_d = dev(gW)
    K.add_kernel[K._grid(width * d), K.BLOCK](gW_d, dev(code.T @ grad), width, d,
                                             zeros_status())
    np.testing.assert_allclose(gW_d.copy_to_host(), gW + code.T @ grad, **t)


# --------------------------------------------------------------------------- corruption


class _Reg:
    def __init__(self, kind, level, low=0.0, high=1.0, seed=0):
        self.corruption, self.level, self.low, self.high = kind, level, low, high
        self.threshold = int(min(level * 65536.0 + 0.5, 65536.0))
        self._states = K.create_states(seed)

    def states(self):
        return self._states


def test_gather_without_corruption():
    rng = np.random.default_rng(12)
    X = rng.standard_normal((11, 7)).astype(np.float32)
    order = rng.permutation(11).astype(np.int64)
    out = cuda.device_array((6, 7), dtype=np.float32)
    K.gather_kernel[K._grid(35), K.BLOCK](dev(X), dev(order), 3, 5, out, out, 0, 0.0, 0.0,
                                          0.0, 0, K.create_states(0, 1), zeros_status())
    np.testing.assert_array_equal(out.copy_to_host()[:5], X[order[3:8]])


@pytest.mark.parametrize("kind", [K.CO_MASKING, K.CO_SALT_PEPPER])
def test_masking_and_salt_pepper(kind):
    clean = np.random.default_rng(13).uniform(0.2, 0.8, 4001).astype(np.float32)
    out = np.empty_like(clean)
    K.corrupt(clean, out, _Reg(kind, 0.3, low=-1.0, high=2.0, seed=5))
    hit = out != clean
    assert abs(hit.mean() - 0.3) < 0.05
    if kind == K.CO_MASKING:
        assert np.all(out[hit] == 0)
    else:
        assert set(np.unique(out[hit])) == {-1.0, 2.0}
        assert abs((out[hit] == 2.0).mean() - 0.5) < 0.1
    again = np.empty_like(clean)
    K.corrupt(clean, again, _Reg(kind, 0.3, low=-1.0, high=2.0, seed=5))
    np.testing.assert_array_equal(again, out)  # same seed, same noise
    K.corrupt(clean, again, _Reg(kind, 1.0, low=-1.0, high=-1.0))
    assert np.all(again == (0 if kind == K.CO_MASKING else -1.0))


def test_gaussian_noise():
    clean = np.zeros(4000)
    out = np.empty_like(clean)
    K.corrupt(clean, out, _Reg(K.CO_GAUSSIAN, 0.5, seed=1))
    assert abs(out.mean()) < 0.05 and abs(out.std() - 0.5) < 0.05


# --------------------------------------------------------------------------- sampling (VAE)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reparameterized_sampling(dtype):
    rng = np.random.default_rng(14)
    rows, k, w = 6, 5, 0.7
    h = rng.standard_normal((rows, 2 * k))
    h[0, k] = 30.0   # clamped log-variance: no gradient
    h[1, k + 1] = -40.0
    h = h.astype(dtype)
    z = cuda.device_array((rows, k), dtype=dtype)
    eps = cuda.device_array((rows, k), dtype=dtype)
    partials = dev(np.zeros((1, K.RNG_GRID)))
    K.sample_kernel[K.RNG_GRID, K.BLOCK](dev(h), rows, k, z, eps, True, K.create_states(3),
                                         partials, 0, 0, zeros_status())
    hf = h.astype(float)
    mu, raw = hf[:, :k], hf[:, k:]
    lv = np.clip(raw, LOGVAR_MIN, LOGVAR_MAX)
    sigma = np.exp(0.5 * lv)
    e = eps.copy_to_host().astype(float)
    t = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(z.copy_to_host(), mu + sigma * e, **t)
    np.testing.assert_allclose(partials.copy_to_host().sum(),
                               -0.5 * np.sum(1 + lv - mu ** 2 - sigma ** 2), rtol=1e-5)
    assert abs(e.mean()) < 1.5 and e.std() > 0.2  # standard normal draws, not constants
    # eps given (not drawn): the same z from the same eps
    z2 = cuda.device_array((rows, k), dtype=dtype)
    K.sample_kernel[K.RNG_GRID, K.BLOCK](dev(h), rows, k, z2, eps, False, K.create_states(4),
                                         partials, 0, 0, zeros_status())
    np.testing.assert_array_equal(z2.copy_to_host(), z.copy_to_host())
    np.testing.assert_array_equal(eps.copy_to_host(), e.astype(dtype))
    dz = rng.standard_normal((rows, k)).astype(dtype)
    dh = cuda.device_array((rows, 2 * k), dtype=dtype)
    K.sample_backward_kernel[K._grid(rows * k), K.BLOCK](dev(h), eps, dev(dz), rows, k, w, dh,
                                                         zeros_status())
    free = (raw >= LOGVAR_MIN) & (raw <= LOGVAR_MAX)
    dzf = dz.astype(float)
    np.testing.assert_allclose(dh.copy_to_host()[:, :k], dzf + w * mu, **t)
    np.testing.assert_allclose(dh.copy_to_host()[:, k:],
                               (0.5 * dzf * e * sigma + 0.5 * w * (sigma ** 2 - 1)) * free, **t)
    # the backward formula is the gradient of sum(dz * z) + w * KL (central differences)
    def objective(hh):
        m, v = hh[:, :k], np.clip(hh[:, k:], LOGVAR_MIN, LOGVAR_MAX)
        return np.sum(dzf * (m + np.exp(0.5 * v) * e)) - 0.5 * w * np.sum(
            1 + v - m ** 2 - np.exp(v))
    if dtype == np.float64:
        num = np.zeros_like(hf)
        for idx in np.ndindex(*hf.shape):
            up, dn = hf.copy(), hf.copy()
            up[idx] += 1e-6
            dn[idx] -= 1e-6
            num[idx] = (objective(up) - objective(dn)) / 2e-6
        np.testing.assert_allclose(dh.copy_to_host(), num, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sample_rows_posterior_mean_draw_and_given_eps(dtype):
    """Inference sampling: z = mu, a draw, or a given eps; each row's KL (clamped)."""
    rng = np.random.default_rng(17)
    rows, k = 11, 3
    h = rng.standard_normal((rows, 2 * k))
    h[0, k] = 30.0
    h[2, k + 2] = -40.0
    h = h.astype(dtype)
    hf = h.astype(float)
    mu, lv = hf[:, :k], np.clip(hf[:, k:], LOGVAR_MIN, LOGVAR_MAX)
    kl_ref = 0.5 * np.sum(mu ** 2 + np.exp(lv) - 1 - lv, axis=1)
    t = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    z = cuda.device_array((rows, k), dtype=dtype)
    eps = dev(np.full((rows, k), 7.0, dtype))
    kl = cuda.device_array(rows)
    K.sample_rows_kernel[K._grid(rows), K.BLOCK](dev(h), rows, k, z, eps, K.Z_MEAN,
                                                 K.create_states(0, 1), kl)
    np.testing.assert_allclose(z.copy_to_host(), mu, **t)
    np.testing.assert_allclose(kl.copy_to_host(), kl_ref, rtol=1e-10)
    np.testing.assert_array_equal(eps.copy_to_host(), 7.0)  # untouched
    given = rng.standard_normal((rows, k)).astype(dtype)
    eps = dev(given)
    K.sample_rows_kernel[K._grid(rows), K.BLOCK](dev(h), rows, k, z, eps, K.Z_GIVEN,
                                                 K.create_states(0, 1), kl)
    np.testing.assert_allclose(z.copy_to_host(), mu + np.exp(0.5 * lv) * given, **t)
    K.sample_rows_kernel[K.RNG_GRID, K.BLOCK](dev(h), rows, k, z, eps, K.Z_DRAW,
                                              K.create_states(5), kl)
    e = eps.copy_to_host().astype(float)
    assert not np.allclose(e, given) and e.std() > 0.2
    np.testing.assert_allclose(z.copy_to_host(), mu + np.exp(0.5 * lv) * e, **t)
    np.testing.assert_allclose(kl.copy_to_host(), kl_ref, rtol=1e-10)


# --------------------------------------------------------------------------- streaming PCA


def _pca_inputs(dtype, n=9, d=7, k=3, seed=15):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, d)) * np.linspace(2, 0.5, d)).astype(dtype)
    mean = rng.standard_normal(d).astype(dtype) * 0.1
    etas = np.full(n, 0.05, dtype=dtype)
    W = np.linalg.qr(rng.standard_normal((d, k)))[0].T.astype(dtype)
    return W, X, mean, etas


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", ["gha", "subspace", "oja", "hebb"])
def test_hebbian_rules(dtype, rule):
    W, X, mean, etas = _pca_inputs(dtype, k=1 if rule in ("oja", "hebb") else 3)
    W_cpu, W_gpu = W.copy(), W.copy()
    if rule == "hebb":
        w = W[0] / np.linalg.norm(W[0])
        w_cpu, w_gpu = w.copy(), w.copy()
        norms_cpu, norms_gpu = np.empty(X.shape[0]), np.empty(X.shape[0])
        ln_cpu = C.hebb_chunk(w_cpu, X, mean, etas, 0.0, norms_cpu)
        ln_gpu = K.hebb_chunk(w_gpu, X, mean, etas, 0.0, norms_gpu)
        w_ref, ref_norms = ref.hebb_ref(w, X, mean, etas)
        np.testing.assert_allclose(w_gpu, w_ref / np.linalg.norm(w_ref), **tol(dtype))
        np.testing.assert_allclose(norms_gpu, np.log(ref_norms), **tol(dtype))
        np.testing.assert_allclose(ln_gpu, ln_cpu, rtol=1e-5)
        np.testing.assert_allclose(w_gpu, w_cpu, **tol(dtype))
        return
    if rule == "oja":
        K.oja_chunk(W_gpu[0], X, mean, etas)
        C.oja_chunk(W_cpu[0], X, mean, etas)
        expected = ref.oja_ref(W[0], X, mean, etas)[None]
    else:
        getattr(K, rule + "_chunk")(W_gpu, X, mean, etas)
        getattr(C, rule + "_chunk")(W_cpu, X, mean, etas)
        expected = getattr(ref, rule + "_ref")(W, X, mean, etas)
    np.testing.assert_allclose(W_gpu, expected, **tol(dtype))
    np.testing.assert_allclose(W_gpu, W_cpu, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_chunk_moments(dtype):
    rng = np.random.default_rng(16)
    X = rng.standard_normal((9, 7)).astype(dtype) + 3
    shift = rng.standard_normal(7)
    weights = rng.uniform(0.5, 1, 9)
    col = np.empty(7)
    sq, max_sq = K.chunk_moments(X, shift, weights, col)
    col_ref, sq_ref, max_ref = ref.chunk_moments_ref(X, shift, weights)
    np.testing.assert_allclose(col, col_ref, rtol=1e-12)
    np.testing.assert_allclose([sq, max_sq], [sq_ref, max_ref], rtol=1e-12)
    col_cpu = np.empty(7)
    np.testing.assert_allclose(C.chunk_moments(X, shift, weights, col_cpu), (sq, max_sq),
                               rtol=1e-12)


def test_orthonormalize_rows():
    W = np.random.default_rng(17).standard_normal((3, 7)).astype(np.float32)
    out = np.empty((3, 7))
    K.orthonormalize_rows(W, out)
    np.testing.assert_allclose(out, ref.orthonormalize_rows_ref(W), atol=1e-12)
    dep = np.vstack([W[:2], W[0] + W[1]])
    K.orthonormalize_rows(dep, out)
    assert np.isnan(out[2]).all() or np.linalg.norm(out[2]) == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("center", [True, False])
def test_block_oja_chunk(dtype, center):
    W, X, mean, etas = _pca_inputs(dtype)
    mean_used = mean if center else np.zeros_like(mean)
    Z, G = K.block_oja_chunk(W, X, mean, etas, center)
    np.testing.assert_allclose(Z, X.astype(float) @ W.T.astype(float), **tol(dtype))
    expected = ref.block_oja_ref(W, X, mean_used, etas)
    Q, R = np.linalg.qr(G.astype(float))
    np.testing.assert_allclose((Q * np.sign(np.diag(R))).T, expected, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- real-target compile


@pytest.mark.skipif(not os.environ.get("AEFAST_CHECK_PTX"),
                    reason="set AEFAST_CHECK_PTX=1 (needs NVVM, no GPU) to compile every "
                           "kernel for sm_90 in a subprocess without the simulator")
def test_kernels_compile_for_the_real_target():
    code = r'''
import numba.cuda.dispatcher as disp
from numba import cuda, types, float32, float64, int64, uint8, boolean
from numba.cuda.random import xoroshiro128p_type
class Fake: compute_capability = (9, 0)
disp.get_current_device = lambda: Fake()   # device functions ask the driver for the cc
import aefast._kernels.cuda as K
for F in (float32, float64):
    A2, A1, I1, D1, D2 = F[:, ::1], F[::1], int64[::1], float64[::1], float64[:, ::1]
    U2, ST, i, f, b = uint8[:, ::1], xoroshiro128p_type[::1], int64, float64, boolean
    sigs = {
        K.gemm_kernel_for(F.name): (A2, A2, A2, i, i, i, b, b, A1, i, f, b),
        K.bias_act_kernel: (A2, A1, i, i, i, f),
        K.gather_kernel: (A2, I1, i, i, A2, A2, i, f, f, f, i, ST, I1),
        K.loss_delta_kernel: (A2, A2, A2, i, i, i, i, f, f, A1, D2, i, i, I1, A1, A1, b, f),
        K.row_loss_kernel: (A2, A2, i, i, i, D1, f, A1, b, f),
        K.code_penalty_kernel: (A2, i, i, i, f, f, D1, D2, i, i, I1),
        K.act_grad_kernel: (A2, A2, i, i, i, f, i, f, D1, U2, b, A2, b, A1, I1),
        K.penalty_check_kernel: (A1, A1, i, uint8[::1], f, f, D2, i, i, I1),
        K.optimizer_kernel: (A1, A1, A1, A1, i, i, f, f, f, f, f, f, f, I1),
        K.normalize_rows_kernel: (A2, i, i, I1),
        K.topk_rows_kernel: (A2, i, i, i, A2, int64[:, ::1], U2, b, I1, I1, i, b, A2, b, I1),
        K.auxk_kernel: (A2, A2, A2, b, A2, i, i, i, i, f, i, I1, i, i, f, A2, int64[:, ::1], A2,
                        A2, D2, i, i, I1),
        K.add_kernel: (A2, A2, i, i, I1),
        K.sample_kernel: (A2, i, i, A2, A2, b, ST, D2, i, i, I1),
        K.sample_rows_kernel: (A2, i, i, A2, A2, i, ST, D1),
        K.sample_backward_kernel: (A2, A2, A2, i, i, f, A2, I1),
        K.colsum_kernel: (A2, i, i, D1, D1, D1),
        K.rowsq_kernel: (A2, i, i, D1, D1),
        K.hebbian_rule_kernel: (A2, A2, A1, A1, i, i, D1, D1, D1),
        K.orthonormalize_rows_kernel: (D2,),
        K.block_oja_scale_kernel: (A2, i, i, D1, A1, A2, D1),
        K.block_oja_finish_kernel: (A2, i, i, D1, D1, A2),
    }
    sigs[K.train_small_kernel] = (
        A2, I1, i, i, i, I1, I1, I1, I1, i, f, A1, A1, A1, A1, uint8[::1], i, f, f, f, f, f, D2,
        f, f, i, f, f, D1, i, i, f, f, f, i, ST, A1, A2, A1, D2, I1)
    for kern, args in sigs.items():
        cuda.compile_ptx(kern.py_func, types.void(*args), cc=(9, 0))
print("compiled")
'''
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0 and "compiled" in res.stdout, res.stderr[-3000:]
