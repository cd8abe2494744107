"""aefast on a GPU (device="cuda") side by side with PyTorch CUDA eager, ratios printed.

Same device, one process, float32, the same initial weights (aefast draws them, torch copies
them), Adam (lr 1e-3), the same batch size and epochs. Printed per case: seconds per epoch of
each (median), the ratio torch / aefast (> 1: aefast faster), the last epoch's training loss,
and the issue's target.

Cases (issue 7)::

    S      100,000 x 30 standard normal   30-16-4-16-30, ReLU, linear code    batch  64  MSE
    M      Fashion-MNIST / 255            784-128-64-32 (mirrored)            batch 256  BCE
    L      Fashion-MNIST / 255            784-1000-500-250-30 (mirrored)      batch 256  BCE
    topk   Fashion-MNIST / 255            784 -> 4096, TopK(32) -> 784        batch 256  MSE
    vae    Fashion-MNIST / 255            aefast.VAE(hidden_layers=(400,), n_components=20)
           (only when aefast.VAE exists and accepts device="cuda")
    oja    Fashion-MNIST                  OjaPCA(16, method="block", device="cuda"), samples/s,
           against the same block update written in torch (chunks uploaded per chunk)

Targets: S >= 5x torch eager, L >= 0.8x, block Oja >= 10,000,000 samples/s.

When the Fashion-MNIST IDX files are missing (``--data``, default the Debian package's
folder), M, L, topk, vae and oja run on synthetic data of the same shape (uniform [0, 1],
reported as such): timings are comparable, losses are not. ``--compile`` also times
``torch.compile`` (skipped if it fails). Run::

    python benchmarks/compare/gpu_vs_torch.py --epochs 3
    python benchmarks/compare/gpu_vs_torch.py --cases S,topk --epochs 2 --rows 20000

Needs a CUDA GPU, ``pip install ".[gpu,bench]"`` (numba-cuda, CuPy, torch with CUDA).
"""
import argparse
import statistics
import sys
import time
import traceback

import numpy as np

TARGETS = {"S": 5.0, "M": None, "L": 0.8, "topk": None, "vae": None}
ARCH = {
    "S": dict(hidden=(16,), code=4, batch=64, loss="mse"),
    "M": dict(hidden=(128, 64), code=32, batch=256, loss="bce"),
    "L": dict(hidden=(1000, 500, 250), code=30, batch=256, loss="bce"),
}


# --------------------------------------------------------------------------- data


def fashion(args):
    """Fashion-MNIST train (or synthetic data of its shape), float32 in [0, 1]."""
    if "fashion" not in _DATA:
        try:
            from aefast.datasets import load_fashion_mnist

            X, _ = load_fashion_mnist(args.data, kind="train")
            _DATA["fashion"] = (np.ascontiguousarray(X, dtype=np.float32), "Fashion-MNIST")
        except Exception as exc:  # no data on this machine
            print(f"  (Fashion-MNIST not found: {exc}; using synthetic uniform data)")
            X = np.random.default_rng(0).uniform(0, 1, (60_000, 784)).astype(np.float32)
            _DATA["fashion"] = (X, "synthetic 60,000 x 784")
    X, name = _DATA["fashion"]
    return (X[:args.rows] if args.rows else X), name


_DATA = {}


def case_data(case, args):
    if case == "S":
        n = args.rows or 100_000
        return np.random.default_rng(0).standard_normal((n, 30), dtype=np.float32), "normal"
    return fashion(args)


# --------------------------------------------------------------------------- torch


def sync():
    import torch

    torch.cuda.synchronize()


def torch_model(sizes, acts, weights):
    import torch
    from torch import nn

    layers = []
    for (W, b), act in zip(weights, acts):
        lin = nn.Linear(*W.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            lin.bias.copy_(torch.from_numpy(np.asarray(b)))
        layers.append(lin)
        if act == "relu":
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).cuda()


def torch_epochs(step, X, batch, epochs, seed=0):
    """Seconds per epoch and mean loss of each epoch; the loss is read once per epoch."""
    import torch

    data = torch.from_numpy(X).cuda()
    gen = torch.Generator(device="cuda").manual_seed(seed)
    times, losses = [], []
    for _ in range(epochs):
        sync()
        tic = time.perf_counter()
        order = torch.randperm(data.shape[0], device="cuda", generator=gen)
        total = torch.zeros((), device="cuda")
        for start in range(0, data.shape[0], batch):
            xb = data[order[start:start + batch]]
            total += step(xb).detach() * xb.shape[0]
        value = float(total.item()) / data.shape[0]
        sync()
        times.append(time.perf_counter() - tic)
        losses.append(value)
    return times, losses


def torch_step(model, loss, compile_=False):
    import torch

    fn = torch.nn.MSELoss() if loss == "mse" else torch.nn.BCEWithLogitsLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    forward = torch.compile(model) if compile_ else model

    def step(xb):
        opt.zero_grad(set_to_none=True)
        value = fn(forward(xb), xb)
        value.backward()
        opt.step()
        return value

    return step


