"""Time of one ``aefast.VAE`` epoch and of its importance-weighted ``log_likelihood``.

Small versions of issue 5's benchmark: 3,000 uniform [0, 1] rows of 784 features
(Fashion-MNIST-shaped, so no download is needed), 784-400-(20+20)-400-784, batch 128. ``setup``
runs a small fit first so that only steady-state work is timed. The full-size comparison
with PyTorch is ``benchmarks/compare/vae_vs_torch.py``.
"""

import numpy as np

import aefast


def make_data(n_rows=3_000):
    return np.random.default_rng(0).random((n_rows, 784), dtype=np.float32)


def make_model(max_epochs=1):
    return aefast.VAE(hidden_layers=(400,), n_components=20, batch_size=128,
                      max_epochs=max_epochs, random_state=0)


class VAEFit:
    """One epoch of ``fit`` on 3,000 rows from a fresh model."""

    timeout = 300

    def setup(self):
        self.X = make_data()
        make_model().fit(self.X[:256])

    def time_fit_one_epoch(self):
        make_model().fit(self.X)


class VAELogLikelihood:
    """``log_likelihood`` of 100 rows with K = 100 importance samples (10,000 decodes)."""

    timeout = 300

    def setup(self):
        X = make_data()
        self.model = make_model().fit(X)
        self.rows = X[:100]

    def time_log_likelihood(self):
        self.model.log_likelihood(self.rows, n_samples=100, random_state=0)
