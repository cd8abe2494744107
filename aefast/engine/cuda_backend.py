"""The CUDA backend of the network engine: the CPU backend's interface on a GPU.

Design
------
``CUDABackend`` has the methods of ``backends.CPUBackend`` (``train_batches``,
``forward``, ``row_losses``, ``steps_per_call``, ``.network``,
``.regularization``), so ``engine/training.py`` drives it unchanged. It strings
together the kernels of :mod:`aefast._kernels.cuda`:

* Data. The training matrix is uploaded once per backend (one per fit) and
  kept while the same array comes back; the shuffled order of a call
  (``order[start:stop]``) is uploaded once per call and the batches are
  gathered on the device. A matrix larger than ``max_data_bytes`` (default:
  half of the free device memory) is streamed instead: each call gathers its
  rows on the host, in chunks of whole batches, and uploads them.
* Parameters live on the device for the duration of a call: the flat
  parameter buffer and the optimizer's state twins are uploaded at the start
  of ``train_batches`` and copied back into ``network.params`` /
  ``state.state1`` / ``state.state2`` at its end, so ``save``, ``transform``,
  ``get_params`` and pickling keep working on host arrays, and anything that
  edits the host parameters between calls (early stopping's best-parameter
  restore, ``set_weights``) is seen by the next call.
* A step is a fixed sequence of launches with no host round trip: gather
  (+ corruption), per layer GEMM + bias + activation (top-k on the code),
  loss + delta + last bias gradient, code penalty, per layer the weight
  gradient GEMM, the input gradient GEMM and the activation derivative fused
  with the next bias gradient, the weight penalty fused with the gradient
  finiteness check, and the optimizer (one launch, Adam included). Loss
  values go to per-step partial sums on the device, read back once per call;
  a non-finite loss or gradient sets a device status flag that turns the rest
  of the call into no-ops, so the failing step is never applied (as on the
  CPU).
* GEMMs go to cuBLAS through CuPy when ``import cupy`` works (zero-copy views
  of numba's device arrays), otherwise to the tiled shared-memory kernel,
  which fuses bias and activation into its epilogue. ``gemm="numba"`` forces
  the kernel.
* TopK decodes densely on the GPU: the code block keeps its k largest units
  per row (zeros elsewhere) and the next GEMM reads the whole block, instead
  of the CPU's sparse decode through k rows of the weights; the backward pass
  masks the code's delta to the selected units, so the gradients are the
  CPU's.
* AuxK (``TopK(aux_k=...)``, a single decoder layer): in training the top-k
  kernel also saves the dense code (after the activation, before the top-k)
  to ``ws.aux_code``. After the loss, ``auxk_kernel`` (one block per row)
  picks each row's ``aux_k`` largest dense values among dead units (samples
  since last fired >= ``dead_after``, counted after this step's firings, as
  on the CPU), decodes them through the output weights into an estimate of
  the residual, adds its loss to the step's partials (hence to the reported
  loss) and leaves the gradient of that estimate (``ws.aux_grad``), the code
  delta of the picked units (``ws.aux_delta``, through the code activation's
  derivative at the dense value) and the picked values alone
  (``ws.aux_code``). Backward, ``aux_code^T aux_grad`` (a GEMM into scratch,
  then ``add_kernel``) joins the output weights' gradient, and
  ``act_grad_kernel`` adds ``aux_delta`` to the code's delta after the top-k
  mask, so the encoder's bias and weight gradients include it.
* Small networks (``batch_size * n_params <= FUSED_MAX_WORK``, no TopK, hence
  no AuxK, data on the device) are launch-bound: a call then runs in one
  launch of ``train_small_kernel``, a single-block trainer whose phases are
  separated by barriers, with the same semantics (``fused=`` forces either
  path).
* Corruption uses numba.cuda.random (xoroshiro128+) states seeded from the
  model's noise generator: reproducible, but a different noise stream from
  the CPU's, so denoising fits agree with the CPU in distribution, not value.
* The VAE (a ``CUDARegularization`` with ``gaussian=True``): after the
  linear stats layer ``[mu | log var]``, ``sample_kernel`` draws eps from the
  same device states as the corruption, writes z and eps to their own
  buffers and sums the KL into the step's partials; the decoder's first GEMM
  reads z. Backward, the delta of z goes through ``sample_backward_kernel``
  (KL weight / rows) to the stats block, whose bias gradient comes from the
  identity activation pass. The loss is the CPU's negative ELBO: sums over
  features, ``(nll + kl_weight * kl) / rows``; the Gaussian likelihood's
  learned log-variances get their gradient from the loss kernel (column sums,
  like the bias) in the flat gradient buffer at ``obs_off``. Inference
  (``forward``, ``vae_rows``, ``decode_losses``) uses ``sample_rows_kernel``
  (posterior mean or a draw, and each row's KL). VAEs always take the generic
  path, not the fused trainer. The noise differs from the CPU's; the
  regularization's ``eps_rng`` hook draws it on the host instead, which lets
  tests compare a CUDA fit with the CPU's value for value.
"""
import functools
import logging
import math
import warnings

import numpy as np

from .losses import LOSS_CODES
from .regularizers import SPARSITY_CODES, regularization_kwargs

_LOG = logging.getLogger("aefast")

# Steps per train_batches call: the whole call runs without a host round trip.
STEPS_PER_CALL = 2048
INFERENCE_BLOCK_ROWS = 16384
# fused="auto" runs a call in the single-block trainer when batch_size * n_params is at
# most this (launch-bound networks; one SM does their whole step faster than ~20 launches).
FUSED_MAX_WORK = 1 << 18


# =========================================================================== availability


def cuda_available():
    """(available, reason): is a CUDA device usable through numba.cuda?

    The Numba CUDA simulator counts as available only when
    ``NUMBA_ENABLE_CUDASIM=1`` is set (it then replaces the real target).
    """
    try:
        from numba import config

        if config.ENABLE_CUDASIM:
            return True, "Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
        from numba import cuda

        if cuda.is_available():
            return True, "CUDA device"
        return False, "numba.cuda.is_available() is False (no NVIDIA driver or GPU found)"
    except Exception as exc:  # broken CUDA installation
        return False, f"numba.cuda failed to load: {exc}"


