"""numba.cuda twins of aefast's compiled kernels (DESIGN.md section 4).

Design
------
Global kernels end in ``_kernel``; every CPU kernel that Python can call has a
thin launch wrapper here with the CPU name and argument order
(``oja_chunk(w, X, mean, etas)``, ``gha_chunk``, ``subspace_chunk``,
``hebb_chunk``, ``chunk_moments``, ``orthonormalize_rows``, ``corrupt``,
``topk``). A wrapper accepts host (NumPy) or device arrays: device arrays are
updated in place on the device, host arrays are copied in, updated and copied
back, so a wrapper is a drop-in replacement of its CPU twin. The training step
of the network engine (``src_ext/_network.pyx``) has its pieces here as
kernels; :mod:`aefast.engine.cuda_backend` strings them together.

Launch geometry. Shared-memory sizes must be compile-time constants, so the
block shapes are module constants chosen once at import: real-GPU sizes
(GEMM tiles of 16 x 16, 256-thread blocks, ...) or, under the Numba CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``), tiny ones, so that the small inputs of
the test suite span several blocks and the simulator (one Python thread per
CUDA thread) stays fast. Nothing reads mutable module state.

Kernel layouts:

* elementwise kernels (bias + activation, optimizers, weight penalties,
  corruption, sampling) are 1-D grid-stride loops; the row losses and the
  VAE's inference-time sampling (``sample_rows_kernel``, which also gives
  each row's KL) are one thread per row;
* "column" kernels work on a ``rows x cols`` block with ``COL_X x COL_Y``
  threads: thread ``(tx, ty)`` owns column ``j`` and rows ``ty, ty + COL_Y,
  ...``, so a column sum (the bias gradient) is a shared-memory reduction over
  ``ty`` with no atomics, fused into the loss + delta and activation-derivative
  passes; a block's total (the loss) goes to one slot of a per-step
  ``partials`` row (float64) that the host sums once per call, in a fixed
  order, so the result is deterministic;
* one block per row for top-k (``ROW_BLOCK`` threads: ``k`` rounds of a
  block-wide arg-max over the entries that come after the previous pick in the
  order "value descending, column ascending", so ties go to the lower column
  and no per-entry flags are needed), and the same for TopK's auxiliary loss
  (``auxk_kernel``: the rounds run over the dead units of the dense code, then
  the row's residual estimate and gradients; ``AUX_GRID`` blocks, one loss
  slot each);
* one block for the per-sample Hebbian rules (Oja, GHA, subspace, Hebb),
  sequential over the samples of a chunk, threads over the features: each
  thread owns a set of columns of ``W``, so the update needs no
  synchronisation; ``y = W x`` is a shared-memory reduction, ``OJA_KMAX``
  neurons at a time;
* a tiled shared-memory GEMM (``C = op(A) op(B)``, optional bias + activation
  epilogue) for when CuPy (cuBLAS) is not installed, which is also what runs
  under the simulator;
* one block for ``train_small_kernel``, every step of a call of a small
  network in one launch (phases separated by barriers): small networks are
  launch-bound, and one SM finishes their step sooner than the ~20 launches of
  the generic step would take to issue.

Failure status. The training-step kernels take a ``status`` array
``[code, step]``: the loss kernels set code 1 on a non-finite loss, the
gradient check sets 2 on a non-finite gradient, and every later kernel of the
call returns at once, so the failing step's update is never applied and the
host learns about it when it reads the call's results (no per-step round
trip). Kernels that synchronise read the flag into shared memory first, so a
block never diverges around a barrier.

Random numbers come from ``numba.cuda.random`` (xoroshiro128+), one state per
thread of a launch of fixed geometry, seeded from the model's
``numpy.random.Generator``: results are reproducible, but the noise differs
from the CPU's (another generator). Masking and salt-and-pepper noise use the
CPU's scheme: one 64-bit word gives four 16-bit uniforms (fractions resolve to
1/65536) and a hit's lowest bit picks salt or pepper.

Arithmetic: scalar intermediates are float64 (the loss sums always), stores
are in the array dtype; float32 results therefore match the CPU's float32
within rounding, not bitwise. No kernel uses fastmath: non-finite values must
propagate so that divergence is detected. Kernels are compiled lazily (on
first launch, per argument types) with ``cache=True``, so a new process reuses
the previous one's machine code; importing this module needs no GPU. The
``min``/``max`` builtins are avoided in kernels: they fail to compile for
numba 0.68's built-in CUDA target (``_clip`` instead).
"""
import math
import warnings

import numpy as np
from numba import config as _nb_config
from numba import cuda, float32, float64, int64, uint64
from numba.cuda.random import create_xoroshiro128p_states as _create_states
from numba.cuda.random import xoroshiro128p_next as _next_u64
from numba.cuda.random import xoroshiro128p_normal_float64 as _normal

from ..engine.bottleneck import LOGVAR_MAX, LOGVAR_MIN

__all__ = [
    "SIMULATOR",
    "hebb_chunk", "oja_chunk", "gha_chunk", "subspace_chunk", "chunk_moments",
    "orthonormalize_rows", "block_oja_chunk", "corrupt", "topk", "matmul",
    "create_states", "to_device",
]

SIMULATOR = bool(_nb_config.ENABLE_CUDASIM)

# Launch geometry (powers of two where reductions need it).
TILE = 4 if SIMULATOR else 16             # GEMM tile: TILE x TILE threads
BLOCK = 8 if SIMULATOR else 256           # 1-D kernels
MAX_GRID = 4 if SIMULATOR else 2048      # cap of 1-D grid-stride grids
COL_X, COL_Y = (4, 2) if SIMULATOR else (32, 8)   # column kernels
COL_THREADS = COL_X * COL_Y
ROW_BLOCK = 4 if SIMULATOR else 128       # one block per row (top-k)
OJA_BLOCK = 4 if SIMULATOR else 128       # one block for the per-sample rules
OJA_KMAX = 2 if SIMULATOR else 32         # neurons reduced together
RNG_GRID = 4 if SIMULATOR else 512        # blocks of the random kernels
RNG_STATES = RNG_GRID * BLOCK             # one xoroshiro128+ state per thread
AUX_GRID = 4 if SIMULATOR else 512        # blocks (and loss slots) of auxk_kernel
FUSED_BLOCK = 8 if SIMULATOR else 256     # the single-block trainer of small networks

# Codes shared with the engine (engine/network.py, losses.py, optimizers.py,
# regularizers.py).
ACT_IDENTITY, ACT_RELU, ACT_LEAKY_RELU, ACT_TANH, ACT_SIGMOID, ACT_SOFTPLUS = range(6)
LOSS_MSE, LOSS_BCE, LOSS_GAUSS = 0, 1, 2
LOG_2PI = 1.8378770664093453
# VAE bottleneck at inference (sample_rows_kernel): z = mu, z drawn, z from a given eps.
Z_MEAN, Z_DRAW, Z_GIVEN = 0, 1, 2
OPT_SGD, OPT_MOMENTUM, OPT_NESTEROV, OPT_ADAM = range(4)
SP_NONE, SP_L1, SP_KL, SP_TOPK = range(4)
CO_NONE, CO_GAUSSIAN, CO_MASKING, CO_SALT_PEPPER = range(4)
ST_OK, ST_NONFINITE_LOSS, ST_NONFINITE_GRAD = 0, 1, 2
RULE_GHA, RULE_SUBSPACE, RULE_HEBB = 0, 1, 2


