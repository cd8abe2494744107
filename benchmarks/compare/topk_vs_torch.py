"""Row-wise top-k: ``aefast.ops.topk`` vs ``torch.topk`` vs ``np.argpartition`` + sort.

All three run side by side in one process on the same float32 C-contiguous matrix and must
return the same sorted values per row (checked before timing). Each is timed best-of-N (the
machine is shared and noisy: the minimum is the least disturbed run). Printed per shape: ms of
each, and the speed-ups of aefast (other time / aefast time, > 1 means aefast is faster)
against the targets of issue 4 (>= 5x torch.topk, >= 3x argpartition).

    torch.topk(X, k, dim=1)                    largest, sorted; torch.set_num_threads(T)
    np.argpartition + take_along_axis + argsort  NumPy's usual recipe (single-threaded)
    aefast.ops.topk(X, k, n_jobs=T)            includes the input validation and NaN/inf check

Shapes (issue 4): 256 x 4096 k=32, 4096 x 16384 k=32, 256 x 1000 k=25; float32 standard normal.

Run::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare/topk_vs_torch.py
    python benchmarks/compare/topk_vs_torch.py --threads 1 --repeat 50

Options: ``--threads T`` (default 2), ``--repeat N`` (timed runs per small shape; the large
shape gets N // 5, at least 5).
"""

import argparse
import time

import numpy as np

SHAPES = [(256, 4096, 32), (4096, 16384, 32), (256, 1000, 25)]
TARGET_TORCH = 5.0
TARGET_ARGPARTITION = 3.0
# ms measured for the issue on this machine, 2 threads: torch.topk, argpartition + sort
ISSUE_MS = {(256, 4096, 32): (3.7, 4.3), (4096, 16384, 32): (156, 304), (256, 1000, 25): (8.7, 1.3)}


def argpartition_topk(X, k):
    """The NumPy recipe: partition, gather, sort the k winners descending."""
    n = X.shape[1]
    idx = np.argpartition(X, n - k, axis=1)[:, n - k:]
    vals = np.take_along_axis(X, idx, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(idx, order, axis=1)


def best_ms(fn, repeat):
    fn()  # warm-up: thread pools, page faults of the outputs
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)

    import torch

    from aefast.ops import topk

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"row-wise top-k, float32, {args.threads} thread(s), best of {args.repeat} "
          f"(large shape: {max(args.repeat // 5, 5)}); torch {torch.__version__}, "
          f"numpy {np.__version__}")
    header = (f"{'shape':>18} {'k':>3} | {'aefast':>8} {'torch':>8} {'argpart':>8} ms | "
              f"{'torch/ae':>8} {'argp/ae':>8} | targets >= {TARGET_TORCH:g}x, "
              f">= {TARGET_ARGPARTITION:g}x")
    print(header)
    print("-" * len(header))
    all_met = True
    for n_rows, n_cols, k in SHAPES:
        X = rng.standard_normal((n_rows, n_cols), dtype=np.float32)
        Xt = torch.from_numpy(X)
        v_ae, i_ae = topk(X, k, n_jobs=args.threads)
        v_t, _ = torch.topk(Xt, k, dim=1)
        v_np, _ = argpartition_topk(X, k)
        assert np.array_equal(v_ae, v_t.numpy()) and np.array_equal(v_ae, v_np), "results differ"
        assert np.array_equal(np.take_along_axis(X, i_ae, axis=1), v_ae)
        repeat = args.repeat if n_rows * n_cols < 10**7 else max(args.repeat // 5, 5)
        t_ae = best_ms(lambda: topk(X, k, n_jobs=args.threads), repeat)
        t_torch = best_ms(lambda: torch.topk(Xt, k, dim=1), repeat)
        t_np = best_ms(lambda: argpartition_topk(X, k), repeat)
        r_torch, r_np = t_torch / t_ae, t_np / t_ae
        met = r_torch >= TARGET_TORCH and r_np >= TARGET_ARGPARTITION
        all_met &= met
        print(f"{f'{n_rows} x {n_cols}':>18} {k:>3} | {t_ae:8.3f} {t_torch:8.3f} {t_np:8.3f}    | "
              f"{r_torch:7.1f}x {r_np:7.1f}x | {'met' if met else 'NOT MET'}")
    print("issue's reference ms (torch, argpartition):",
          ", ".join(f"{r}x{c} k={k}: {ISSUE_MS[(r, c, k)]}" for r, c, k in SHAPES))
    print("all targets met" if all_met else "some targets NOT met")


if __name__ == "__main__":
    main()
