"""k-sparse (TopK) autoencoder in aefast and in PyTorch, side by side in one process.

The model of issue 4: 784 -> 4096 latents, keep the k = 32 largest per sample,
decode back to 784; MSE loss, Adam (lr 1e-3), batch 256, float32, on
Fashion-MNIST train scaled to [0, 1]. Both start from the same weights (aefast
draws them, torch copies them) and see the same epochs; PyTorch runs the usual
``torch.topk`` + scatter + dense decode. Printed: seconds per epoch of each,
the ratio (torch / aefast, > 1 means aefast is faster), and each epoch's loss.

Run (2 threads each)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare/ksparse_vs_torch.py
    python benchmarks/compare/ksparse_vs_torch.py --epochs 2 --rows 20000

Needs ``pip install ".[bench]"`` and Fashion-MNIST (Debian's
``dataset-fashion-mnist``, or ``--data PATH``).
"""
import argparse
import os
import time

import numpy as np


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=None, help="use the first ROWS images")
    parser.add_argument("--latents", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=None, help="folder of the Fashion-MNIST IDX files")
    return parser.parse_args()


def run_aefast(X, args):
    import aefast

    ae = aefast.Autoencoder(hidden_layers=(), n_components=args.latents,
                            code_activation="identity", loss="mse",
                            sparsity=aefast.TopK(args.k), batch_size=args.batch,
                            max_epochs=1, shuffle=False, learning_rate=1e-3, tol=0,
                            n_iter_no_change=10**6, random_state=0)
    ae.partial_fit(X[: args.batch])  # builds the model; its weights seed both runs
    weights = ae.get_weights()
    fresh = aefast.Autoencoder(**ae.get_params(deep=False)).partial_fit(X[: args.batch])
    fresh.set_weights(weights)
    fresh._optimizer_state.state1[:] = 0
    fresh._optimizer_state.state2[:] = 0
    fresh._optimizer_state.t = 0
    times, losses = [], []
    for _ in range(args.epochs):
        tic = time.perf_counter()
        fresh.partial_fit(X)
        times.append(time.perf_counter() - tic)
        losses.append(fresh.loss_curve_[-1])
    return weights, times, losses


def run_torch(X, weights, args):
    import torch

    torch.set_num_threads(args.threads)
    (W1, b1), (W2, b2) = weights
    enc = torch.nn.Linear(*W1.shape)
    dec = torch.nn.Linear(*W2.shape)
    with torch.no_grad():
        enc.weight.copy_(torch.from_numpy(np.ascontiguousarray(W1.T)))
        enc.bias.copy_(torch.from_numpy(b1))
        dec.weight.copy_(torch.from_numpy(np.ascontiguousarray(W2.T)))
        dec.bias.copy_(torch.from_numpy(b2))
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    data = torch.from_numpy(X)
    times, losses = [], []
    for _ in range(args.epochs):
        tic = time.perf_counter()
        total = 0.0
        for start in range(0, len(X), args.batch):
            xb = data[start:start + args.batch]
            z = enc(xb)
            values, index = torch.topk(z, args.k, dim=1)
            code = torch.zeros_like(z).scatter(1, index, values)
            loss = torch.nn.functional.mse_loss(dec(code), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        times.append(time.perf_counter() - tic)
        losses.append(total / len(X))
    return times, losses


def main():
    args = parse_args()
    from threadpoolctl import threadpool_info

    from aefast.datasets import load_fashion_mnist

    X, _ = load_fashion_mnist(args.data, kind="train")
    if args.rows:
        X = X[: args.rows]
    X = np.ascontiguousarray(X, dtype=np.float32)
    blas = [(i["internal_api"], i.get("architecture"), i["num_threads"])
            for i in threadpool_info() if i["user_api"] == "blas"]
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')!r}, BLAS: {blas}")
    print(f"TopK autoencoder 784 -> {args.latents} (k={args.k}) -> 784, batch {args.batch}, "
          f"{len(X)} rows, {args.epochs} epochs, MSE, Adam 1e-3")
    weights, t_ae, l_ae = run_aefast(X, args)
    t_th, l_th = run_torch(X, weights, args)
    for epoch, (ta, tt, la, lt) in enumerate(zip(t_ae, t_th, l_ae, l_th), start=1):
        print(f"  epoch {epoch}: aefast {ta:6.2f} s (loss {la:.5f})   "
              f"torch {tt:6.2f} s (loss {lt:.5f})")
    ta, tt = np.median(t_ae), np.median(t_th)
    print(f"median s/epoch: aefast {ta:.2f}, torch {tt:.2f}, ratio torch/aefast {tt / ta:.2f}x "
          f"(target >= 3x)")


if __name__ == "__main__":
    main()