def _grid(n, block=BLOCK):
    """Blocks of a 1-D grid-stride launch over n items."""
    return max(1, min((int(n) + block - 1) // block, MAX_GRID))


def _cols_grid(cols):
    return max(1, (int(cols) + COL_X - 1) // COL_X)


# =========================================================================== device functions


@cuda.jit(device=True, inline=True)
def _sigmoid(v):
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@cuda.jit(device=True, inline=True)
def _activate(v, act, slope):
    """act(v) for an activation code, computed in float64."""
    x = float64(v)
    if act == ACT_RELU:
        return x if x > 0.0 else 0.0
    if act == ACT_LEAKY_RELU:
        return x if x > 0.0 else slope * x
    if act == ACT_TANH:
        return math.tanh(x)
    if act == ACT_SIGMOID:
        return _sigmoid(x)
    if act == ACT_SOFTPLUS:
        return (x if x > 0.0 else 0.0) + math.log1p(math.exp(-abs(x)))
    return x


@cuda.jit(device=True, inline=True)
def _derivative(a, act, slope):
    """act'(z) written through the output a = act(z) (as the CPU engine)."""
    x = float64(a)
    if act == ACT_RELU:
        return 1.0 if x > 0.0 else 0.0
    if act == ACT_LEAKY_RELU:
        return 1.0 if x > 0.0 else slope
    if act == ACT_TANH:
        return 1.0 - x * x
    if act == ACT_SIGMOID:
        return x * (1.0 - x)
    if act == ACT_SOFTPLUS:
        return -math.expm1(-x)
    return 1.0


@cuda.jit(device=True, inline=True)
def _clip(x, low, high):
    """min(max(x, low), high) (the min/max builtins do not compile for every CUDA target)."""
    if x < low:
        return low
    if x > high:
        return high
    return x


@cuda.jit(device=True, inline=True)
def _block_flag(flag, status):
    """status[0] read once per block into shared memory (uniform across the block)."""
    if cuda.threadIdx.x == 0 and cuda.threadIdx.y == 0:
        flag[0] = status[0]
    cuda.syncthreads()
    return flag[0]


@cuda.jit(device=True)
def _block_sum(buf, tid, n):
    """Sum of buf[0:n] (n a power of two) by every thread of the block."""
    cuda.syncthreads()
    s = n // 2
    while s > 0:
        if tid < s:
            buf[tid] += buf[tid + s]
        cuda.syncthreads()
        s //= 2
    total = buf[0]
    cuda.syncthreads()
    return total


@cuda.jit(device=True)
def _column_sum(buf, tx, ty):
    """Sum over ty of buf[ty, tx] (COL_Y a power of two); valid in buf[0, tx]."""
    cuda.syncthreads()
    s = COL_Y // 2
    while s > 0:
        if ty < s:
            buf[ty, tx] += buf[ty + s, tx]
        cuda.syncthreads()
        s //= 2


# =========================================================================== GEMM (tiled)


def _make_gemm(nbtype, name):
    zero = nbtype(0)

    def gemm_kernel(A, B, C, m, n, kd, ta, tb, bias, act, slope, epilogue):
        """C[:m, :n] <- op(A) op(B) (kd inner), then act(. + bias) when epilogue."""
        sa = cuda.shared.array((TILE, TILE), nbtype)
        sb = cuda.shared.array((TILE, TILE), nbtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row = cuda.blockIdx.y * TILE + ty
        col = cuda.blockIdx.x * TILE + tx
        acc = zero
        for t0 in range(0, kd, TILE):
            ka = t0 + tx
            if row < m and ka < kd:
                sa[ty, tx] = A[ka, row] if ta else A[row, ka]
            else:
                sa[ty, tx] = zero
            kb = t0 + ty
            if col < n and kb < kd:
                sb[ty, tx] = B[col, kb] if tb else B[kb, col]
            else:
                sb[ty, tx] = zero
            cuda.syncthreads()
            for q in range(TILE):
                acc += sa[ty, q] * sb[q, tx]
            cuda.syncthreads()
        if row < m and col < n:
            if epilogue:
                C[row, col] = _activate(acc + bias[col], act, slope)
            else:
                C[row, col] = acc

    gemm_kernel.__name__ = gemm_kernel.__qualname__ = name
    return cuda.jit(gemm_kernel, cache=True)


gemm_f32_kernel = _make_gemm(float32, "gemm_f32_kernel")
gemm_f64_kernel = _make_gemm(float64, "gemm_f64_kernel")


def gemm_kernel_for(dtype):
    return gemm_f32_kernel if np.dtype(dtype) == np.float32 else gemm_f64_kernel


def launch_gemm(A, B, C, m, n, kd, ta=False, tb=False, bias=None, act=0, slope=0.0):
    """C[:m, :n] <- op(A) op(B) (+ bias, activation) with the tiled kernel (device arrays)."""
    grid = ((n + TILE - 1) // TILE, (m + TILE - 1) // TILE)
    if m == 0 or n == 0:
        return
    epilogue = bias is not None
    gemm_kernel_for(C.dtype)[grid, (TILE, TILE)](
        A, B, C, m, n, kd, bool(ta), bool(tb), bias if epilogue else C[0],
        act, float(slope), epilogue)


# =========================================================================== network engine


@cuda.jit(cache=True)
def bias_act_kernel(z, b, rows, cols, act, slope):
    """z[:rows] <- act(z + b) in place (after a cuBLAS GEMM)."""
    n = rows * cols
    for p in range(cuda.grid(1), n, cuda.gridsize(1)):
        i = p // cols
        j = p - i * cols
        z[i, j] = _activate(z[i, j] + b[j], act, slope)


@cuda.jit(cache=True)
def gather_kernel(X, order, pos0, rows, target, out, kind, level, low, high, threshold,
                  states, status):
    """out[i] <- X[order[pos0 + i]] for i < rows, corrupted as ``kind`` says.

    With corruption the clean rows also go to ``target``. Gaussian noise draws
    one normal per entry; masking and salt-and-pepper one 64-bit word per four
    consecutive entries (16-bit uniforms below ``threshold`` are hits, a hit's
    lowest bit picks ``high`` (salt) or ``low``). Thread t uses states[t]: the
    launch must have RNG_GRID x BLOCK threads when kind != 0.
    """
    if status[0] != 0:
        return
    d = out.shape[1]
    n = rows * d
    t = cuda.grid(1)
    stride = cuda.gridsize(1)
    if kind == CO_NONE:
        for p in range(t, n, stride):
            i = p // d
            j = p - i * d
            out[i, j] = X[order[pos0 + i], j]
    elif kind == CO_GAUSSIAN:
        for p in range(t, n, stride):
            i = p // d
            j = p - i * d
            x = X[order[pos0 + i], j]
            target[i, j] = x
            out[i, j] = x + level * _normal(states, t)
    else:
        n_groups = (n + 3) // 4
        thr = uint64(threshold)
        for g in range(t, n_groups, stride):
            word = _next_u64(states, t)
            for q in range(4):
                p = 4 * g + q
                if p < n:
                    i = p // d
                    j = p - i * d
                    x = X[order[pos0 + i], j]
                    target[i, j] = x
                    u = (word >> uint64(16 * q)) & uint64(0xFFFF)
                    if u < thr:
                        if kind == CO_MASKING:
                            out[i, j] = 0
                        elif u & uint64(1):
                            out[i, j] = high
                        else:
                            out[i, j] = low
                    else:
                        out[i, j] = x


def create_states(seed, n=RNG_STATES):
    """Device array of n xoroshiro128+ states (one per thread of a random launch)."""
    with warnings.catch_warnings():
        # The simulator initialises the states in object mode (harmless warnings).
        warnings.simplefilter("ignore")
        return _create_states(int(n), seed=int(seed) % (2**63))


@cuda.jit(device=True, inline=True)
def _obs_logvar(obs_lv, j, learned, fixed):
    """Log-variance of output feature j (LOSS_GAUSS): learned (clamped) or fixed."""
    if learned:
        return _clip(float64(obs_lv[j]), LOGVAR_MIN, LOGVAR_MAX)
    return fixed


@cuda.jit(cache=True)
def loss_delta_kernel(out, target, delta, rows, cols, loss, act, slope, scale, gb,
                      partials, step, slot0, status, obs_lv, obs_grad, obs_learned,
                      obs_logvar):
    """Loss of a batch, its delta and the last layer's bias gradient, fused.

    MSE: out holds act(z); delta = 2 scale (out - x) act'(out). BCE: out holds
    the logits z; delta = scale (sigmoid(z) - x) and the loss
    max(z, 0) - z x + log1p(exp(-|z|)). Gaussian NLL (LOSS_GAUSS, the VAE's):
    with s_j the output log-variance (``obs_lv[j]`` clamped to [LOGVAR_MIN,
    LOGVAR_MAX] when ``obs_learned``, else ``obs_logvar``), the loss
    0.5 ((out - x)^2 exp(-s_j) + s_j + log 2 pi) and delta = scale (out - x)
    exp(-s_j) act'(out); with ``obs_learned``, obs_grad[j] = sum over rows of
    scale (1 - (out - x)^2 exp(-s_j)) / 2 (0 where the clamp is active).
    Each block adds its loss sum to partials[step, slot0 + blockIdx.x];
    gb[j] = sum over rows of delta[:, j]. A non-finite loss sets status to
    (1, step).
    """
    flag = cuda.shared.array(1, int64)
    cbuf = cuda.shared.array((COL_Y, COL_X), float64)
    gbuf = cuda.shared.array((COL_Y, COL_X), float64)
    tbuf = cuda.shared.array(COL_THREADS, float64)
    if _block_flag(flag, status) != 0:
        return
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    j = cuda.blockIdx.x * COL_X + tx
    csum = 0.0
    lsum = 0.0
    gsum = 0.0
    if j < cols:
        slv = 0.0
        inv = 1.0
        if loss == LOSS_GAUSS:
            slv = _obs_logvar(obs_lv, j, obs_learned, obs_logvar)
            inv = math.exp(-slv)
        for i in range(ty, rows, COL_Y):
            z = float64(out[i, j])
            x = float64(target[i, j])
            if loss == LOSS_BCE:
                e = math.exp(-abs(z))
                lv = (z if z > 0.0 else 0.0) - z * x + math.log1p(e)
                dv = scale * ((1.0 if z >= 0.0 else e) / (1.0 + e) - x)
            elif loss == LOSS_GAUSS:
                diff = z - x
                lv = 0.5 * (diff * diff * inv + slv + LOG_2PI)
                dv = scale * diff * inv * _derivative(z, act, slope)
                gsum += 0.5 * scale * (1.0 - diff * diff * inv)
            else:
                diff = z - x
                lv = diff * diff
                dv = 2.0 * scale * diff * _derivative(z, act, slope)
            delta[i, j] = dv
            csum += float64(delta[i, j])
            lsum += lv
    cbuf[ty, tx] = csum
    gbuf[ty, tx] = gsum
    tid = ty * COL_X + tx
    tbuf[tid] = lsum
    _column_sum(cbuf, tx, ty)
    _column_sum(gbuf, tx, ty)
    if ty == 0 and j < cols:
        gb[j] = cbuf[0, tx]
        if loss == LOSS_GAUSS and obs_learned:
            raw = float64(obs_lv[j])
            obs_grad[j] = gbuf[0, tx] if LOGVAR_MIN <= raw <= LOGVAR_MAX else 0.0
    total = _block_sum(tbuf, tid, COL_THREADS)
    if tid == 0:
        partials[step, slot0 + cuda.blockIdx.x] = total
        if not math.isfinite(total):
            status[1] = step
            status[0] = ST_NONFINITE_LOSS


@cuda.jit(cache=True)
def row_loss_kernel(out, target, rows, cols, loss, res, norm, obs_lv, obs_learned, obs_logvar):
    """res[i] <- loss of row i summed over its columns, divided by ``norm`` (float64).

    One thread per row; the losses of loss_delta_kernel (the Gaussian NLL
    with the same per-feature log-variances).
    """
    for i in range(cuda.grid(1), rows, cuda.gridsize(1)):
        s = 0.0
        for j in range(cols):
            z = float64(out[i, j])
            x = float64(target[i, j])
            if loss == LOSS_BCE:
                s += (z if z > 0.0 else 0.0) - z * x + math.log1p(math.exp(-abs(z)))
            elif loss == LOSS_GAUSS:
                slv = _obs_logvar(obs_lv, j, obs_learned, obs_logvar)
                s += 0.5 * ((z - x) * (z - x) * math.exp(-slv) + slv + LOG_2PI)
            else:
                s += (z - x) * (z - x)
        res[i] = s / norm


@cuda.jit(cache=True)
def code_penalty_kernel(code, rows, width, kind, weight, target, pgrad, partials, step,
                        slot0, status):
    """Value of the L1-activity or KL-sparsity penalty; KL's per-unit gradient.

    L1: weight * sum |h| / rows. KL: rho_j = clip(mean_i h_ij, 1e-7, 1 - 1e-7),
    weight * sum_j KL(target || rho_j), and pgrad[j] = weight * (-t / rho_j +
    (1 - t) / (1 - rho_j)) / rows, which the backward pass adds to the code's
    delta. Block totals go to partials[step, slot0 + blockIdx.x].
    """
    flag = cuda.shared.array(1, int64)
    cbuf = cuda.shared.array((COL_Y, COL_X), float64)
    tbuf = cuda.shared.array(COL_THREADS, float64)
    if _block_flag(flag, status) != 0:
        return
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    j = cuda.blockIdx.x * COL_X + tx
    s = 0.0
    if j < width:
        for i in range(ty, rows, COL_Y):
            v = float64(code[i, j])
            s += abs(v) if kind == SP_L1 else v
    cbuf[ty, tx] = s
    _column_sum(cbuf, tx, ty)
    value = 0.0
    if kind == SP_L1:
        value = cbuf[0, tx] if ty == 0 else 0.0
    elif ty == 0 and j < width:
        rho = _clip(cbuf[0, tx] / rows, 1e-7, 1.0 - 1e-7)
        value = target * math.log(target / rho) + (1.0 - target) * math.log(
            (1.0 - target) / (1.0 - rho))
        pgrad[j] = weight * (-target / rho + (1.0 - target) / (1.0 - rho)) / rows
    tid = ty * COL_X + tx
    tbuf[tid] = value
    total = _block_sum(tbuf, tid, COL_THREADS)
    if tid == 0:
        total = weight * total / rows if kind == SP_L1 else weight * total
        partials[step, slot0 + cuda.blockIdx.x] = total
        if not math.isfinite(total):
            status[1] = step
            status[0] = ST_NONFINITE_LOSS


@cuda.jit(cache=True)
def act_grad_kernel(d, h, rows, cols, act, slope, pen_kind, pen_weight, pgrad, mask,
                    use_mask, extra, use_extra, gb, status):
    """Backward through an activation, fused with the bias gradient below it.

    d <- (d + code-penalty gradient) * act'(h) [* top-k mask] [+ extra], with
    act' written through the output h; gb[j] = sum over rows of the new
    d[:, j]. pen_kind 1 adds weight / rows * sign(h) (L1 activity), 2 adds
    pgrad[j] (KL). ``extra`` (with ``use_extra``) is a delta that is already
    through its own derivative and must survive the mask: AuxK's, on units
    outside the top k (auxk_kernel).
    """
    flag = cuda.shared.array(1, int64)
    cbuf = cuda.shared.array((COL_Y, COL_X), float64)
    if _block_flag(flag, status) != 0:
        return
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    j = cuda.blockIdx.x * COL_X + tx
    csum = 0.0
    if j < cols:
        c = pen_weight / rows
        for i in range(ty, rows, COL_Y):
            a = float64(h[i, j])
            g = float64(d[i, j])
            if pen_kind == SP_L1:
                if a > 0.0:
                    g += c
                elif a < 0.0:
                    g -= c
            elif pen_kind == SP_KL:
                g += pgrad[j]
            g *= _derivative(a, act, slope)
            if use_mask and mask[i, j] == 0:
                g = 0.0
            if use_extra:
                g += float64(extra[i, j])
            d[i, j] = g
            csum += float64(d[i, j])
    cbuf[ty, tx] = csum
    _column_sum(cbuf, tx, ty)
    if ty == 0 and j < cols:
        gb[j] = cbuf[0, tx]


@cuda.jit(cache=True)
def penalty_check_kernel(params, grads, n, wmask, l2, l1, partials, step, slot0, status):
    """Weight penalties (g += l2 w + l1 sign(w) on weights) and the gradient check.

    Block sums of l2 / 2 w^2 + l1 |w| go to partials[step, slot0 + blockIdx.x];
    a non-finite gradient entry sets status to (2, step), which makes the
    optimizer skip the step.
    """
    flag = cuda.shared.array(1, int64)
    buf = cuda.shared.array(BLOCK, float64)
    if _block_flag(flag, status) != 0:
        return
    tid = cuda.threadIdx.x
    s = 0.0
    bad = False
    penalize = l2 != 0.0 or l1 != 0.0
    for p in range(cuda.grid(1), n, cuda.gridsize(1)):
        if penalize and wmask[p]:
            w = float64(params[p])
            s += 0.5 * l2 * w * w + l1 * abs(w)
            g = grads[p] + l2 * w
            if w > 0.0:
                g += l1
            elif w < 0.0:
                g -= l1
            grads[p] = g
        if not math.isfinite(grads[p]):
            bad = True
    buf[tid] = s
    total = _block_sum(buf, tid, BLOCK)
    if tid == 0:
        partials[step, slot0 + cuda.blockIdx.x] = total
    if bad:
        status[1] = step
        status[0] = ST_NONFINITE_GRAD


@cuda.jit(cache=True)
def optimizer_kernel(p, g, s1, s2, n, kind, lr, mu, b1, b2, step_size, inv_sqrt_bc2, eps,
                     status):
    """One fused SGD / momentum / Nesterov / Adam pass over the flat buffer.

    Adam in PyTorch's form: p -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
    with step_size = lr / (1 - b1^t), inv_sqrt_bc2 = 1 / sqrt(1 - b2^t).
    Skipped entirely when status is set.
    """
    if status[0] != 0:
        return
    for j in range(cuda.grid(1), n, cuda.gridsize(1)):
        gj = float64(g[j])
        if kind == OPT_SGD:
            p[j] = p[j] - lr * gj
        elif kind == OPT_MOMENTUM:
            b = mu * s1[j] + gj
            s1[j] = b
            p[j] = p[j] - lr * float64(s1[j])
        elif kind == OPT_NESTEROV:
            b = mu * s1[j] + gj
            s1[j] = b
            p[j] = p[j] - lr * (gj + mu * float64(s1[j]))
        else:
            m = b1 * s1[j] + (1.0 - b1) * gj
            v = b2 * s2[j] + (1.0 - b2) * gj * gj
            s1[j] = m
            s2[j] = v
            p[j] = p[j] - step_size * float64(s1[j]) / (
                math.sqrt(float64(s2[j])) * inv_sqrt_bc2 + eps)


@cuda.jit(cache=True)
def normalize_rows_kernel(W, rows, cols, status):
    """Rescale each row of W to unit norm (rows of norm 0 stay 0); one thread per row."""
    if status[0] != 0:
        return
    for i in range(cuda.grid(1), rows, cuda.gridsize(1)):
        s = 0.0
        for j in range(cols):
            s += float64(W[i, j]) * float64(W[i, j])
        if s > 0.0:
            inv = 1.0 / math.sqrt(s)
            for j in range(cols):
                W[i, j] = W[i, j] * inv


@cuda.jit(device=True)
def _next_best(v, j, prev_v, prev_i, best_v, best_i):
    """(best_v, best_i) updated with candidate (v, j) for the next top-k round.

    Only candidates that come after the previous round's pick in the top-k
    order (smaller value, or equal value and higher index) take part; among
    them a higher value wins, then the lower index. best_i -1: none yet.
    """
    if v < prev_v or (v == prev_v and j > prev_i):
        if best_i < 0 or v > best_v or (v == best_v and j < best_i):
            return v, j
    return best_v, best_i


@cuda.jit(device=True)
def _block_argmax(sv, si, tid, v, i):
    """The block's best (value, index) of each thread's candidate (v, i).

    Index -1 means no candidate; a higher value wins, and among equal values
    the lower index (the top-k order). sv / si are shared arrays of
    ROW_BLOCK entries; every thread of the block must call this.
    """
    sv[tid] = v
    si[tid] = i
    cuda.syncthreads()
    s = ROW_BLOCK // 2
    while s > 0:
        if tid < s:
            ov = sv[tid + s]
            oi = si[tid + s]
            if oi >= 0 and (si[tid] < 0 or ov > sv[tid] or (ov == sv[tid] and oi < si[tid])):
                sv[tid] = ov
                si[tid] = oi
        cuda.syncthreads()
        s //= 2
    return sv[0], si[0]


@cuda.jit(cache=True)
def topk_rows_kernel(X, rows, width, k, values, indices, mask, sparsify, fired, last_fired,
                     count_after, count, dense, keep_dense, status):
    """The k largest entries of each row (descending; ties: lower column first).

    One block per row (grid-stride over rows). values[i, :k] / indices[i, :k]
    receive them. With ``sparsify`` the row keeps only them (others set to 0)
    and mask[i, j] is 1 exactly on the kept columns. With ``count`` a kept
    non-zero entry adds one to fired[j] and sets last_fired[j] = count_after
    (training-time firing statistics). With ``sparsify`` and ``keep_dense``,
    dense[i] receives the row as it was before sparsifying (AuxK reads it).
    """
    flag = cuda.shared.array(1, int64)
    sv = cuda.shared.array(ROW_BLOCK, float64)
    si = cuda.shared.array(ROW_BLOCK, int64)
    if _block_flag(flag, status) != 0:
        return
    tid = cuda.threadIdx.x
    for i in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
        prev_v = math.inf
        prev_i = int64(-1)
        for t in range(k):
            best_v = -math.inf
            best_i = int64(-1)
            for j in range(tid, width, ROW_BLOCK):
                best_v, best_i = _next_best(float64(X[i, j]), j, prev_v, prev_i, best_v, best_i)
            prev_v, prev_i = _block_argmax(sv, si, tid, best_v, best_i)
            if tid == 0:
                values[i, t] = prev_v if prev_i >= 0 else 0.0
                indices[i, t] = prev_i
            cuda.syncthreads()
        if sparsify:
            for j in range(tid, width, ROW_BLOCK):
                mask[i, j] = 0
            cuda.syncthreads()
            for t in range(tid, k, ROW_BLOCK):
                c = indices[i, t]
                if c >= 0:
                    mask[i, c] = 1
                    if count and values[i, t] != 0:
                        cuda.atomic.add(fired, c, 1)
                        last_fired[c] = count_after
            cuda.syncthreads()
            for j in range(tid, width, ROW_BLOCK):
                if keep_dense:
                    dense[i, j] = X[i, j]
                if mask[i, j] == 0:
                    X[i, j] = 0
            cuda.syncthreads()


@cuda.jit(cache=True)
def auxk_kernel(code, target, out, logits, W, rows, width, d, aux_k, aux_weight, dead_after,
                last_fired, samples, code_act, slope, values, indices, code_delta, grad,
                partials, step, slot0, status):
    """AuxK (Gao et al. 2024): dead units reconstruct the residual (the CPU's ``_auxk``).

    One block per row (grid-stride over rows); launch exactly ``AUX_GRID``
    blocks, since each writes one loss slot. A unit j is dead when
    ``samples - last_fired[j] >= dead_after``, with the counters already
    updated by this step's top-k (as the CPU evaluates it). Row i of ``code``
    holds the dense code (after the activation, before the top-k:
    topk_rows_kernel's ``dense``). Its ``aux_k`` largest entries among dead
    units (ties: lower column first; fewer when fewer units are dead) go to
    values[i] / indices[i] (index -1 past the last) and decode through those
    rows of W (the output layer's weights, no bias) to e_hat. The residual
    e = target - x_hat (x_hat = sigmoid(out) with ``logits``, else out) is a
    constant. The row adds aux_weight * sum_c (e - e_hat)^2 / (rows d) to the
    loss (nothing when no unit is dead, as on the CPU), and writes:

    * grad[i, c] = -2 aux_weight / (rows d) (e - e_hat)[c], the gradient with
      respect to e_hat (0 when no unit is dead);
    * code[i]: the selected values, zeros elsewhere, so that code^T grad is
      the output weights' gradient (a GEMM, see add_kernel);
    * code_delta[i, j] = (grad[i] . W[j]) act'(v_j) at the selected units
      (act' written through the dense value v_j, ``code_act`` the code's
      activation), zeros elsewhere: the code delta that act_grad_kernel adds
      after the top-k mask (its ``extra``).

    Selected entries equal to 0 add nothing, as on the CPU. Each block's part
    of the loss (scaled as above) goes to partials[step, slot0 + blockIdx.x]. A non-finite AuxK loss is
    not flagged here: as on the CPU, it shows up in the gradient check.
    """
    flag = cuda.shared.array(1, int64)
    sv = cuda.shared.array(ROW_BLOCK, float64)
    si = cuda.shared.array(ROW_BLOCK, int64)
    lbuf = cuda.shared.array(ROW_BLOCK, float64)
    if _block_flag(flag, status) != 0:
        return
    tid = cuda.threadIdx.x
    scale = 2.0 * aux_weight / (rows * d)
    lsum = 0.0
    for i in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
        # 1. rounds of block-wide arg-max over the dead units (as in topk_rows_kernel);
        # once a round finds none, the later ones have none either
        prev_v = math.inf
        prev_i = int64(-1)
        found = True
        for t in range(aux_k):
            best_v = -math.inf
            best_i = int64(-1)
            if found:
                for j in range(tid, width, ROW_BLOCK):
                    if samples - last_fired[j] >= dead_after:
                        best_v, best_i = _next_best(float64(code[i, j]), j, prev_v, prev_i,
                                                    best_v, best_i)
            prev_v, prev_i = _block_argmax(sv, si, tid, best_v, best_i)
            found = prev_i >= 0
            if tid == 0:
                values[i, t] = prev_v if found else 0.0
                indices[i, t] = prev_i
            cuda.syncthreads()
        # 2. the dense row has been read: it becomes the selected values alone
        for j in range(tid, width, ROW_BLOCK):
            code[i, j] = 0
            code_delta[i, j] = 0
        # 3. e_hat, the squared error and its gradient, threads over features (the
        # dead set is the same for every row: without dead units AuxK is off this step)
        any_dead = indices[i, 0] >= 0
        for c in range(tid, d, ROW_BLOCK):
            if not any_dead:
                grad[i, c] = 0
                continue
            e_hat = 0.0
            for t in range(aux_k):
                j = indices[i, t]
                if j < 0:
                    break
                v = float64(values[i, t])
                if v != 0.0:
                    e_hat += v * float64(W[j, c])
            o = float64(out[i, c])
            x_hat = _sigmoid(o) if logits else o
            diff = (float64(target[i, c]) - x_hat) - e_hat
            lsum += diff * diff
            grad[i, c] = -scale * diff
        cuda.syncthreads()
        # 4. the code delta of each selected unit, threads over units
        for t in range(tid, aux_k, ROW_BLOCK):
            j = indices[i, t]
            v = float64(values[i, t])
            if j >= 0 and v != 0.0:
                acc = 0.0
                for c in range(d):
                    acc += float64(grad[i, c]) * float64(W[j, c])
                code[i, j] = values[i, t]
                code_delta[i, j] = acc * _derivative(v, code_act, slope)
        cuda.syncthreads()
    lbuf[tid] = lsum
    total = _block_sum(lbuf, tid, ROW_BLOCK)
    if tid == 0:
        partials[step, slot0 + cuda.blockIdx.x] = aux_weight * total / (rows * d)


@cuda.jit(cache=True)
def add_kernel(y, x, rows, cols, status):
    """y[:rows, :cols] += x[:rows, :cols] (skipped when status is set).

    Adds a gradient computed on its own (AuxK's output-weight gradient, a
    GEMM into scratch) to the one of the main loss, in a fixed order.
    """
    if status[0] != 0:
        return
    n = rows * cols
    for p in range(cuda.grid(1), n, cuda.gridsize(1)):
        i = p // cols
        j = p - i * cols
        y[i, j] = y[i, j] + x[i, j]


@cuda.jit(cache=True)
def sample_kernel(h, rows, k, z, eps, draw, states, partials, step, slot0, status):
    """Reparameterized Gaussian sampling (engine/bottleneck.py), in training.

    h[i] holds (mu, log sigma^2) in columns [0, k) and [k, 2k); the
    log-variance is clamped to [LOGVAR_MIN, LOGVAR_MAX]; eps ~ N(0, 1) is
    drawn (``draw``; thread t uses states[t]) and stored for the backward
    pass, or read from ``eps`` as given (not ``draw``), and z = mu +
    exp(lv / 2) eps. Block sums of the analytic KL
    -0.5 (1 + lv - mu^2 - sigma^2) go to partials[step, slot0 + blockIdx.x];
    a non-finite KL sets status to (1, step).
    """
    flag = cuda.shared.array(1, int64)
    buf = cuda.shared.array(BLOCK, float64)
    if _block_flag(flag, status) != 0:
        return
    t = cuda.grid(1)
    tid = cuda.threadIdx.x
    n = rows * k
    s = 0.0
    for p in range(t, n, cuda.gridsize(1)):
        i = p // k
        j = p - i * k
        mu = float64(h[i, j])
        lv = _clip(float64(h[i, k + j]), LOGVAR_MIN, LOGVAR_MAX)
        sigma = math.exp(0.5 * lv)
        if draw:
            eps[i, j] = _normal(states, t)
        z[i, j] = mu + sigma * float64(eps[i, j])
        s += -0.5 * (1.0 + lv - mu * mu - sigma * sigma)
    buf[tid] = s
    total = _block_sum(buf, tid, BLOCK)
    if tid == 0:
        partials[step, slot0 + cuda.blockIdx.x] = total
        if not math.isfinite(total):
            status[1] = step
            status[0] = ST_NONFINITE_LOSS


@cuda.jit(cache=True)
def sample_rows_kernel(h, rows, k, z, eps, mode, states, kl_rows):
    """The sampling bottleneck at inference, one thread per row, with each row's KL.

    mode Z_MEAN: z = mu (the posterior mean; eps untouched); Z_DRAW: eps ~
    N(0, 1) drawn (thread t uses states[t], so the launch must be RNG_GRID x
    BLOCK) and z = mu + sigma eps; Z_GIVEN: the same from the eps given.
    kl_rows[i] <- KL(q(z | x_i) || N(0, I)) (float64), the log-variances
    clamped as in training.
    """
    t = cuda.grid(1)
    for i in range(t, rows, cuda.gridsize(1)):
        kl = 0.0
        for j in range(k):
            mu = float64(h[i, j])
            lv = _clip(float64(h[i, k + j]), LOGVAR_MIN, LOGVAR_MAX)
            var = math.exp(lv)
            kl += mu * mu + var - 1.0 - lv
            if mode == Z_MEAN:
                z[i, j] = mu
            else:
                if mode == Z_DRAW:
                    eps[i, j] = _normal(states, t)
                z[i, j] = mu + math.sqrt(var) * float64(eps[i, j])
        kl_rows[i] = 0.5 * kl


@cuda.jit(cache=True)
def sample_backward_kernel(h, eps, dz, rows, k, kl_weight, dh, status):
    """Backward of the sampling bottleneck (engine/bottleneck.py)::

        dmu     = dz + w mu
        dlogvar = (dz eps sigma / 2 + w (sigma^2 - 1) / 2) * [lv not clamped]
    """
    if status[0] != 0:
        return
    n = rows * k
    for p in range(cuda.grid(1), n, cuda.gridsize(1)):
        i = p // k
        j = p - i * k
        mu = float64(h[i, j])
        raw = float64(h[i, k + j])
        lv = _clip(raw, LOGVAR_MIN, LOGVAR_MAX)
        sigma = math.exp(0.5 * lv)
        g = float64(dz[i, j])
        dh[i, j] = g + kl_weight * mu
        if LOGVAR_MIN <= raw <= LOGVAR_MAX:
            dh[i, k + j] = 0.5 * g * float64(eps[i, j]) * sigma + 0.5 * kl_weight * (
                sigma * sigma - 1.0)
        else:
            dh[i, k + j] = 0.0


@cuda.jit(cache=True)
def train_small_kernel(X, order, n_total, batch, n_steps, sizes, acts, w_off, b_off, loss, slope,
                       params, grads, s1, s2, wmask, opt_kind, lr, mu, b1, b2, eps, adam, l2,
                       l1, sparsity, sp_weight, sp_target, pgrad, cb, corruption, level, low,
                       high, threshold, states, ws, dl, target, partials, status):
    """Whole training steps of a small network in one block: one launch per call.

    Small networks are launch-bound (a step of the generic path is about 20
    launches of microsecond kernels), so for them the backend runs all the
    steps of a call in this single-block kernel, with the phases of a step
    (gather and corruption, forward, loss, code penalty, backward, weight
    penalty and gradient check, optimizer) separated by barriers. Semantics
    are the generic path's (and the CPU's): ws is the CPU engine's activation
    workspace (block l at batch * sum(sizes[:l]), rows of sizes[l]); dl holds
    two delta blocks; ``target`` is ws itself without corruption. adam[s] =
    (lr / (1 - b1^t), 1 / sqrt(1 - b2^t)) of step s. partials[s] = (loss sum,
    code penalty, weight penalty). TopK is not handled here.
    """
    buf = cuda.shared.array(FUSED_BLOCK, float64)
    flag = cuda.shared.array(2, int64)
    tid = cuda.threadIdx.x
    T = FUSED_BLOCK
    L = acts.shape[0]
    d = sizes[0]
    n_par = params.shape[0]
    if tid == 0:
        flag[0] = status[0]
    cuda.syncthreads()
    if flag[0] != 0:
        return
    for s in range(n_steps):
        pos = s * batch
        rows = n_total - pos if n_total - pos < batch else batch
        # 1. gather (+ corruption): thread tid uses states[tid]
        n_in0 = rows * d
        if corruption == CO_NONE:
            for p in range(tid, n_in0, T):
                i = p // d
                ws[p] = X[order[pos + i], p - i * d]
        elif corruption == CO_GAUSSIAN:
            for p in range(tid, n_in0, T):
                i = p // d
                x = X[order[pos + i], p - i * d]
                target[p] = x
                ws[p] = x + level * _normal(states, tid)
        else:
            thr = uint64(threshold)
            for g in range(tid, (n_in0 + 3) // 4, T):
                word = _next_u64(states, tid)
                for q in range(4):
                    p = 4 * g + q
                    if p < n_in0:
                        i = p // d
                        x = X[order[pos + i], p - i * d]
                        target[p] = x
                        u = (word >> uint64(16 * q)) & uint64(0xFFFF)
                        if u < thr:
                            if corruption == CO_MASKING:
                                ws[p] = 0
                            elif u & uint64(1):
                                ws[p] = high
                            else:
                                ws[p] = low
                        else:
                            ws[p] = x
        cuda.syncthreads()
        # 2. forward (logits kept for cross-entropy)
        off_in = 0
        for l in range(L):
            n_in = sizes[l]
            n_out = sizes[l + 1]
            off_out = off_in + batch * n_in
            w0 = w_off[l]
            b0 = b_off[l]
            act = acts[l]
            if loss == LOSS_BCE and l == L - 1:
                act = ACT_IDENTITY
            for p in range(tid, rows * n_out, T):
                i = p // n_out
                j = p - i * n_out
                acc = float64(params[b0 + j])
                for q in range(n_in):
                    acc += float64(ws[off_in + i * n_in + q]) * float64(params[w0 + q * n_out + j])
                ws[off_out + p] = _activate(acc, act, slope)
            cuda.syncthreads()
            off_in = off_out
        # 3. loss and output delta (into dl[0]); code penalty value
        scale = 1.0 / (rows * d)
        lsum = 0.0
        for p in range(tid, rows * d, T):
            z = float64(ws[off_in + p])
            x = float64(target[p])
            if loss == LOSS_BCE:
                e = math.exp(-abs(z))
                lsum += (z if z > 0.0 else 0.0) - z * x + math.log1p(e)
                dl[0, p] = scale * ((1.0 if z >= 0.0 else e) / (1.0 + e) - x)
            else:
                diff = z - x
                lsum += diff * diff
                dl[0, p] = 2.0 * scale * diff * _derivative(z, acts[L - 1], slope)
        psum = 0.0
        if sparsity == SP_L1 or sparsity == SP_KL:
            c0 = 0
            for q in range(cb):
                c0 += batch * sizes[q]
            width = sizes[cb]
            if sparsity == SP_L1:
                for p in range(tid, rows * width, T):
                    psum += abs(float64(ws[c0 + p]))
                psum = sp_weight * psum / rows
            else:
                for j in range(tid, width, T):
                    col = 0.0
                    for i in range(rows):
                        col += float64(ws[c0 + i * width + j])
                    rho = _clip(col / rows, 1e-7, 1.0 - 1e-7)
                    psum += sp_weight * (sp_target * math.log(sp_target / rho) + (
                        1.0 - sp_target) * math.log((1.0 - sp_target) / (1.0 - rho)))
                    pgrad[j] = sp_weight * (-sp_target / rho + (1.0 - sp_target) / (
                        1.0 - rho)) / rows
        buf[tid] = lsum
        total_loss = _block_sum(buf, tid, T)
        buf[tid] = psum
        total_pen = _block_sum(buf, tid, T)
        if not (math.isfinite(total_loss) and math.isfinite(total_pen)):
            if tid == 0:
                status[1] = s
                status[0] = ST_NONFINITE_LOSS
            break
        # 4. backward: the delta of layer l's output is dl[(L - 1 - l) % 2]
        for l in range(L - 1, -1, -1):
            n_in = sizes[l]
            n_out = sizes[l + 1]
            h0 = 0
            for q in range(l):
                h0 += batch * sizes[q]
            w0 = w_off[l]
            b0 = b_off[l]
            cur = (L - 1 - l) % 2
            nxt = 1 - cur
            for p in range(tid, n_in * n_out, T):
                q = p // n_out
                j = p - q * n_out
                acc = 0.0
                for i in range(rows):
                    acc += float64(ws[h0 + i * n_in + q]) * float64(dl[cur, i * n_out + j])
                grads[w0 + p] = acc
            for j in range(tid, n_out, T):
                acc = 0.0
                for i in range(rows):
                    acc += float64(dl[cur, i * n_out + j])
                grads[b0 + j] = acc
            if l > 0:
                act = acts[l - 1]
                pen = sparsity if (l == cb and (sparsity == SP_L1 or sparsity == SP_KL)) else 0
                c = sp_weight / rows
                for p in range(tid, rows * n_in, T):
                    i = p // n_in
                    q = p - i * n_in
                    acc = 0.0
                    for j in range(n_out):
                        acc += float64(dl[cur, i * n_out + j]) * float64(
                            params[w0 + q * n_out + j])
                    a = float64(ws[h0 + p])
                    if pen == SP_L1:
                        if a > 0.0:
                            acc += c
                        elif a < 0.0:
                            acc -= c
                    elif pen == SP_KL:
                        acc += pgrad[q]
                    dl[nxt, p] = acc * _derivative(a, act, slope)
            cuda.syncthreads()
        # 5. weight penalties and the gradient check
        if tid == 0:
            flag[1] = 0
        cuda.syncthreads()
        wsum = 0.0
        penalize = l2 != 0.0 or l1 != 0.0
        for p in range(tid, n_par, T):
            if penalize and wmask[p]:
                w = float64(params[p])
                wsum += 0.5 * l2 * w * w + l1 * abs(w)
                g = grads[p] + l2 * w
                if w > 0.0:
                    g += l1
                elif w < 0.0:
                    g -= l1
                grads[p] = g
            if not math.isfinite(grads[p]):
                flag[1] = 1
        buf[tid] = wsum
        total_w = _block_sum(buf, tid, T)
        if flag[1] != 0:
            if tid == 0:
                status[1] = s
                status[0] = ST_NONFINITE_GRAD
            break
        if tid == 0:
            partials[s, 0] = total_loss
            partials[s, 1] = total_pen
            partials[s, 2] = total_w
        # 6. the update
        step_size = adam[s, 0]
        inv_sqrt_bc2 = adam[s, 1]
        for j in range(tid, n_par, T):
            gj = float64(grads[j])
            if opt_kind == OPT_SGD:
                params[j] = params[j] - lr * gj
            elif opt_kind == OPT_MOMENTUM:
                s1[j] = mu * s1[j] + gj
                params[j] = params[j] - lr * float64(s1[j])
            elif opt_kind == OPT_NESTEROV:
                s1[j] = mu * s1[j] + gj
                params[j] = params[j] - lr * (gj + mu * float64(s1[j]))
            else:
                s1[j] = b1 * s1[j] + (1.0 - b1) * gj
                s2[j] = b2 * s2[j] + (1.0 - b2) * gj * gj
                params[j] = params[j] - step_size * float64(s1[j]) / (
                    math.sqrt(float64(s2[j])) * inv_sqrt_bc2 + eps)
        cuda.syncthreads()


# =========================================================================== streaming PCA


@cuda.jit(cache=True)
def colsum_kernel(X, rows, cols, shift, weights, out):
    """out[j] <- sum_i weights[i] (X[i, j] - shift[j]) in float64 (column layout)."""
    cbuf = cuda.shared.array((COL_Y, COL_X), float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    j = cuda.blockIdx.x * COL_X + tx
    s = 0.0
    if j < cols:
        sh = shift[j]
        for i in range(ty, rows, COL_Y):
            s += weights[i] * (float64(X[i, j]) - sh)
    cbuf[ty, tx] = s
    _column_sum(cbuf, tx, ty)
    if ty == 0 and j < cols:
        out[j] = cbuf[0, tx]


@cuda.jit(cache=True)
def rowsq_kernel(X, rows, cols, shift, out):
    """out[i] <- ||X[i] - shift||^2 in float64, one thread per row."""
    for i in range(cuda.grid(1), rows, cuda.gridsize(1)):
        s = 0.0
        for j in range(cols):
            v = float64(X[i, j]) - shift[j]
            s += v * v
        out[i] = s


@cuda.jit(cache=True)
def hebbian_rule_kernel(W, X, mean, etas, n, rule, y, log_norm, log_norms_out):
    """Per-sample Hebbian rules over the rows of a chunk, in one block.

    ``rule`` 0 (GHA; with k = 1 it is Oja's single-neuron rule): for each
    sample, with y = W x_c and the residual r_0 = x_c, r_{j+1} = r_j - y_j w_j
    (old w_j), w_j += eta y_j r_{j+1} (cpu.gha_chunk). 1 (subspace):
    r = x_c - W^T y, then W += eta y r^T (cpu.subspace_chunk). 2 (Hebb, k = 1):
    w += eta y x_c, then w is renormalised and log_norm[0] accumulates the log
    of the norm (log_norms_out[i] after each sample; cpu.hebb_chunk).

    Each thread owns the columns l = tid, tid + OJA_BLOCK, ... of W, so only
    y = W x_c needs the block (shared-memory reduction, OJA_KMAX neurons at a
    time); y lives in the float64 scratch ``y`` (k + 1 entries).
    """
    red = cuda.shared.array((OJA_KMAX, OJA_BLOCK), float64)
    tid = cuda.threadIdx.x
    k = W.shape[0]
    d = W.shape[1]
    for i in range(n):
        for j0 in range(0, k, OJA_KMAX):
            jn = k - j0 if k - j0 < OJA_KMAX else OJA_KMAX
            for q in range(jn):
                red[q, tid] = 0.0
            for l in range(tid, d, OJA_BLOCK):
                xc = float64(X[i, l]) - float64(mean[l])
                for q in range(jn):
                    red[q, tid] += float64(W[j0 + q, l]) * xc
            cuda.syncthreads()
            s = OJA_BLOCK // 2
            while s > 0:
                if tid < s:
                    for q in range(jn):
                        red[q, tid] += red[q, tid + s]
                cuda.syncthreads()
                s //= 2
            if tid == 0:
                for q in range(jn):
                    y[j0 + q] = red[q, 0]
            cuda.syncthreads()
        eta = float64(etas[i])
        if rule == RULE_HEBB:
            red[0, tid] = 0.0
        for l in range(tid, d, OJA_BLOCK):
            xc = float64(X[i, l]) - float64(mean[l])
            if rule == RULE_GHA:
                r = xc
                for j in range(k):
                    w = float64(W[j, l])
                    yj = y[j]
                    r -= yj * w
                    W[j, l] = w + eta * yj * r
            elif rule == RULE_SUBSPACE:
                r = xc
                for j in range(k):
                    r -= y[j] * float64(W[j, l])
                for j in range(k):
                    W[j, l] = float64(W[j, l]) + eta * y[j] * r
            else:
                W[0, l] = float64(W[0, l]) + eta * y[0] * xc
                red[0, tid] += float64(W[0, l]) * float64(W[0, l])
        cuda.syncthreads()
        if rule == RULE_HEBB:
            s = OJA_BLOCK // 2
            while s > 0:
                if tid < s:
                    red[0, tid] += red[0, tid + s]
                cuda.syncthreads()
                s //= 2
            nrm = math.sqrt(red[0, 0])
            for l in range(tid, d, OJA_BLOCK):
                W[0, l] = float64(W[0, l]) / nrm
            if tid == 0:
                log_norm[0] += math.log(nrm)
                log_norms_out[i] = log_norm[0]
            cuda.syncthreads()


@cuda.jit(cache=True)
def orthonormalize_rows_kernel(out):
    """Modified Gram-Schmidt, twice, on the rows of ``out`` (float64) in place, one block.

    As cpu.orthonormalize_rows: row j becomes the normalised component of row
    j orthogonal to rows 0..j-1; a dependent row becomes NaN.
    """
    buf = cuda.shared.array(BLOCK, float64)
    tid = cuda.threadIdx.x
    k = out.shape[0]
    d = out.shape[1]
    for j in range(k):
        for _ in range(2):
            for i in range(j):
                s = 0.0
                for l in range(tid, d, BLOCK):
                    s += out[i, l] * out[j, l]
                buf[tid] = s
                s = _block_sum(buf, tid, BLOCK)
                for l in range(tid, d, BLOCK):
                    out[j, l] -= s * out[i, l]
                cuda.syncthreads()
            s = 0.0
            for l in range(tid, d, BLOCK):
                s += out[j, l] * out[j, l]
            buf[tid] = s
            s = _block_sum(buf, tid, BLOCK)
            nrm = math.sqrt(s)
            inv = 1.0 / nrm if nrm > 0.0 else math.nan
            for l in range(tid, d, BLOCK):
                out[j, l] *= inv
            cuda.syncthreads()


@cuda.jit(cache=True)
def block_oja_scale_kernel(Z, rows, k, mp, etas, E, esum):
    """E[i, j] <- (Z[i, j] - mp[j]) * etas[i]; esum[j] = sum_i E[i, j] (column layout).

    Z = X B^T of the uncentred chunk and mp = B mean: E is the centred
    projection scaled by each sample's learning rate (block Oja).
    """
    cbuf = cuda.shared.array((COL_Y, COL_X), float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    j = cuda.blockIdx.x * COL_X + tx
    s = 0.0
    if j < k:
        for i in range(ty, rows, COL_Y):
            E[i, j] = (float64(Z[i, j]) - mp[j]) * float64(etas[i])
            s += float64(E[i, j])
    cbuf[ty, tx] = s
    _column_sum(cbuf, tx, ty)
    if ty == 0 and j < k:
        esum[j] = cbuf[0, tx]


@cuda.jit(cache=True)
def block_oja_finish_kernel(G, d, k, mean, esum, W):
    """G[l, j] <- G[l, j] - mean[l] esum[j] + W[j, l]: G = W^T + X_c^T E without X_c."""
    n = d * k
    for p in range(cuda.grid(1), n, cuda.gridsize(1)):
        l = p // k
        j = p - l * k
        G[l, j] = float64(G[l, j]) - float64(mean[l]) * esum[j] + float64(W[j, l])


# =========================================================================== host wrappers


def _is_device(a):
    """True for numba device arrays (real or simulated)."""
    return hasattr(a, "copy_to_host")


def _to_device(a):
    if _is_device(a):
        return a
    if not SIMULATOR and hasattr(a, "__cuda_array_interface__"):  # CuPy, torch, ...
        return cuda.as_cuda_array(a)
    return cuda.to_device(np.ascontiguousarray(a))


def to_device(a):
    """a on the device (device arrays are returned as they are)."""
    return _to_device(a)


def _copy_back(dev, host):
    """Copy a device result into a host array in place (no-op for device arrays)."""
    if not _is_device(host):
        host[...] = dev.copy_to_host().reshape(host.shape)


_CUPY = []


def cupy_module():
    """CuPy when it imports and sees a device (cuBLAS GEMMs), else None."""
    if not _CUPY:
        mod = None
        if not SIMULATOR:
            try:
                import cupy

                cupy.cuda.runtime.getDeviceCount()
                mod = cupy
            except Exception:  # not installed, or no usable device / CUDA runtime
                mod = None
        _CUPY.append(mod)
    return _CUPY[0]


def matmul(A, B, C=None, ta=False, tb=False, use_cupy=None):
    """C <- op(A) op(B) on the device (cuBLAS through CuPy, else the tiled kernel).

    A, B are 2-D arrays (host or device; host inputs are uploaded); returns
    the device array C (allocated when None).
    """
    A = _to_device(A)
    B = _to_device(B)
    m = A.shape[1] if ta else A.shape[0]
    kd = A.shape[0] if ta else A.shape[1]
    n = B.shape[0] if tb else B.shape[1]
    if (B.shape[1] if tb else B.shape[0]) != kd:
        raise ValueError("matmul: inner dimensions differ")
    if C is None:
        C = cuda.device_array((m, n), dtype=A.dtype)
    cp = cupy_module() if use_cupy is None or use_cupy else None
    if cp is not None:
        a, b = cp.asarray(A), cp.asarray(B)
        cp.matmul(a.T if ta else a, b.T if tb else b, out=cp.asarray(C))
    else:
        launch_gemm(A, B, C, m, n, kd, ta, tb)
    return C


def _hebbian(W, X, mean, etas, rule, log_norm=0.0, log_norms_out=None):
    dW = _to_device(W)
    dX = _to_device(X)
    n = X.shape[0]
    if n == 0:
        return log_norm
    y = cuda.device_array(dW.shape[0] + 1, dtype=np.float64)
    ln = cuda.to_device(np.array([log_norm], dtype=np.float64))
    lno = cuda.device_array(max(n, 1), dtype=np.float64)
    hebbian_rule_kernel[1, OJA_BLOCK](dW, dX, _to_device(mean), _to_device(etas), n, rule, y,
                                      ln, lno)
    _copy_back(dW, W)
    if log_norms_out is not None:
        if _is_device(log_norms_out):
            log_norms_out[:n].copy_to_device(lno[:n])
        else:
            log_norms_out[:n] = lno.copy_to_host()[:n]
    return float(ln.copy_to_host()[0])


def hebb_chunk(w, X, mean, etas, log_norm, log_norms_out):
    """Twin of cpu.hebb_chunk: plain Hebb on a unit direction plus its log-norm."""
    w2 = w.reshape(1, -1) if not _is_device(w) else w.reshape(1, w.shape[0])
    out = _hebbian(w2, X, mean, etas, RULE_HEBB, log_norm, log_norms_out)
    if not _is_device(w):
        w[...] = w2.reshape(w.shape)
    return out


def oja_chunk(w, X, mean, etas):
    """Twin of cpu.oja_chunk: single-neuron Oja rule over a chunk (w updated in place)."""
    w2 = w.reshape(1, -1) if not _is_device(w) else w.reshape(1, w.shape[0])
    _hebbian(w2, X, mean, etas, RULE_GHA)
    if not _is_device(w):
        w[...] = w2.reshape(w.shape)


def gha_chunk(W, X, mean, etas):
    """Twin of cpu.gha_chunk: Sanger's rule, one sample at a time (W in place)."""
    _hebbian(W, X, mean, etas, RULE_GHA)


def subspace_chunk(W, X, mean, etas):
    """Twin of cpu.subspace_chunk: Oja's subspace rule, one sample at a time (W in place)."""
    _hebbian(W, X, mean, etas, RULE_SUBSPACE)


def chunk_moments(X, shift, weights, colsum_out):
    """Twin of cpu.chunk_moments: weighted column sums, sum and max of squared row norms.

    Returns (sq, max_sq) as Python floats; colsum_out is filled (host or device).
    """
    dX = _to_device(X)
    n, d = X.shape
    if not _is_device(shift):
        shift = np.asarray(shift, dtype=np.float64)
    if not _is_device(weights):
        weights = np.asarray(weights, dtype=np.float64)
    dshift = _to_device(shift)
    dcol = cuda.to_device(np.zeros(max(d, 1), dtype=np.float64))
    rowsq = cuda.device_array(max(n, 1), dtype=np.float64)
    if d and n:
        colsum_kernel[_cols_grid(d), (COL_X, COL_Y)](dX, n, d, dshift, _to_device(weights), dcol)
    if n:
        rowsq_kernel[_grid(n), BLOCK](dX, n, d, dshift, rowsq)
    if _is_device(colsum_out):
        colsum_out.copy_to_device(dcol[:d])
    else:
        colsum_out[...] = dcol.copy_to_host()[:d]
    if n == 0:
        return 0.0, 0.0
    s = rowsq.copy_to_host()[:n]
    w = weights.copy_to_host() if _is_device(weights) else weights
    return float(w @ s), float(s.max())


def orthonormalize_rows(W, out):
    """Twin of cpu.orthonormalize_rows (out float64, host or device)."""
    dout = cuda.to_device(np.ascontiguousarray(
        W.copy_to_host() if _is_device(W) else W, dtype=np.float64))
    if dout.shape[0]:
        orthonormalize_rows_kernel[1, BLOCK](dout)
    if _is_device(out):
        out.copy_to_device(dout)
    else:
        out[...] = dout.copy_to_host()


def block_oja_chunk(W, X, mean, etas, center=True, use_cupy=None):
    """The GPU part of one block-Oja update (models/oja.py, ``method="block"``).

    With Z = X W^T (uncentred chunk) and E = (Z - W mean) diag(etas), returns
    host arrays ``Z`` (n, k) and ``G = W^T + X^T E - mean esum^T`` (d, k),
    the un-orthonormalised update ``W^T + X_c^T diag(eta) X_c W^T``. X may
    already be on the device (uploaded once per chunk).
    """
    dX = _to_device(X)
    n, d = X.shape
    Wh = W.copy_to_host() if _is_device(W) else np.ascontiguousarray(W)
    k = Wh.shape[0]
    dW = _to_device(Wh)
    dZ = matmul(dX, dW, tb=True, use_cupy=use_cupy)                       # (n, k)
    mean64 = np.asarray(mean, dtype=np.float64)
    mp = (Wh.astype(np.float64) @ mean64) if center else np.zeros(k)
    dE = cuda.device_array((n, k), dtype=Wh.dtype)
    esum = cuda.device_array(k, dtype=np.float64)
    block_oja_scale_kernel[_cols_grid(k), (COL_X, COL_Y)](dZ, n, k, cuda.to_device(mp),
                                                          _to_device(etas), dE, esum)
    dG = matmul(dX, dE, ta=True, use_cupy=use_cupy)                       # (d, k)
    m = mean64 if center else np.zeros(d)
    block_oja_finish_kernel[_grid(d * k), BLOCK](dG, d, k, cuda.to_device(m), esum, dW)
    return dZ.copy_to_host(), dG.copy_to_host()


def corrupt(clean, out, reg):
    """Twin of _network.corrupt: out <- clean corrupted as ``reg`` says.

    ``reg`` is an :class:`aefast.engine.cuda_backend.CUDARegularization` (its
    device random states are advanced). clean and out are 1-D.
    """
    if reg is None or reg.corruption == CO_NONE:
        raise ValueError("reg has no corruption")
    if out.shape[0] != clean.shape[0]:
        raise ValueError("clean and out must have the same length")
    n = clean.shape[0]
    if n == 0:
        return
    dclean = _to_device(clean).reshape(n, 1) if _is_device(clean) else cuda.to_device(
        np.ascontiguousarray(clean).reshape(n, 1))
    dout = cuda.device_array((n, 1), dtype=dclean.dtype)
    dtarget = cuda.device_array((n, 1), dtype=dclean.dtype)
    order = cuda.to_device(np.arange(n, dtype=np.int64))
    status = cuda.to_device(np.zeros(2, dtype=np.int64))
    gather_kernel[RNG_GRID, BLOCK](dclean, order, 0, n, dtarget, dout, reg.corruption,
                                   reg.level, reg.low, reg.high, reg.threshold,
                                   reg.states(), status)
    if _is_device(out):
        out.copy_to_device(dout.reshape(n))
    else:
        out[...] = dout.copy_to_host().reshape(n)


def topk(X, k):
    """Twin of aefast.ops.topk: (values, indices) of the k largest per row, host arrays."""
    dX = _to_device(X)
    rows, width = X.shape
    if not 1 <= k <= width:
        raise ValueError(f"k must be in [1, {width}], got {k}")
    values = cuda.device_array((rows, k), dtype=dX.dtype)
    indices = cuda.device_array((rows, k), dtype=np.int64)
    dummy8 = cuda.device_array((1, 1), dtype=np.uint8)
    dummy = cuda.device_array(1, dtype=np.int64)
    no_dense = cuda.device_array((1, 1), dtype=dX.dtype)
    status = cuda.to_device(np.zeros(2, dtype=np.int64))
    if rows:
        topk_rows_kernel[min(rows, MAX_GRID), ROW_BLOCK](
            dX, rows, width, k, values, indices, dummy8, False, dummy, dummy, 0, False,
            no_dense, False, status)
    return values.copy_to_host(), indices.copy_to_host()
