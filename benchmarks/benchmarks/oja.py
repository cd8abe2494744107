"""One streaming pass of ``OjaPCA`` per method, and of ``HebbianNeuron``, at a small size.

20,000 x 256 float32 samples of a spiked covariance (k = 8 spikes over unit noise, non-zero
mean), chunks of 1,000, one pass. ``setup`` builds the data and runs one small fit per method
first, so the Numba kernels are compiled (or loaded from the cache) and BLAS pools are warm;
only the steady-state pass is timed. The full-size comparison with scikit-learn is
``benchmarks/compare/streaming_pca_vs_sklearn.py``.
"""

import numpy as np

from aefast.models.hebbian import HebbianNeuron
from aefast.models.oja import OjaPCA

N_ROWS, N_FEATURES, K = 20_000, 256, 8


def make_data(n_rows=N_ROWS, d=N_FEATURES, k=K):
    rng = np.random.default_rng(0)
    U = np.linalg.qr(rng.standard_normal((d, k)))[0]
    Z = rng.standard_normal((n_rows, k)) * np.sqrt(np.arange(2 * k, 0, -2))
    X = Z @ U.T + rng.standard_normal((n_rows, d)) + rng.uniform(-3, 3, d)
    return np.ascontiguousarray(X, dtype=np.float32)


def make_model(method):
    return OjaPCA(n_components=1 if method == "oja" else K, method=method, batch_size=1000,
                  random_state=0)


class OjaOnePass:
    """``OjaPCA.fit`` over 20,000 x 256 float32 in chunks of 1,000, one pass."""

    params = (["block", "gha", "subspace", "oja"],)
    param_names = ["method"]
    timeout = 120

    def setup(self, method):
        self.X = make_data()
        make_model(method).fit(self.X[:3000])  # JIT / BLAS warm-up, outside the timing

    def time_fit(self, method):
        make_model(method).fit(self.X)

    def peakmem_fit(self, method):
        make_model(method).fit(self.X)

    def track_largest_angle_to_exact_pca(self, method):
        from aefast.metrics import principal_angles

        est = make_model(method).fit(self.X)
        Xc = self.X.astype(np.float64) - self.X.mean(axis=0, dtype=np.float64)
        k = est.components_.shape[0]
        exact = np.linalg.eigh(Xc.T @ Xc)[1][:, ::-1][:, :k].T
        return float(principal_angles(est.components_, exact)[-1])

    track_largest_angle_to_exact_pca.unit = "rad"


class HebbOnePass:
    """``HebbianNeuron.fit``, one epoch over 20,000 x 256 float32."""

    timeout = 120

    def setup(self):
        self.X = make_data()
        HebbianNeuron(learning_rate=1e-4, random_state=0, dtype="float32").fit(self.X[:500])

    def time_fit(self):
        HebbianNeuron(learning_rate=1e-4, random_state=0, dtype="float32").fit(self.X)