# --------------------------------------------------------------------------- aefast


def aefast_epochs(make, X, epochs):
    """Time ``fit(max_epochs=epochs)`` after a warm-up fit (JIT compilation) on 2 batches."""
    warm = make(1)
    warm.fit(X[:2 * warm.batch_size])
    model = make(epochs)
    tic = time.perf_counter()
    model.fit(X)
    per_epoch = (time.perf_counter() - tic) / epochs
    return [per_epoch] * epochs, [float(v) for v in model.loss_curve_], model


def initial_weights(make, X):
    """aefast's initialisation for random_state=0 (one SGD step at lr 1e-30 changes nothing)."""
    model = make(1).set_params(optimizer="sgd", learning_rate=1e-30, shuffle=False)
    model.fit(X[:model.batch_size])
    return model.get_weights()


def report(case, what, t_torch, l_torch, t_ae, l_ae, target=None, extra=""):
    tt, ta = statistics.median(t_torch), statistics.median(t_ae)
    ratio = tt / ta
    tgt = f" (target >= {target}x)" if target else ""
    print(f"  {what}: torch {tt:8.3f} s/epoch, aefast {ta:8.3f} s/epoch -> torch/aefast "
          f"{ratio:6.2f}x{tgt}{extra}")
    print(f"    last loss: torch {l_torch[-1]:.6f}, aefast {l_ae[-1]:.6f}")
    return dict(case=case, what=what, torch=tt, aefast=ta, ratio=ratio, target=target)


def run_dense(case, args):
    import aefast

    spec = ARCH[case]
    X, name = case_data(case, args)
    print(f"case {case}: {name} {X.shape}, hidden {spec['hidden']}, code {spec['code']}, "
          f"batch {spec['batch']}, {spec['loss']}")

    def make(epochs):
        return aefast.Autoencoder(
            hidden_layers=spec["hidden"], n_components=spec["code"], activation="relu",
            code_activation="identity",
            output_activation="identity" if spec["loss"] == "mse" else "sigmoid",
            loss=spec["loss"], learning_rate=1e-3, batch_size=spec["batch"],
            max_epochs=epochs, tol=0.0, n_iter_no_change=10**6, random_state=0,
            device="cuda")

    weights = initial_weights(make, X)
    acts = [a for a, _ in zip(["relu"] * len(spec["hidden"]) + ["identity"]
                              + ["relu"] * len(spec["hidden"]) + ["identity"], weights)]
    rows = []
    t_ae, l_ae, _ = aefast_epochs(make, X, args.epochs)
    model = torch_model(None, acts, weights)
    t_th, l_th = torch_epochs(torch_step(model, spec["loss"]), X, spec["batch"], args.epochs)
    rows.append(report(case, "eager", t_th, l_th, t_ae, l_ae, TARGETS[case]))
    if args.compile:
        try:
            model = torch_model(None, acts, weights)
            step = torch_step(model, spec["loss"], compile_=True)
            torch_epochs(step, X[:spec["batch"] * 4], spec["batch"], 1)  # compile
            t_c, l_c = torch_epochs(step, X, spec["batch"], args.epochs)
            rows.append(report(case, "torch.compile", t_c, l_c, t_ae, l_ae))
        except Exception as exc:
            print(f"  torch.compile failed: {type(exc).__name__}: {exc}")
    return rows


def run_topk(args):
    import torch

    import aefast

    X, name = fashion(args)
    latents, k, batch = 4096, 32, 256
    print(f"case topk: {name} {X.shape}, 784 -> {latents} TopK({k}) -> 784, batch {batch}, MSE")

    def make(epochs):
        return aefast.Autoencoder(hidden_layers=(), n_components=latents,
                                  code_activation="identity", loss="mse",
                                  sparsity=aefast.TopK(k), learning_rate=1e-3, batch_size=batch,
                                  max_epochs=epochs, tol=0.0, n_iter_no_change=10**6,
                                  random_state=0, device="cuda")

    (W1, b1), (W2, b2) = initial_weights(make, X)
    t_ae, l_ae, _ = aefast_epochs(make, X, args.epochs)
    enc = torch.nn.Linear(*W1.shape).cuda()
    dec = torch.nn.Linear(*W2.shape).cuda()
    with torch.no_grad():
        for lin, W, b in ((enc, W1, b1), (dec, W2, b2)):
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            lin.bias.copy_(torch.from_numpy(b))
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)

    def step(xb):
        z = enc(xb)
        values, index = torch.topk(z, k, dim=1)
        code = torch.zeros_like(z).scatter(1, index, values)
        value = torch.nn.functional.mse_loss(dec(code), xb)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        return value

    t_th, l_th = torch_epochs(step, X, batch, args.epochs)
    return [report("topk", "eager", t_th, l_th, t_ae, l_ae, TARGETS["topk"])]


