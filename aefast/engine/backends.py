"""Backends own the working arrays of a network and call its compiled kernels.

The CPU backend runs the Cython kernels of ``aefast._ext._network``; the CUDA
backend (``cuda_backend.CUDABackend``, imported only for device "cuda") the
numba.cuda kernels of ``aefast._kernels.cuda``. A backend is created per fit
or per inference call; it holds no state that a model needs to keep.
"""
import numpy as np

from .._ext import _network
from .losses import LOSS_CODES

INFERENCE_BLOCK_ROWS = 1024
# Aim for about this many flops per compiled call: few enough Python calls to
# be free, short enough that Ctrl-C and verbose output stay responsive. At
# least MIN_STEPS_PER_CALL steps: the training loop copies the parameters once
# per call (its fallback if an update overflows), which costs about 5% of a
# step whatever the model's size.
FLOPS_PER_CALL = 2e9
MIN_STEPS_PER_CALL = 4


class CPUBackend:
    """Compiled CPU kernels for one network and loss.

    Parameters
    ----------
    network : aefast.engine.network.Network
    loss : {"mse", "bce"}
    regularization : aefast._ext._network.Regularization or None
        Code-layer sparsity and input corruption (see engine/regularizers.py).
    """

    name = "cpu"

    def __init__(self, network, loss, regularization=None):
        self.network = network
        self.loss_code = LOSS_CODES[loss]
        self.regularization = regularization
        self._workspaces = {}

    def _workspace(self, rows, parts=1):
        """(activations, deltas, clean batch, other parts' gradients) for steps of ``rows``."""
        key = (rows, parts)
        if key not in self._workspaces:
            net = self.network
            n_ws, n_delta = _network.workspace_sizes(net.sizes, rows, net.n_latent, parts)
            dtype = net.dtype
            # The clean batch, when the network sees a corrupted copy.
            target = np.empty(rows * int(net.sizes[0]), dtype)
            part_grads = np.zeros(max(parts - 1, 0) * net.params.shape[0], dtype)
            self._workspaces[key] = (np.empty(n_ws, dtype), np.empty(n_delta, dtype), target,
                                     part_grads)
        return self._workspaces[key]

    def steps_per_call(self, batch_size):
        n_weights = int(np.sum(self.network.sizes[:-1] * self.network.sizes[1:]))
        return int(np.clip(FLOPS_PER_CALL / (6.0 * batch_size * n_weights),
                           MIN_STEPS_PER_CALL, 1024))

    def train_batches(self, X, order, start, stop, batch_size, optimizer, state, grads,
                      weight_decay, weight_l1, batch_losses, workers=1, parts=None):
        """Run the training steps over ``order[start:stop]``; see ``_network.train_batches``.

        Each step is split into ``parts`` parts of the batch (default:
        ``workers``), trained by ``workers`` threads; the result depends on
        ``parts`` only.
        """
        net = self.network
        parts = workers if parts is None else parts
        ws, delta, target, part_grads = self._workspace(batch_size, parts)
        steps, status = _network.train_batches(
            X, order, start, stop, batch_size, *net.spec(), self.loss_code, net.leaky_slope,
            self.regularization, net.params, grads, state.state1, state.state2, ws, delta,
            target,
            optimizer.code, optimizer.learning_rate, optimizer.beta_1, optimizer.beta_2,
            optimizer.epsilon, optimizer.momentum, weight_decay, weight_l1, state.t,
            batch_losses, workers, part_grads, parts)
        state.t += steps
        return steps, status

    def forward(self, X, first, last, index=None):
        """Outputs of layers [first, last) for X (rows ``index``, default all)."""
        net = self.network
        if index is None:
            index = np.arange(X.shape[0], dtype=np.int64)
        out = np.empty((index.shape[0], int(net.sizes[last])), dtype=net.dtype)
        rows = max(1, min(INFERENCE_BLOCK_ROWS, index.shape[0]))
        ws = self._workspace(rows)[0]
        _network.forward_rows(X, index, *net.spec(), net.leaky_slope, self.regularization,
                              net.params, first, last, ws, rows, out)
        return out

    def row_losses(self, X, index=None):
        """Loss of reconstructing each row, averaged over features (float64).

        For a VAE: the one-sample negative ELBO of each row (summed over
        features), z drawn with the regularization's bit generator.
        """
        net = self.network
        if net.vae_block:
            rec, kl = self.vae_rows(X, index, sample=True)
            return rec + kl
        if index is None:
            index = np.arange(X.shape[0], dtype=np.int64)
        out = np.empty(index.shape[0], dtype=np.float64)
        rows = max(1, min(INFERENCE_BLOCK_ROWS, index.shape[0]))
        ws = self._workspace(rows)[0]
        _network.row_losses(X, index, *net.spec(), self.loss_code, net.leaky_slope,
                            self.regularization, net.params, ws, rows, out)
        return out

    def vae_rows(self, X, index=None, sample=True):
        """Per-row (reconstruction NLL summed over features, KL) of a VAE (float64)."""
        net = self.network
        if index is None:
            index = np.arange(X.shape[0], dtype=np.int64)
        rec = np.empty(index.shape[0], dtype=np.float64)
        kl = np.empty(index.shape[0], dtype=np.float64)
        rows = max(1, min(INFERENCE_BLOCK_ROWS, index.shape[0]))
        ws = self._workspace(rows)[0]
        _network.vae_rows(X, index, *net.spec(), self.loss_code, net.leaky_slope,
                          self.regularization, net.params, ws, rows, sample, rec, kl)
        return rec, kl

    def decode_losses(self, Z, X, x_index):
        """Reconstruction NLL of X[x_index[i]] decoded from Z[i], summed over features."""
        net = self.network
        out = np.empty(Z.shape[0], dtype=np.float64)
        rows = max(1, min(INFERENCE_BLOCK_ROWS, Z.shape[0]))
        ws = self._workspace(rows)[0]
        _network.decode_losses(Z, X, x_index, *net.spec(), self.loss_code, net.leaky_slope,
                               self.regularization, net.params, ws, rows, out)
        return out


def get_backend(device, network, loss, regularization=None):
    """The backend for a resolved device name."""
    if device == "cpu":
        return CPUBackend(network, loss, regularization)
    if device == "cuda":
        from .cuda_backend import CUDABackend  # numba.cuda is imported only for the GPU

        return CUDABackend(network, loss, regularization)
    raise ValueError(f"device={device!r} has no backend in this build")
