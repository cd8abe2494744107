"""The one training loop every model uses.

The loop is Python per *call* (many mini-batches) and compiled per step:
shuffling the index, splitting off a validation set, early stopping, progress
output, divergence and Ctrl-C handling live here; the backend runs the steps.
"""
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import TrainingDivergedError


@dataclass
class TrainingConfig:
    """What the loop needs besides the network, optimizer and data."""

    batch_size: int
    max_epochs: int
    shuffle: bool = True
    early_stopping: bool = False
    n_iter_no_change: int = 10
    tol: float = 1e-4
    weight_decay: float = 0.0
    weight_l1: float = 0.0
    verbose: bool = False
    # Each training row enters its batch this many times (a VAE's Monte-Carlo
    # samples per input): batches hold batch_size * repeat rows.
    repeat: int = 1


@dataclass
class History:
    """Per-epoch record of a fit; ``loss_curve`` includes weight penalties."""

    loss_curve: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)
    best_loss: float = np.inf
    best_validation_score: float = -np.inf
    n_epochs: int = 0
    interrupted: bool = False


def split_validation(n_samples, fraction, rng):
    """Shuffled (train, validation) index arrays; validation gets >= 1 row."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {fraction}")
    n_val = max(1, int(round(fraction * n_samples)))
    if n_samples - n_val < 1:
        raise ValueError(
            f"early_stopping needs at least 2 samples to split off a validation set, "
            f"got {n_samples}")
    perm = rng.permutation(n_samples).astype(np.int64)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def train(backend, optimizer, state, X, train_idx, val_idx, config, rng, history,
          n_epochs=None, log=print, before_epoch=None, thread_chooser=None):
    """Train for up to ``n_epochs`` (default ``config.max_epochs``) epochs.

    Parameters
    ----------
    backend : a backend of ``aefast.engine.backends``; its network is updated
        in place.
    optimizer, state : Optimizer and its OptimizerState (updated in place).
    X : ndarray of shape (n_samples, n_features), validated, C-contiguous.
    train_idx, val_idx : int64 index arrays into X (val_idx may be None).
    config : TrainingConfig
    rng : numpy.random.Generator used for shuffling.
    history : History, appended to.
    before_epoch : callable or None
        Called with the number of epochs done so far before each epoch (a
        VAE's KL warm-up sets its weight there).
    thread_chooser : aefast.engine.threads.ThreadChooser or None
        Runs each compiled call under the thread setting (BLAS threads,
        data-parallel workers) it finds fastest (None: serial steps under
        the caller's BLAS setting).

    Raises
    ------
    TrainingDivergedError
        On a non-finite loss or gradient; the parameters stay at the last
        finite step and ``history`` is up to date.
    """
    network = backend.network
    grads = np.zeros_like(network.params)
    checkpoint = np.empty_like(network.params)  # reused: fresh pages per call cost page faults
    parts = 1 if thread_chooser is None else thread_chooser.parts
    repeat = int(config.repeat)
    n_train = train_idx.shape[0] * repeat
    batch_size = config.batch_size * repeat
    n_batches = -(-n_train // batch_size)
    per_call = backend.steps_per_call(batch_size)
    batch_losses = np.empty(per_call, dtype=np.float64)
    batch_rows = np.full(n_batches, batch_size, dtype=np.float64)
    batch_rows[-1] = n_train - batch_size * (n_batches - 1)
    epochs = config.max_epochs if n_epochs is None else n_epochs
    best_params = None
    no_improvement = 0
    regularization = getattr(backend, "regularization", None)
    try:
        for _ in range(epochs):
            tic = time.perf_counter()
            if regularization is not None:
                regularization.reset_fired()  # firing counts cover the last epoch
            if before_epoch is not None:
                before_epoch(history.n_epochs)
            order = rng.permutation(train_idx) if config.shuffle else train_idx
            if repeat > 1:
                order = np.repeat(order, repeat)
            epoch_loss = 0.0
            done = 0
            while done < n_batches:
                take = min(per_call, n_batches - done)
                start = done * batch_size
                stop = min(n_train, start + take * batch_size)
                # A finite gradient can still overflow the parameters in its update
                # (a huge learning rate); the next step then fails on its loss. This
                # copy (one per call of many steps) is what the model falls back to.
                np.copyto(checkpoint, network.params)
                def call(workers=1):
                    return backend.train_batches(
                        X, order, start, stop, batch_size, optimizer, state, grads,
                        config.weight_decay, config.weight_l1, batch_losses, workers=workers,
                        parts=parts)
                steps, status = call() if thread_chooser is None else thread_chooser.run(call)
                epoch_loss += float(batch_losses[:steps] @ batch_rows[done:done + steps])
                done += steps
                if status != 0:
                    what = "loss" if status == 1 else "gradient"
                    kept = "its last finite step"
                    if not np.all(np.isfinite(network.params)):
                        network.params[:] = checkpoint
                        kept = f"step {done - steps}, the last with finite values"
                    raise TrainingDivergedError(
                        f"training diverged: non-finite {what} at epoch "
                        f"{history.n_epochs + 1}, step {done + 1}; the model keeps the "
                        f"parameters of {kept}. Lower learning_rate, scale the data or "
                        "add weight_decay.")
            loss = epoch_loss / n_train
            history.loss_curve.append(loss)
            history.n_epochs += 1
            message = f"epoch {history.n_epochs}: loss {loss:.6g}"
            if val_idx is not None:
                score = -float(np.mean(backend.row_losses(X, val_idx)))
                history.validation_scores.append(score)
                message += f", validation score {score:.6g}"
                improved = score > history.best_validation_score + config.tol
                if score > history.best_validation_score:
                    history.best_validation_score = score
                    best_params = network.params.copy()
            else:
                improved = loss < history.best_loss - config.tol
            history.best_loss = min(history.best_loss, loss)
            if config.verbose:
                rate = n_train / max(time.perf_counter() - tic, 1e-12)
                log(f"{message}, {rate:,.0f} samples/s")
            no_improvement = 0 if improved else no_improvement + 1
            if no_improvement >= config.n_iter_no_change:
                if config.verbose:
                    log(f"stopping: no improvement over tol={config.tol} for "
                        f"{config.n_iter_no_change} epochs")
                break
    except KeyboardInterrupt:
        history.interrupted = True
        warnings.warn(
            f"training interrupted after {history.n_epochs} epochs; the model keeps the "
            "parameters of its last completed step", RuntimeWarning, stacklevel=3)
    if best_params is not None:
        network.params[:] = best_params
    return history