def resolve_device(device):
    """'cuda' or 'cpu' for a validated device name ('cpu', 'cuda' or 'auto')."""
    if device == "cpu":
        return "cpu"
    available, reason = cuda_available()
    if device == "cuda":
        if not available:
            raise ValueError(
                f"device='cuda' needs a usable CUDA GPU, but {reason}. Install the GPU "
                "extra (pip install 'aefast[gpu]') on a machine with an NVIDIA GPU, or use "
                "device='cpu' or device='auto'.")
        return "cuda"
    if available:
        _LOG.info("device='auto': using %s", reason)
        return "cuda"
    _LOG.info("device='auto': no usable CUDA GPU (%s); using the CPU", reason)
    return "cpu"


# =========================================================================== regularization


class CUDARegularization:
    """Code-layer sparsity, input corruption and the VAE bottleneck for the CUDA backend.

    The GPU twin of ``aefast._ext._network.Regularization`` (same parameters;
    a random ``seed`` replaces the bit generator) with the same Python
    interface: ``encode_k``, ``fired``, ``since_fired``, ``reset_fired`` and
    the settable ``kl_weight``. The firing counters live on the device and are
    copied back at the end of every ``train_batches`` call; AuxK's dead units
    are read from them on the device (``since_fired = samples - last fired``).

    A VAE (``gaussian=True``) draws its eps with numba.cuda.random from the
    same device states as the corruption (seeded from ``seed``), so its noise
    is reproducible but not the CPU's. ``eps_rng`` is a testing hook: when it
    holds a ``numpy.random.Generator``, every eps is drawn from it on the host
    (standard normals of the network's dtype, row by row, as the CPU engine
    draws them from its bit generator) and uploaded, one copy per step; given
    a generator in the state of the CPU's, a CUDA VAE then reproduces the
    CPU's fit within float32 rounding.
    """

    def __init__(self, code_block=0, sparsity=0, weight=0.0, target=0.0, k=0, encode_k=0,
                 normalize_decoder=False, corruption=0, level=0.0, low=0.0, high=1.0,
                 seed=None, n_code=0, aux_k=0, aux_weight=0.0, dead_after=0,
                 gaussian=False, n_latent=0, kl_weight=1.0, obs_off=-1, obs_logvar=0.0):
        if sparsity != 0 and code_block < 1:
            raise ValueError("code-layer sparsity needs a code block")
        if gaussian and (code_block < 1 or n_latent < 1 or sparsity != 0):
            raise ValueError("a VAE bottleneck needs a code block, n_latent >= 1 and no "
                             "code sparsity")
        if sparsity == SPARSITY_CODES["topk"] and not (1 <= k <= n_code and 1 <= encode_k <= n_code):
            raise ValueError("TopK needs 1 <= k, encode_k <= n_code")
        if corruption != 0 and seed is None:
            raise ValueError("corruption needs a seed")
        is_topk = sparsity == SPARSITY_CODES["topk"]
        if aux_k and (not is_topk or not 1 <= aux_k <= n_code or dead_after < 1):
            raise ValueError("AuxK needs TopK, 1 <= aux_k <= n_code and dead_after >= 1")
        self.code_block = int(code_block)
        self.sparsity = int(sparsity)
        self.weight = float(weight)
        self.target = float(target)
        self.k = int(k) if is_topk else 0
        self.encode_k = int(encode_k) if is_topk else 0
        self.normalize_decoder = bool(normalize_decoder) and is_topk
        self.aux_k = int(aux_k) if is_topk else 0
        self.aux_weight = float(aux_weight)
        self.dead_after = int(dead_after)
        self.corruption = int(corruption)
        self.level = float(level)
        self.low = float(low)
        self.high = float(high)
        self.threshold = int(min(self.level * 65536.0 + 0.5, 65536.0))
        self.seed = None if seed is None else int(seed)
        self.n_code = int(n_code)
        self._fired = np.zeros(max(self.n_code, 1), dtype=np.int64)
        self._last = np.zeros(max(self.n_code, 1), dtype=np.int64)
        self.samples = 0                  # training samples seen (since_fired clock)
        self.gaussian = bool(gaussian)
        self.n_latent = int(n_latent) if self.gaussian else 0
        self._kl_weight = 1.0
        self.kl_weight = kl_weight
        self.obs_off = int(obs_off)
        self.obs_logvar = float(obs_logvar)
        self.eps_rng = None               # testing hook: host-drawn eps (see the class doc)
        self._states = None
        self._d_fired = None
        self._d_last = None

    @property
    def kl_weight(self):
        """Weight of the VAE's KL term in the training objective (settable between calls)."""
        return self._kl_weight

    @kl_weight.setter
    def kl_weight(self, value):
        value = float(value)
        if not value >= 0.0:
            raise ValueError("kl_weight must be >= 0")
        self._kl_weight = value

    # -- device state
    def states(self):
        """Device xoroshiro128+ states of the corruption and sampling kernels (on first use)."""
        if self._states is None:
            from .._kernels import cuda as K

            self._states = K.create_states(0 if self.seed is None else self.seed)
        return self._states

    def device_counters(self):
        from numba import cuda

        if self._d_fired is None:
            self._d_fired = cuda.to_device(self._fired)
            self._d_last = cuda.to_device(self._last)
        return self._d_fired, self._d_last

    def _pull_counters(self):
        if self._d_fired is not None:
            self._fired[:] = self._d_fired.copy_to_host()
            self._last[:] = self._d_last.copy_to_host()

    # -- the Regularization interface
    @property
    def fired(self):
        """Per code unit: training selections with a non-zero value (TopK)."""
        return self._fired

    @property
    def since_fired(self):
        """Per code unit: training samples since it last fired (TopK)."""
        return self.samples - self._last

    def reset_fired(self):
        self._fired[:] = 0
        if self._d_fired is not None:
            self._d_fired.copy_to_device(self._fired)


def make_regularization(sparsity, corruption, code_block, n_code, rng=None, **bottleneck):
    """``regularizers.make_regularization`` for the CUDA backend (same arguments).

    The seed of the corruption noise and of a VAE's samples (one stream of
    device states for both) is drawn from ``rng``, so the same random_state
    gives the same noise on the same device. ``**bottleneck`` is a VAE's
    sampling bottleneck (``gaussian=True, n_latent, kl_weight, obs_off,
    obs_logvar``).
    """
    kwargs = regularization_kwargs(sparsity, corruption if rng is not None else None,
                                   code_block, n_code, **bottleneck)
    if rng is not None and ("corruption" in kwargs or bottleneck.get("gaussian")):
        kwargs["seed"] = int(rng.integers(2**63))
    return CUDARegularization(**kwargs)


