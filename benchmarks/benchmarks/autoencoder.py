"""Training and inference time of ``aefast.Autoencoder`` on small versions of issue 2's cases.

S: 5,000 x 30 standard normal, 30-16-4-16-30 (ReLU, linear code), batch 64, MSE.
M: 5,000 x 784 uniform [0, 1] (Fashion-MNIST-shaped, so no download is needed),
   784-128-64-32 mirrored, batch 256, cross-entropy from logits.

Each benchmark trains 2 epochs from a fresh initialisation. ``setup`` builds the data and runs
one small fit first, so thread pools, lazy imports and any compiled-code caches are warm and
only steady-state training is timed. The full-size side-by-side comparison with PyTorch is
``benchmarks/compare/autoencoder_vs_torch.py``.
"""

import numpy as np

import aefast

N_ROWS = 5_000
N_EPOCHS = 2

CASES = {
    "S": dict(n_features=30, hidden_layers=(16,), n_components=4, batch_size=64, loss="mse",
              output_activation="identity"),
    "M": dict(n_features=784, hidden_layers=(128, 64), n_components=32, batch_size=256,
              loss="bce", output_activation="sigmoid"),
}


def make_data(case, n_rows=N_ROWS):
    rng = np.random.default_rng(0)
    n_features = CASES[case]["n_features"]
    if CASES[case]["loss"] == "mse":
        return rng.standard_normal((n_rows, n_features), dtype=np.float32)
    return rng.random((n_rows, n_features), dtype=np.float32)


def make_model(case, max_epochs=N_EPOCHS):
    spec = {k: v for k, v in CASES[case].items() if k != "n_features"}
    return aefast.Autoencoder(activation="relu", code_activation="identity", optimizer="adam",
                              learning_rate=1e-3, max_epochs=max_epochs, shuffle=True,
                              random_state=0, dtype="float32", **spec)


class AutoencoderFit:
    """``fit`` for 2 epochs on 5,000 rows, from a fresh model each time."""

    params = (["S", "M"],)
    param_names = ["case"]
    timeout = 300

    def setup(self, case):
        self.X = make_data(case)
        make_model(case, max_epochs=1).fit(self.X[:512])  # warm-up, outside the timing

    def time_fit(self, case):
        make_model(case).fit(self.X)

    def peakmem_fit(self, case):
        make_model(case).fit(self.X)

    def track_final_loss(self, case):
        """Training loss after 2 epochs: a change here means the maths changed, not the speed."""
        return float(make_model(case).fit(self.X).loss_curve_[-1])

    track_final_loss.unit = "loss"


class AutoencoderInference:
    """``transform`` and ``reconstruction_error`` of a trained model on 5,000 rows."""

    params = (["S", "M"],)
    param_names = ["case"]

    def setup(self, case):
        self.X = make_data(case)
        self.model = make_model(case, max_epochs=1).fit(self.X)
        self.model.transform(self.X[:16])  # warm-up

    def time_transform(self, case):
        self.model.transform(self.X)

    def time_reconstruction_error(self, case):
        self.model.reconstruction_error(self.X)
