"""Time of the row-wise top-k kernel ``aefast.ops.topk`` at small sizes.

float32 standard normal rows; k-sparse-autoencoder-like shapes (k << width) plus one k = width
case (a full sort per row, the heap path of ``src_ext/_topk.h``). ``setup`` builds the data and
makes one call, so the extension import and the OpenMP thread pool are warm and only the
selection is timed. The full-size side-by-side comparison with ``torch.topk`` and
``np.argpartition`` is ``benchmarks/compare/topk_vs_torch.py``.
"""

import numpy as np

from aefast.ops import topk

SHAPES = {
    "256x1000_k25": (256, 1000, 25),
    "256x4096_k32": (256, 4096, 32),
    "64x1000_k1000": (64, 1000, 1000),
}


class TopK:
    params = (list(SHAPES), ["float32", "float64"], [1, 2])
    param_names = ["shape", "dtype", "n_jobs"]

    def setup(self, shape, dtype, n_jobs):
        n_rows, n_cols, self.k = SHAPES[shape]
        rng = np.random.default_rng(0)
        self.X = rng.standard_normal((n_rows, n_cols)).astype(dtype)
        topk(self.X, self.k, n_jobs=n_jobs)  # warm-up, outside the timing

    def time_topk(self, shape, dtype, n_jobs):
        topk(self.X, self.k, n_jobs=n_jobs)
