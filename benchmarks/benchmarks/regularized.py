"""Training time of regularized ``aefast.Autoencoder`` fits at small sizes (issue 4).

TopK: 2,000 x 784 uniform [0, 1] rows, 784 -> 512 latents with k = 16 (k-sparse, one hidden
   layer of 512 code units directly on the input: ``hidden_layers=()``), batch 256, MSE.
Denoising: case M of ``autoencoder.py`` (784-128-64-32 mirrored, batch 256, cross-entropy from
   logits, uniform [0, 1] data) with ``MaskingNoise(0.3)``, on 2,000 rows.

Each benchmark trains 2 epochs from a fresh initialisation. ``setup`` builds the data and runs
one small fit first, so thread pools, lazy imports and any compiled-code caches are warm and
only steady-state training is timed. The full-size comparisons are
``benchmarks/compare/ksparse_vs_torch.py`` (TopK against PyTorch) and
``benchmarks/compare/regularizer_overhead.py`` (the cost of each penalty and corruption over
the plain autoencoder).
"""

import numpy as np

import aefast

N_ROWS = 2_000
N_FEATURES = 784
N_EPOCHS = 2


def make_data(n_rows=N_ROWS):
    return np.random.default_rng(0).random((n_rows, N_FEATURES), dtype=np.float32)


def make_model(case, max_epochs=N_EPOCHS):
    if case == "topk":
        spec = dict(hidden_layers=(), n_components=512, sparsity=aefast.TopK(16),
                    loss="mse", output_activation="identity")
    elif case == "denoising":
        spec = dict(hidden_layers=(128, 64), n_components=32, corruption=aefast.MaskingNoise(0.3),
                    loss="bce", output_activation="sigmoid")
    else:
        raise ValueError(case)
    return aefast.Autoencoder(activation="relu", code_activation="identity", optimizer="adam",
                              learning_rate=1e-3, batch_size=256, max_epochs=max_epochs,
                              shuffle=True, random_state=0, dtype="float32", **spec)


class RegularizedFit:
    """``fit`` for 2 epochs on 2,000 rows, from a fresh model each time."""

    params = (["topk", "denoising"],)
    param_names = ["case"]
    timeout = 300

    def setup(self, case):
        self.X = make_data()
        make_model(case, max_epochs=1).fit(self.X[:512])  # warm-up, outside the timing

    def time_fit(self, case):
        make_model(case).fit(self.X)

    def peakmem_fit(self, case):
        make_model(case).fit(self.X)

    def track_final_loss(self, case):
        """Training loss after 2 epochs: a change here means the maths changed, not the speed."""
        return float(make_model(case).fit(self.X).loss_curve_[-1])

    track_final_loss.unit = "loss"