# =========================================================================== backend


def _quiet(method):
    """Silence numba's low-occupancy warnings: the small launches are by design."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        from numba.core.errors import NumbaPerformanceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumbaPerformanceWarning)
            return method(*args, **kwargs)
    return wrapper


class _Workspace:
    """Device buffers of one batch size (rows): activations, deltas, masks."""

    def __init__(self, backend, rows):
        from numba import cuda

        sizes, dtype = backend.sizes, backend.dtype
        L = len(sizes) - 1
        self.rows = rows
        self.acts = [cuda.device_array((rows, s), dtype=dtype) for s in sizes]
        maxw = max(sizes)
        flat = [cuda.device_array(rows * maxw, dtype=dtype) for _ in range(2)]
        # delta of layer l's output (width sizes[l + 1]) alternates between the two
        self.deltas = [flat[(L - 1 - l) % 2][:rows * sizes[l + 1]].reshape(rows, sizes[l + 1])
                       for l in range(L)]
        self.target = cuda.device_array((rows, sizes[0]), dtype=dtype) if backend.corrupt else None
        reg = backend.reg
        n_code = sizes[reg.code_block] if reg.code_block > 0 else 1
        kmax = max(reg.k, reg.encode_k, 1)
        self.mask = cuda.device_array((rows, n_code), dtype=np.uint8)
        self.idx = cuda.device_array((rows, kmax), dtype=np.int64)
        self.vals = cuda.device_array((rows, kmax), dtype=dtype)
        self.res = cuda.device_array(rows, dtype=np.float64)
        if reg.aux_k:  # the dense code (then AuxK's picks), their code delta and selection
            self.aux_code = cuda.device_array((rows, n_code), dtype=dtype)
            self.aux_delta = cuda.device_array((rows, n_code), dtype=dtype)
            self.aux_grad = cuda.device_array((rows, sizes[-1]), dtype=dtype)
            self.aux_vals = cuda.device_array((rows, reg.aux_k), dtype=dtype)
            self.aux_idx = cuda.device_array((rows, reg.aux_k), dtype=np.int64)
        if backend.vae:  # z, its eps and its delta; each row's KL at inference
            nl = backend.n_latent
            self.z = cuda.device_array((rows, nl), dtype=dtype)
            self.eps = cuda.device_array((rows, nl), dtype=dtype)
            self.dz = cuda.device_array((rows, nl), dtype=dtype)
            self.kl = cuda.device_array(rows, dtype=np.float64)
        cp = backend.cp
        if cp is not None:
            self.cp_acts = [cp.asarray(a) for a in self.acts]
            self.cp_deltas = [cp.asarray(d) for d in self.deltas]
            if backend.vae:
                self.cp_z = cp.asarray(self.z)
                self.cp_dz = cp.asarray(self.dz)
            if reg.aux_k:
                self.cp_aux_code = cp.asarray(self.aux_code)
                self.cp_aux_grad = cp.asarray(self.aux_grad)

    def layer_input(self, backend, l):
        """The block that layer l reads (a VAE's first decoder layer: z), and its CuPy view."""
        if backend.vae and l == backend.reg.code_block:
            return self.z, (self.cp_z if backend.cp is not None else None)
        return self.acts[l], (self.cp_acts[l] if backend.cp is not None else None)


class CUDABackend:
    """numba.cuda kernels (and cuBLAS through CuPy) for one network and loss.

    Parameters
    ----------
    network : aefast.engine.network.Network
    loss : {"mse", "bce", "gaussian"}
    regularization : CUDARegularization or None
        A VAE network needs one with ``gaussian=True``.
    gemm : {"auto", "cublas", "numba"}, default="auto"
        cuBLAS through CuPy when CuPy imports ("auto"), or the tiled kernel.
    max_data_bytes : int or None
        Training matrices larger than this are streamed per call instead of
        uploaded once (default: half of the free device memory).
    fused : {"auto", True, False}, default="auto"
        Run each call in the single-block trainer (small networks, no TopK).
    """

    name = "cuda"

    def __init__(self, network, loss, regularization=None, gemm="auto", max_data_bytes=None,
                 fused="auto"):
        from numba import cuda

        from .._kernels import cuda as K

        if regularization is not None and not isinstance(regularization, CUDARegularization):
            raise TypeError("the CUDA backend needs a CUDARegularization (see "
                            "aefast.engine.cuda_backend.make_regularization), got "
                            f"{type(regularization).__name__}")
        if gemm not in ("auto", "cublas", "numba"):
            raise ValueError(f"gemm={gemm!r}: choose auto, cublas or numba")
        self.K = K
        self.cuda = cuda
        self.network = network
        self.loss_code = LOSS_CODES[loss]
        self.regularization = regularization
        self.reg = regularization if regularization is not None else CUDARegularization()
        self.cp = K.cupy_module() if gemm != "numba" else None
        if gemm == "cublas" and self.cp is None:
            raise RuntimeError("gemm='cublas' needs CuPy with a usable CUDA device")
        self.max_data_bytes = max_data_bytes
        if fused not in ("auto", True, False):
            raise ValueError(f"fused={fused!r}: choose 'auto', True or False")
        self.fused = fused
        net = network
        self.dtype = net.dtype
        self.sizes = [int(s) for s in net.sizes]
        self.acts = [int(a) for a in net.act_codes]
        self.slope = float(net.leaky_slope)
        self.L = net.n_layers
        self.corrupt = self.reg.corruption != 0
        if self.reg.code_block >= self.L or (
                self.reg.k and self.sizes[self.reg.code_block] < max(self.reg.k, self.reg.encode_k)):
            raise ValueError("the regularization does not fit this network")
        if self.reg.aux_k and self.reg.code_block != self.L - 1:
            raise ValueError("AuxK needs the code to feed the output layer directly")
        self._check_vae(net)
        n = net.n_params
        self.n_params = n
        self.d_params = cuda.to_device(net.params)
        self.d_grads = cuda.to_device(np.zeros(n, dtype=self.dtype))
        self.d_s1 = cuda.to_device(np.zeros(n, dtype=self.dtype))
        self.d_s2 = cuda.to_device(np.zeros(n, dtype=self.dtype))
        self.d_wmask = cuda.to_device(net.weight_mask().astype(np.uint8))
        self.W, self.b, self.gW, self.gb = [], [], [], []
        # input widths: a VAE's first decoder layer reads z (n_latent wide)
        self.in_w = [int(net.in_width(l)) for l in range(self.L)]
        for l in range(self.L):
            n_in, n_out = self.in_w[l], self.sizes[l + 1]
            w0, b0 = int(net.w_off[l]), int(net.b_off[l])
            self.W.append(self.d_params[w0:w0 + n_in * n_out].reshape(n_in, n_out))
            self.b.append(self.d_params[b0:b0 + n_out])
            self.gW.append(self.d_grads[w0:w0 + n_in * n_out].reshape(n_in, n_out))
            self.gb.append(self.d_grads[b0:b0 + n_out])
        if self.cp is not None:
            self.cp_W = [self.cp.asarray(w) for w in self.W]
            self.cp_gW = [self.cp.asarray(g) for g in self.gW]
        cb = self.reg.code_block
        self.n_code = self.sizes[cb] if cb > 0 else 1
        self.d_pgrad = cuda.to_device(np.zeros(self.n_code, dtype=np.float64))
        self.d_status = cuda.to_device(np.zeros(2, dtype=np.int64))
        self.dummy_mask = cuda.device_array((1, 1), dtype=np.uint8)
        self.dummy_i64 = cuda.to_device(np.zeros(1, dtype=np.int64))
        self.dummy_block = cuda.device_array((1, 1), dtype=self.dtype)
        if self.reg.aux_k:  # scratch of AuxK's output-weight gradient
            self.aux_gW = cuda.device_array((self.n_code, self.sizes[-1]), dtype=self.dtype)
            if self.cp is not None:
                self.cp_aux_gW = self.cp.asarray(self.aux_gW)
        # per-step partial sums: loss blocks, code-penalty blocks, weight-penalty blocks
        # (a VAE adds one KL slot per block of the sampling kernel, AuxK one per block
        # of auxk_kernel, both before the weight penalty's)
        self.n_loss_slots = K._cols_grid(self.sizes[-1])
        self.n_code_slots = K._cols_grid(self.n_code) if self.reg.sparsity in (1, 2) else 0
        self.n_kl_slots = K.RNG_GRID if self.vae else 0
        self.n_aux_slots = K.AUX_GRID if self.reg.aux_k else 0
        self.pen_grid = K._grid(n)
        self.n_slots = (self.n_loss_slots + self.n_code_slots + self.n_kl_slots
                        + self.n_aux_slots + self.pen_grid)
        # Gaussian likelihood: the learned log-variances (views of the flat buffers) or
        # placeholders beside the fixed one
        self.obs_learned = self.loss_code == K.LOSS_GAUSS and self.reg.obs_off >= 0
        if self.obs_learned:
            off, d = self.reg.obs_off, self.sizes[-1]
            if off < int(net.b_off[-1]) + d or off + d > n:
                raise ValueError("the learned variances lie outside the parameter buffer")
            self.d_obs = self.d_params[off:off + d]
            self.d_obs_grad = self.d_grads[off:off + d]
        else:
            self.d_obs = self.d_obs_grad = cuda.device_array(1, dtype=self.dtype)
        self.d_partials = None
        self._ws = {}
        self._x_key = self._x_ref = None
        self._d_X = None

    def _check_vae(self, net):
        """A VAE network needs the Gaussian bottleneck, and the bottleneck a VAE network."""
        reg = self.reg
        self.vae = bool(reg.gaussian)
        self.n_latent = int(reg.n_latent)
        if not (self.vae or net.vae_block):
            return
        cb = reg.code_block
        if not (self.vae and net.vae_block == cb and net.n_latent == self.n_latent
                and self.sizes[cb] == 2 * self.n_latent
                and self.acts[cb - 1] == self.K.ACT_IDENTITY):
            raise ValueError("a VAE network needs the Gaussian bottleneck on its stats block "
                             "(2 * n_latent wide and linear), and the bottleneck a VAE network")

    # ----------------------------------------------------------------- helpers
    def steps_per_call(self, batch_size):
        return STEPS_PER_CALL

    def _workspace(self, rows):
        ws = self._ws.get(rows)
        if ws is None:
            ws = self._ws[rows] = _Workspace(self, rows)
        return ws

    def _data_limit(self):
        if self.max_data_bytes is not None:
            return int(self.max_data_bytes)
        try:
            free = self.cuda.current_context().get_memory_info()[0]
            if math.isfinite(free):
                return int(free // 2)
        except Exception:
            pass
        return 1 << 30

    def _cached_X(self, X):
        """X on the device when it fits (uploaded once, reused while X is the same array)."""
        # the same object (kept referenced, so its memory cannot be reused) and layout
        key = (id(X), X.__array_interface__["data"][0], X.shape, X.dtype.str, X.strides)
        if key == self._x_key and X is self._x_ref:
            return self._d_X
        if X.nbytes > self._data_limit():
            return None
        self._d_X = None  # free the previous one first
        self._d_X = self.cuda.to_device(np.ascontiguousarray(X))
        self._x_key, self._x_ref = key, X
        return self._d_X

    def _upload_params(self, state=None):
        net = self.network
        self.d_params.copy_to_device(net.params)
        if state is not None:
            self.d_s1.copy_to_device(state.state1)
            self.d_s2.copy_to_device(state.state2)

    def _dense(self, ws, l, rows, act, out=None):
        """acts[l + 1][:rows] <- act(input[:rows] @ W_l + b_l) (input: acts[l], or z)."""
        K = self.K
        n_in, n_out = self.in_w[l], self.sizes[l + 1]
        h, cp_h = ws.layer_input(self, l)
        if self.cp is not None:
            self.cp.matmul(cp_h[:rows], self.cp_W[l], out=ws.cp_acts[l + 1][:rows])
            K.bias_act_kernel[K._grid(rows * n_out), K.BLOCK](
                ws.acts[l + 1], self.b[l], rows, n_out, act, self.slope)
        else:
            K.launch_gemm(h, self.W[l], ws.acts[l + 1], rows, n_out, n_in,
                          bias=self.b[l], act=act, slope=self.slope)

    def _sample(self, ws, rows, mode, step=0):
        """A VAE's z (and eps) from its stats block: mode "train", or K.Z_MEAN / K.Z_DRAW.

        Training sums the KL into the step's partials; inference writes each
        row's KL to ws.kl. With the ``eps_rng`` hook eps comes from the host.
        """
        K, reg = self.K, self.reg
        stats = ws.acts[reg.code_block]
        nl = self.n_latent
        drawing = mode != K.Z_MEAN
        given = drawing and reg.eps_rng is not None
        if given:
            ws.eps[:rows].copy_to_device(np.ascontiguousarray(
                reg.eps_rng.standard_normal((rows, nl), dtype=self.dtype)))
        elif drawing and reg.seed is None:
            raise ValueError("a VAE needs a seed for its samples (make_regularization(..., "
                             "rng=...))")
        states = reg.states() if drawing and not given else self._no_states()
        if mode == "train":
            K.sample_kernel[K.RNG_GRID, K.BLOCK](
                stats, rows, nl, ws.z, ws.eps, not given, states, self.d_partials, step,
                self.n_loss_slots + self.n_code_slots, self.d_status)
        else:
            if given:
                mode = K.Z_GIVEN
            grid = K.RNG_GRID if mode == K.Z_DRAW else K._grid(rows)
            K.sample_rows_kernel[grid, K.BLOCK](stats, rows, nl, ws.z, ws.eps, mode, states,
                                                ws.kl)

    def _forward(self, ws, rows, first, last, keep_logits, k, count, count_after,
                 z_mode=None, step=0):
        """Layers [first, last); a VAE's z follows its stats block as ``z_mode`` says
        (see _sample; default: the posterior mean)."""
        K = self.K
        cb = self.reg.code_block
        for l in range(first, last):
            act = self.acts[l]
            if keep_logits and l == last - 1:
                act = K.ACT_IDENTITY
            self._dense(ws, l, rows, act)
            if self.vae and l + 1 == cb and last > cb:
                self._sample(ws, rows, K.Z_MEAN if z_mode is None else z_mode, step)
                continue
            if k > 0 and l + 1 == cb:
                fired, last_fired = (self.reg.device_counters() if count
                                     else (self.dummy_i64, self.dummy_i64))
                keep_dense = count and self.reg.aux_k > 0  # AuxK reads it (training)
                K.topk_rows_kernel[max(1, min(rows, K.MAX_GRID)), K.ROW_BLOCK](
                    ws.acts[cb], rows, self.sizes[cb], k, ws.vals, ws.idx, ws.mask, True,
                    fired, last_fired, count_after, count,
                    ws.aux_code if keep_dense else self.dummy_block, keep_dense, self.d_status)

    # ----------------------------------------------------------------- training
    @_quiet
    def train_batches(self, X, order, start, stop, batch_size, optimizer, state, grads,
                      weight_decay, weight_l1, batch_losses, workers=1, parts=None):
        """Train on order[start:stop] in steps of batch_size rows; see CPUBackend.

        ``grads`` (a host buffer of the CPU interface) is not used: gradients
        stay on the device; nor are ``workers`` and ``parts`` (the CPU's
        data-parallel step). Returns (steps_done, status).
        """
        cuda = self.cuda
        sizes = self.sizes
        if X.ndim != 2 or X.shape[1] != sizes[0] or sizes[-1] != sizes[0]:
            raise ValueError(f"X has {X.shape[1]} features, the network expects {sizes[0]} in "
                             f"and {sizes[-1]} out")
        if X.dtype != self.dtype:
            raise ValueError(f"X has dtype {X.dtype}, the network {self.dtype}")
        if stop > order.shape[0] or start < 0 or start > stop:
            raise ValueError("batch range out of the index")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if X.shape[0] == 0 or start == stop:
            return 0, 0
        n_steps = (stop - start + batch_size - 1) // batch_size
        if batch_losses.shape[0] < n_steps:
            raise ValueError("batch_losses too short")
        sel = np.ascontiguousarray(order[start:stop], dtype=np.int64)
        if sel.min() < 0 or sel.max() >= X.shape[0]:
            raise IndexError("order holds an index outside X")
        if self.d_partials is None or self.d_partials.shape[0] < n_steps:
            self.d_partials = cuda.device_array((max(n_steps, 1), self.n_slots), dtype=np.float64)
        self._upload_params(state)
        self.d_status.copy_to_device(np.zeros(2, dtype=np.int64))
        ws = self._workspace(batch_size)
        step_sizes = []
        d_X = self._cached_X(X)
        t0 = int(state.t)
        if d_X is not None and self._use_fused(batch_size):
            return self._train_fused(d_X, sel, batch_size, n_steps, optimizer, state,
                                     weight_decay, weight_l1, batch_losses)
        if d_X is not None:
            d_order = cuda.to_device(sel)
            for s in range(n_steps):
                pos = s * batch_size
                rows = min(batch_size, sel.shape[0] - pos)
                self._step(ws, d_X, d_order, pos, rows, s, optimizer, t0 + s + 1,
                           weight_decay, weight_l1)
                step_sizes.append(rows)
        else:  # stream whole batches of gathered rows
            row_bytes = X.shape[1] * X.dtype.itemsize
            per_chunk = max(1, self._data_limit() // max(row_bytes * batch_size, 1))
            s = 0
            while s < n_steps:
                take = min(per_chunk, n_steps - s)
                rows_idx = sel[s * batch_size:(s + take) * batch_size]
                d_chunk = cuda.to_device(np.ascontiguousarray(X[rows_idx]))
                d_order = cuda.to_device(np.arange(rows_idx.shape[0], dtype=np.int64))
                for q in range(take):
                    pos = q * batch_size
                    rows = min(batch_size, rows_idx.shape[0] - pos)
                    self._step(ws, d_chunk, d_order, pos, rows, s + q, optimizer, t0 + s + q + 1,
                               weight_decay, weight_l1)
                    step_sizes.append(rows)
                s += take
                del d_chunk
        # one read-back per call
        code, failed_at = (int(v) for v in self.d_status.copy_to_host())
        steps = n_steps if code == 0 else failed_at
        if steps:
            parts = self.d_partials[:steps].copy_to_host()
            nl, nc, nk = self.n_loss_slots, self.n_code_slots, self.n_kl_slots
            rows_arr = np.asarray(step_sizes[:steps], dtype=np.float64)
            data = parts[:, :nl].sum(axis=1)
            if self.vae:  # the negative ELBO: sums over features, mean over rows
                kl = parts[:, nl + nc:nl + nc + nk].sum(axis=1)
                losses = (data + self.reg.kl_weight * kl) / rows_arr
            else:
                losses = data / (rows_arr * sizes[-1])
            # code penalty, then AuxK and the weight penalty (the slots after the KL's)
            losses += parts[:, nl:nl + nc].sum(axis=1) + parts[:, nl + nc + nk:].sum(axis=1)
            batch_losses[:steps] = losses
        self._finish_call(state, steps)
        if self.reg.k:
            self.reg._pull_counters()
        return steps, code

    def _finish_call(self, state, steps):
        self.network.params[:] = self.d_params.copy_to_host()
        state.state1[:] = self.d_s1.copy_to_host()
        state.state2[:] = self.d_s2.copy_to_host()
        state.t += steps

    def _use_fused(self, batch_size):
        if self.fused == "auto":
            return (self.reg.k == 0 and not self.vae and self.loss_code != self.K.LOSS_GAUSS
                    and batch_size * self.n_params <= FUSED_MAX_WORK)
        if self.fused and self.reg.k:
            raise ValueError("the fused trainer does not handle TopK")
        if self.fused and (self.vae or self.loss_code == self.K.LOSS_GAUSS):
            raise ValueError("the fused trainer does not handle the VAE (sampling bottleneck, "
                             "Gaussian likelihood)")
        return bool(self.fused)

    def _train_fused(self, d_X, sel, batch_size, n_steps, optimizer, state, weight_decay,
                     weight_l1, batch_losses):
        """All the steps of a call in one launch of the single-block trainer."""
        K, cuda, reg = self.K, self.cuda, self.reg
        if not hasattr(self, "_fused_ws") or self._fused_ws[0] != batch_size:
            net = self.network
            total = batch_size * sum(self.sizes)
            ws = cuda.device_array(total, dtype=self.dtype)
            dl = cuda.device_array((2, batch_size * max(self.sizes)), dtype=self.dtype)
            target = (cuda.device_array(batch_size * self.sizes[0], dtype=self.dtype)
                      if self.corrupt else ws)
            spec = [cuda.to_device(np.ascontiguousarray(a, dtype=np.int64))
                    for a in (net.sizes, net.act_codes, net.w_off, net.b_off)]
            self._fused_ws = (batch_size, ws, dl, target, spec)
        _, ws, dl, target, (sizes, acts, w_off, b_off) = self._fused_ws
        opt = optimizer
        t = int(state.t) + 1 + np.arange(n_steps, dtype=np.float64)
        adam = np.empty((n_steps, 2))
        adam[:, 0] = opt.learning_rate / (1.0 - opt.beta_1 ** t)
        adam[:, 1] = 1.0 / np.sqrt(1.0 - opt.beta_2 ** t)
        partials = cuda.device_array((n_steps, 3), dtype=np.float64)
        sparsity = reg.sparsity if reg.sparsity in (1, 2) else 0
        states = reg.states() if self.corrupt else self._no_states()
        K.train_small_kernel[1, K.FUSED_BLOCK](
            d_X, cuda.to_device(sel), sel.shape[0], batch_size, n_steps, sizes, acts, w_off,
            b_off, self.loss_code, self.slope, self.d_params, self.d_grads, self.d_s1,
            self.d_s2, self.d_wmask, opt.code, float(opt.learning_rate), float(opt.momentum),
            float(opt.beta_1), float(opt.beta_2), float(opt.epsilon), cuda.to_device(adam),
            float(weight_decay), float(weight_l1), sparsity, reg.weight, reg.target,
            self.d_pgrad, reg.code_block, reg.corruption, reg.level, reg.low, reg.high,
            reg.threshold, states, ws, dl, target, partials, self.d_status)
        code, failed_at = (int(v) for v in self.d_status.copy_to_host())
        steps = n_steps if code == 0 else failed_at
        if steps:
            parts = partials[:steps].copy_to_host()
            rows = np.full(steps, float(batch_size))
            rows[-1] = min(batch_size, sel.shape[0] - (steps - 1) * batch_size)
            batch_losses[:steps] = parts[:, 0] / (rows * self.sizes[-1]) + parts[:, 1] + parts[:, 2]
        self._finish_call(state, steps)
        return steps, code

    def _step(self, ws, d_X, d_order, pos, rows, s, optimizer, t, weight_decay, weight_l1):
        """Launch one training step (no synchronisation)."""
        K = self.K
        reg = self.reg
        sizes, L = self.sizes, self.L
        status = self.d_status
        d = sizes[0]
        n_out = sizes[-1]
        cb = reg.code_block
        # 1. gather (+ corruption)
        if self.corrupt:
            K.gather_kernel[K.RNG_GRID, K.BLOCK](
                d_X, d_order, pos, rows, ws.target, ws.acts[0], reg.corruption, reg.level,
                reg.low, reg.high, reg.threshold, reg.states(), status)
            target = ws.target
        else:
            K.gather_kernel[K._grid(rows * d), K.BLOCK](
                d_X, d_order, pos, rows, ws.acts[0], ws.acts[0], 0, 0.0, 0.0, 0.0, 0,
                self._no_states(), status)
            target = ws.acts[0]
        # 2. forward (logits kept for cross-entropy); TopK counts firings; a VAE samples z
        if reg.k:
            reg.samples += rows
        self._forward(ws, rows, 0, L, self.loss_code == K.LOSS_BCE, reg.k, True, reg.samples,
                      "train", s)
        # 3. loss, output delta and the last bias gradient (a VAE's loss sums over
        # features and averages over rows; an autoencoder's averages over both)
        out = ws.acts[L]
        norm = rows if self.vae else rows * n_out
        K.loss_delta_kernel[self.n_loss_slots, (K.COL_X, K.COL_Y)](
            out, target, ws.deltas[L - 1], rows, n_out, self.loss_code, self.acts[L - 1],
            self.slope, 1.0 / norm, self.gb[L - 1], self.d_partials, s, 0, status,
            self.d_obs, self.d_obs_grad, self.obs_learned, reg.obs_logvar)
        if self.n_code_slots:
            K.code_penalty_kernel[self.n_code_slots, (K.COL_X, K.COL_Y)](
                ws.acts[cb], rows, sizes[cb], reg.sparsity, reg.weight, reg.target,
                self.d_pgrad, self.d_partials, s, self.n_loss_slots, status)
        aux_slot0 = self.n_loss_slots + self.n_code_slots + self.n_kl_slots
        if reg.aux_k:
            # AuxK on the dense code that the top-k kernel saved (ws.aux_code); dead units
            # come from the counters it has just updated (this step's firings count)
            _, last_fired = reg.device_counters()
            K.auxk_kernel[K.AUX_GRID, K.ROW_BLOCK](
                ws.aux_code, target, out, self.loss_code == K.LOSS_BCE, self.W[L - 1], rows,
                sizes[cb], n_out, reg.aux_k, reg.aux_weight, reg.dead_after, last_fired,
                reg.samples, self.acts[cb - 1], self.slope, ws.aux_vals, ws.aux_idx,
                ws.aux_delta, ws.aux_grad, self.d_partials, s, aux_slot0, status)
        # 4. backward
        cp = self.cp
        for l in range(L - 1, -1, -1):
            n_in, n_o = self.in_w[l], sizes[l + 1]
            h, cp_h = ws.layer_input(self, l)
            if cp is not None:
                cp.matmul(cp_h[:rows].T, ws.cp_deltas[l][:rows], out=self.cp_gW[l])
            else:
                K.launch_gemm(h, ws.deltas[l], self.gW[l], n_in, n_o, rows, ta=True)
            if reg.aux_k and l == L - 1:
                # AuxK's part of the output weights' gradient: selected values^T grad
                if cp is not None:
                    cp.matmul(ws.cp_aux_code[:rows].T, ws.cp_aux_grad[:rows],
                              out=self.cp_aux_gW)
                else:
                    K.launch_gemm(ws.aux_code, ws.aux_grad, self.aux_gW, n_in, n_o, rows,
                                  ta=True)
                K.add_kernel[K._grid(n_in * n_o), K.BLOCK](self.gW[l], self.aux_gW, n_in, n_o,
                                                           status)
            if l > 0:
                # the delta of the layer's input: of z for a VAE's first decoder layer
                sampled = self.vae and l == cb
                d_in = ws.dz if sampled else ws.deltas[l - 1]
                if cp is not None:
                    cp.matmul(ws.cp_deltas[l][:rows], self.cp_W[l].T,
                              out=(ws.cp_dz if sampled else ws.cp_deltas[l - 1])[:rows])
                else:
                    K.launch_gemm(ws.deltas[l], self.W[l], d_in, rows, n_in, n_o, tb=True)
                if sampled:
                    # through z = mu + sigma eps (and kl_weight * KL, per row) to the
                    # linear stats layer: no activation derivative, then its bias gradient
                    K.sample_backward_kernel[K._grid(rows * n_in), K.BLOCK](
                        ws.acts[cb], ws.eps, ws.dz, rows, n_in, reg.kl_weight / rows,
                        ws.deltas[cb - 1], status)
                    K.act_grad_kernel[K._cols_grid(sizes[cb]), (K.COL_X, K.COL_Y)](
                        ws.deltas[cb - 1], ws.acts[cb], rows, sizes[cb], K.ACT_IDENTITY,
                        self.slope, 0, 0.0, self.d_pgrad, self.dummy_mask, False,
                        self.dummy_block, False, self.gb[cb - 1], status)
                    continue
                at_code = l == cb
                pen = reg.sparsity if at_code and reg.sparsity in (1, 2) else 0
                use_mask = at_code and reg.k > 0
                use_aux = at_code and reg.aux_k > 0  # AuxK's delta reaches unselected units
                K.act_grad_kernel[K._cols_grid(n_in), (K.COL_X, K.COL_Y)](
                    ws.deltas[l - 1], ws.acts[l], rows, n_in, self.acts[l - 1], self.slope,
                    pen, reg.weight, self.d_pgrad, ws.mask if use_mask else self.dummy_mask,
                    use_mask, ws.aux_delta if use_aux else self.dummy_block, use_aux,
                    self.gb[l - 1], status)
        # 5. weight penalties and the gradient check; 6. the update
        K.penalty_check_kernel[self.pen_grid, K.BLOCK](
            self.d_params, self.d_grads, self.n_params, self.d_wmask, float(weight_decay),
            float(weight_l1), self.d_partials, s, aux_slot0 + self.n_aux_slots, status)
        opt = optimizer
        step_size = opt.learning_rate / (1.0 - opt.beta_1 ** t)
        inv_sqrt_bc2 = 1.0 / math.sqrt(1.0 - opt.beta_2 ** t)
        K.optimizer_kernel[K._grid(self.n_params), K.BLOCK](
            self.d_params, self.d_grads, self.d_s1, self.d_s2, self.n_params, opt.code,
            float(opt.learning_rate), float(opt.momentum), float(opt.beta_1),
            float(opt.beta_2), step_size, inv_sqrt_bc2, float(opt.epsilon), status)
        if reg.normalize_decoder:
            K.normalize_rows_kernel[K._grid(sizes[cb]), K.BLOCK](
                self.W[cb], sizes[cb], sizes[cb + 1], status)

    def _no_states(self):
        if not hasattr(self, "_dummy_states"):
            self._dummy_states = self.K.create_states(0, 1)
        return self._dummy_states

    # ----------------------------------------------------------------- inference
    def _load_rows(self, ws, X, index, pos, rows, layer):
        """Layer ``layer``'s input [:rows] <- X[index[pos:pos + rows]] (acts[layer], or a
        VAE's z block when ``layer`` is its first decoder layer; a device gather when X is
        cached)."""
        K = self.K
        d_X = self._cached_X(X) if layer == 0 and X.shape[1] == self.sizes[0] else None
        if d_X is not None:
            d_idx = self.cuda.to_device(np.ascontiguousarray(index[pos:pos + rows]))
            K.gather_kernel[K._grid(rows * X.shape[1]), K.BLOCK](
                d_X, d_idx, 0, rows, ws.acts[0], ws.acts[0], 0, 0.0, 0.0, 0.0, 0,
                self._no_states(), self.d_status)
        else:
            block = np.ascontiguousarray(X[index[pos:pos + rows]], dtype=self.dtype)
            ws.layer_input(self, layer)[0][:rows].copy_to_device(block)

    def _start_inference(self, n):
        self._upload_params()
        self.d_status.copy_to_device(np.zeros(2, dtype=np.int64))
        block = max(1, min(INFERENCE_BLOCK_ROWS, n))
        return block, self._workspace(block)

    def _rows_index(self, X, index):
        if index is None:
            return np.arange(X.shape[0], dtype=np.int64)
        index = np.ascontiguousarray(index, dtype=np.int64)
        if index.shape[0] and (index.min() < 0 or index.max() >= X.shape[0]):
            raise IndexError("index outside X")
        return index

    @_quiet
    def forward(self, X, first, last, index=None):
        """Outputs of layers [first, last) for X (rows ``index``, default all), on the host.

        For a VAE, X holds z (n_latent columns) when ``first`` is the first
        decoder layer, and a range across the stats block decodes the
        posterior mean (no sampling), as on the CPU.
        """
        if not 0 <= first < last <= self.L:
            raise ValueError("invalid layer range")
        if X.shape[1] != self.in_w[first]:
            raise ValueError("X does not have the width of layer `first`")
        index = self._rows_index(X, index)
        n = index.shape[0]
        out = np.empty((n, self.sizes[last]), dtype=self.dtype)
        if n == 0:
            return out
        cb = self.reg.code_block
        k = self.reg.encode_k if first < cb <= last else 0
        block, ws = self._start_inference(n)
        for pos in range(0, n, block):
            rows = min(block, n - pos)
            self._load_rows(ws, X, index, pos, rows, first)
            self._forward(ws, rows, first, last, False, k, False, 0, self.K.Z_MEAN)
            out[pos:pos + rows] = ws.acts[last][:rows].copy_to_host()
        return out

    def _row_nll(self, ws, rows, norm):
        """ws.res[:rows] <- each row's reconstruction loss (output vs acts[0]) / norm."""
        K = self.K
        K.row_loss_kernel[K._grid(rows), K.BLOCK](
            ws.acts[self.L], ws.acts[0], rows, self.sizes[0], self.loss_code, ws.res,
            float(norm), self.d_obs, self.obs_learned, self.reg.obs_logvar)

    def _check_features(self, X):
        if X.shape[1] != self.sizes[0] or self.sizes[-1] != self.sizes[0]:
            raise ValueError(f"X has {X.shape[1]} features, the network expects {self.sizes[0]}")

    @_quiet
    def row_losses(self, X, index=None):
        """Loss of reconstructing each row, averaged over features (float64).

        For a VAE: the one-sample negative ELBO of each row (summed over
        features), z drawn from the regularization's device states.
        """
        K = self.K
        if self.vae:
            rec, kl = self.vae_rows(X, index, sample=True)
            return rec + kl
        self._check_features(X)
        index = self._rows_index(X, index)
        n = index.shape[0]
        out = np.empty(n, dtype=np.float64)
        if n == 0:
            return out
        block, ws = self._start_inference(n)
        for pos in range(0, n, block):
            rows = min(block, n - pos)
            self._load_rows(ws, X, index, pos, rows, 0)
            self._forward(ws, rows, 0, self.L, self.loss_code == K.LOSS_BCE, self.reg.encode_k,
                          False, 0)
            self._row_nll(ws, rows, self.sizes[0])
            out[pos:pos + rows] = ws.res[:rows].copy_to_host()
        return out

    @_quiet
    def vae_rows(self, X, index=None, sample=True):
        """Per-row (reconstruction NLL summed over features, KL) of a VAE (float64).

        With ``sample``, z is drawn from q(z|x) with the regularization's
        device states (which advance: each call draws anew); otherwise z = mu.
        """
        K = self.K
        if not self.vae:
            raise ValueError("vae_rows needs a VAE bottleneck")
        self._check_features(X)
        index = self._rows_index(X, index)
        n = index.shape[0]
        rec = np.empty(n, dtype=np.float64)
        kl = np.empty(n, dtype=np.float64)
        if n == 0:
            return rec, kl
        block, ws = self._start_inference(n)
        mode = K.Z_DRAW if sample else K.Z_MEAN
        for pos in range(0, n, block):
            rows = min(block, n - pos)
            self._load_rows(ws, X, index, pos, rows, 0)
            self._forward(ws, rows, 0, self.L, self.loss_code == K.LOSS_BCE, 0, False, 0, mode)
            self._row_nll(ws, rows, 1.0)
            rec[pos:pos + rows] = ws.res[:rows].copy_to_host()
            kl[pos:pos + rows] = ws.kl[:rows].copy_to_host()
        return rec, kl

    @_quiet
    def decode_losses(self, Z, X, x_index):
        """Reconstruction NLL of X[x_index[i]] decoded from Z[i], summed over features."""
        K = self.K
        if not self.vae:
            raise ValueError("decode_losses needs a VAE bottleneck")
        self._check_features(X)
        n = Z.shape[0]
        if Z.ndim != 2 or Z.shape[1] != self.n_latent:
            raise ValueError(f"Z needs {self.n_latent} columns")
        x_index = self._rows_index(X, x_index)
        if x_index.shape[0] != n:
            raise ValueError("x_index needs one entry per row of Z")
        out = np.empty(n, dtype=np.float64)
        if n == 0:
            return out
        cb = self.reg.code_block
        block, ws = self._start_inference(n)
        for pos in range(0, n, block):
            rows = min(block, n - pos)
            ws.z[:rows].copy_to_device(np.ascontiguousarray(Z[pos:pos + rows], dtype=self.dtype))
            self._load_rows(ws, X, x_index, pos, rows, 0)  # the targets
            self._forward(ws, rows, cb, self.L, self.loss_code == K.LOSS_BCE, 0, False, 0)
            self._row_nll(ws, rows, 1.0)
            out[pos:pos + rows] = ws.res[:rows].copy_to_host()
        return out