def run_vae(args):
    import aefast

    try:
        VAE = aefast.VAE
    except AttributeError:
        print("case vae: skipped (aefast.VAE does not exist in this build)")
        return []
    X, name = fashion(args)
    print(f"case vae: {name} {X.shape}, VAE(hidden_layers=(400,), n_components=20), batch 128")

    def make(epochs):
        return VAE(hidden_layers=(400,), n_components=20, batch_size=128, max_epochs=epochs,
                   random_state=0, device="cuda")

    try:
        t_ae, l_ae, model = aefast_epochs(make, X, args.epochs)
    except Exception as exc:
        print(f"  skipped: aefast.VAE(device='cuda') failed: {type(exc).__name__}: {exc}")
        return []
    import torch
    from torch import nn

    enc = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 40)).cuda()
    dec = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784)).cuda()
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)

    def step(xb):
        h = enc(xb)
        mu, lv = h[:, :20], h[:, 20:].clamp(-20, 10)
        z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
        rec = nn.functional.binary_cross_entropy_with_logits(dec(z), xb, reduction="sum")
        kl = -0.5 * torch.sum(1 + lv - mu ** 2 - lv.exp())
        value = (rec + kl) / xb.shape[0]
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        return value

    t_th, l_th = torch_epochs(step, X, 128, args.epochs)
    return [report("vae", "eager (own init)", t_th, l_th, t_ae, l_ae)]


def run_oja(args):
    import torch

    import aefast

    X, name = fashion(args)
    X = np.ascontiguousarray(X * 255 if name.startswith("Fashion") else X, dtype=np.float32)
    k, chunk = 16, args.oja_chunk
    print(f"case oja: {name} {X.shape}, OjaPCA({k}, method='block', batch_size={chunk})")
    aefast.OjaPCA(k, method="block", batch_size=chunk, device="cuda",
                  random_state=0).fit(X[:3 * chunk])  # warm-up (JIT)
    best = np.inf
    for _ in range(args.repeat):
        tic = time.perf_counter()
        pca = aefast.OjaPCA(k, method="block", batch_size=chunk, device="cuda",
                            random_state=0).fit(X)
        best = min(best, time.perf_counter() - tic)
    rate = X.shape[0] / best

    def torch_block(W):
        mean = torch.zeros(X.shape[1], device="cuda")
        n = 0
        for start in range(0, X.shape[0], chunk):
            xb = torch.from_numpy(X[start:start + chunk]).cuda()
            b = xb.shape[0]
            mean = (mean * n + xb.sum(0)) / (n + b)
            n += b
            eta = 1.0 / (1.0 + n)
            Z = xb @ W.T - mean @ W.T
            G = W.T + eta * (xb.T @ Z - torch.outer(mean, Z.sum(0)))
            W = torch.linalg.qr(G)[0].T.contiguous()
        sync()
        return W

    W0 = torch.linalg.qr(torch.randn(X.shape[1], k, device="cuda"))[0].T.contiguous()
    torch_block(W0)
    best_t = np.inf
    for _ in range(args.repeat):
        sync()
        tic = time.perf_counter()
        torch_block(W0)
        best_t = min(best_t, time.perf_counter() - tic)
    rate_t = X.shape[0] / best_t
    print(f"  aefast {rate:,.0f} samples/s (target >= 10,000,000), torch block update "
          f"{rate_t:,.0f} samples/s -> aefast/torch {rate / rate_t:.2f}x; "
          f"explained variance ratio {float(pca.explained_variance_ratio_.sum()):.4f}")
    return [dict(case="oja", what="samples/s", torch=rate_t, aefast=rate, ratio=rate / rate_t,
                 target=None)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="S,M,L,topk,vae,oja")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=None, help="use the first ROWS rows")
    parser.add_argument("--data", default=None, help="Fashion-MNIST IDX folder")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--oja-chunk", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    import aefast
    from aefast._kernels import cuda as K

    if not torch.cuda.is_available():
        sys.exit("torch sees no CUDA device: this benchmark needs a GPU")
    print(f"python {sys.version.split()[0]}  torch {torch.__version__}  aefast "
          f"{aefast.__version__}  GPU {torch.cuda.get_device_name()}  "
          f"GEMMs: {'cuBLAS (CuPy)' if K.cupy_module() is not None else 'numba tiled kernel'}")
    rows = []
    for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
        try:
            if case in ARCH:
                rows += run_dense(case, args)
            elif case == "topk":
                rows += run_topk(args)
            elif case == "vae":
                rows += run_vae(args)
            elif case == "oja":
                rows += run_oja(args)
            else:
                print(f"unknown case {case!r}")
        except Exception:
            print(f"case {case} FAILED:")
            traceback.print_exc()
        print(flush=True)
    print("summary (torch / aefast, > 1: aefast faster; oja: samples/s ratio aefast / torch):")
    for r in rows:
        tgt = f"target >= {r['target']}x" if r["target"] else ""
        print(f"  {r['case']:5s} {r['what']:16s} {r['ratio']:7.2f}x  {tgt}")


if __name__ == "__main__":
    main()
