"""Train the same VAE in aefast and in PyTorch, side by side, and print the ratios (issue 5).

Model: 784-400-(20 mu, 20 log var)-400-784, ReLU, Bernoulli likelihood from logits, Adam lr
1e-3, batch 128, float32, Fashion-MNIST train / 255 (not binarized, as in most VAE code: the
pixel intensities are soft Bernoulli targets). Both frameworks start from the same weights
(aefast draws them, torch copies them) and use the same number of threads in one process.
The objective is the negative ELBO per sample (summed over pixels, averaged over the batch),
the analytic KL, one sample of z per input. Epochs alternate (one torch epoch, one aefast
``partial_fit`` epoch, ...) so that both see the same machine load.

Printed: seconds per epoch of each (median, best), the speed-up (torch / aefast, > 1 means
aefast is faster), the training loss per epoch, and after the last epoch the test-set
negative ELBO of both (mean over the 10,000 test images, 10 draws of z per image), then
aefast's importance-weighted ``log_likelihood`` with K samples on the test images and its
time. ``--check-nan-epochs N`` afterwards trains an aefast VAE for N epochs (50 for the
issue) and reports whether any loss was non-finite.

Run::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare/vae_vs_torch.py
    python benchmarks/compare/vae_vs_torch.py --epochs 3 --ll-samples 100 --ll-rows 1000

Options: ``--epochs N`` (10), ``--threads T`` (2), ``--ll-samples K`` (1000), ``--ll-rows R``
(all 10,000), ``--check-nan-epochs N`` (0: skip), ``--data PATH`` (Fashion-MNIST IDX folder).
Needs ``pip install ".[bench]"``.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

HIDDEN, LATENT, BATCH, LR = 400, 20, 128, 1e-3
TARGET_SPEEDUP = 2.0  # issue 5: aefast at least 2x faster per epoch
TORCH_REFERENCE = 1.9  # s/epoch of PyTorch measured for the issue, 2 cores


def build_torch(weights):
    import torch

    class TorchVAE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = torch.nn.Linear(784, HIDDEN)
            self.stats = torch.nn.Linear(HIDDEN, 2 * LATENT)
            self.dec = torch.nn.Linear(LATENT, HIDDEN)
            self.out = torch.nn.Linear(HIDDEN, 784)

        def forward(self, x):
            s = self.stats(torch.relu(self.enc(x)))
            mu, log_var = s[:, :LATENT], s[:, LATENT:].clamp(-20.0, 10.0)
            z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
            logits = self.out(torch.relu(self.dec(z)))
            rec = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, x, reduction="none").sum(dim=1)
            kl = 0.5 * (mu * mu + log_var.exp() - 1.0 - log_var).sum(dim=1)
            return rec, kl

    model = TorchVAE()
    with torch.no_grad():
        for layer, (W, b) in zip([model.enc, model.stats, model.dec, model.out], weights):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            layer.bias.copy_(torch.from_numpy(b))
    return model


class TorchTrainer:
    def __init__(self, model, X, seed=0):
        import torch

        self.torch = torch
        self.model = model
        self.X = torch.from_numpy(X)
        self.opt = torch.optim.Adam(model.parameters(), lr=LR)
        self.gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)

    def epoch(self):
        torch = self.torch
        order = torch.randperm(self.X.shape[0], generator=self.gen)
        total = 0.0
        for start in range(0, self.X.shape[0], BATCH):
            xb = self.X[order[start:start + BATCH]]
            rec, kl = self.model(xb)
            loss = (rec + kl).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += float(loss.detach()) * xb.shape[0]
        return total / self.X.shape[0]

    def test_neg_elbo(self, X, draws=10):
        torch = self.torch
        with torch.no_grad():
            x = torch.from_numpy(X)
            values = [sum(self.model(x)).mean().item() for _ in range(draws)]
        return float(np.mean(values))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ll-samples", type=int, default=1000)
    parser.add_argument("--ll-rows", type=int, default=None)
    parser.add_argument("--check-nan-epochs", type=int, default=0)
    parser.add_argument("--data", default=None)
    args = parser.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    import aefast
    from aefast.datasets import load_fashion_mnist

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    X, _ = load_fashion_mnist(args.data, kind="train")
    X_test, _ = load_fashion_mnist(args.data, kind="test")
    blas = [(i["internal_api"], i.get("architecture"), i["num_threads"])
            for i in threadpool_info() if i["user_api"] == "blas"]
    print(f"VAE 784-{HIDDEN}-({LATENT}+{LATENT})-{HIDDEN}-784, batch {BATCH}, Adam {LR}, "
          f"{X.shape[0]} train rows, {args.threads} threads; BLAS {blas}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}; torch {torch.__version__}")

    vae = aefast.VAE(hidden_layers=(HIDDEN,), n_components=LATENT, batch_size=BATCH,
                     learning_rate=LR, max_epochs=1, random_state=0)
    vae.partial_fit(X[:BATCH])  # initialises the weights (and warms up)
    init = [(W.copy(), b.copy()) for W, b in vae.get_weights()]
    vae = aefast.VAE(hidden_layers=(HIDDEN,), n_components=LATENT, batch_size=BATCH,
                     learning_rate=LR, max_epochs=1, random_state=0)
    vae.partial_fit(X[:BATCH])
    vae.set_weights(init)
    vae._reset_training_state(np.random.default_rng(1))  # fresh Adam state and history
    trainer = TorchTrainer(build_torch(init), X)

    t_torch, t_ae, l_torch, l_ae = [], [], [], []
    for epoch in range(args.epochs):
        tic = time.perf_counter()
        l_torch.append(trainer.epoch())
        t_torch.append(time.perf_counter() - tic)
        tic = time.perf_counter()
        vae.partial_fit(X)
        t_ae.append(time.perf_counter() - tic)
        l_ae.append(vae.loss_curve_[-1])
        print(f"  epoch {epoch + 1}: torch {t_torch[-1]:.3f} s loss {l_torch[-1]:.3f} | "
              f"aefast {t_ae[-1]:.3f} s loss {l_ae[-1]:.3f} | load {os.getloadavg()[0]:.2f}",
              flush=True)
    med_t, med_a = statistics.median(t_torch), statistics.median(t_ae)
    print(f"seconds/epoch  torch median {med_t:.3f} best {min(t_torch):.3f} | aefast median "
          f"{med_a:.3f} best {min(t_ae):.3f}")
    print(f"speed-up torch/aefast: median {med_t / med_a:.2f}x, best {min(t_torch) / min(t_ae):.2f}x"
          f" (target >= {TARGET_SPEEDUP}x; torch took {TORCH_REFERENCE} s/epoch for the issue)")

    neg_torch = trainer.test_neg_elbo(X_test)
    neg_ae = float(-np.mean(vae.elbo(X_test, n_samples=10, random_state=0)))
    print(f"test negative ELBO after {args.epochs} epochs: torch {neg_torch:.2f}, aefast "
          f"{neg_ae:.2f}, difference {neg_ae - neg_torch:+.2f} nats (target within 1)")

    rows = X_test if args.ll_rows is None else X_test[:args.ll_rows]
    tic = time.perf_counter()
    ll = vae.log_likelihood(rows, n_samples=args.ll_samples, random_state=0)
    took = time.perf_counter() - tic
    print(f"aefast log_likelihood K={args.ll_samples} on {rows.shape[0]} test images: mean "
          f"{ll.mean():.2f} nats ({took:.1f} s, {rows.shape[0] * args.ll_samples / took:,.0f} "
          "decoded samples/s)")

    if args.check_nan_epochs:
        tic = time.perf_counter()
        model = aefast.VAE(hidden_layers=(HIDDEN,), n_components=LATENT, batch_size=BATCH,
                           learning_rate=LR, max_epochs=args.check_nan_epochs, tol=0.0,
                           n_iter_no_change=args.check_nan_epochs, random_state=0)
        try:
            model.fit(X)
            finite = bool(np.all(np.isfinite(model.loss_curve_)))
            status = "no NaN" if finite else "NON-FINITE LOSS"
        except aefast.TrainingDivergedError as exc:
            status = f"DIVERGED: {exc}"
        print(f"{model.n_epochs_} epochs at lr {LR}: {status}; final loss "
              f"{model.loss_curve_[-1]:.3f}; {time.perf_counter() - tic:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
