"""The GEMM floor of a training epoch: the time its matrix products alone take in OpenBLAS.

A dense autoencoder's step is GEMMs plus elementwise work; no implementation that calls the
same sgemm can train an epoch faster than its GEMMs run. This script times, through NumPy's
OpenBLAS at a given thread count, every GEMM of one training step (forward ``H W``, weight
gradient ``H^T D`` and, except for the input layer, input gradient ``D W^T``) at the shapes
the model produces, and prints the step's FLOPs, the rate reached on each shape, and the
seconds per epoch that the GEMMs alone take. A large square sgemm is timed too, as the
machine's best case. Use it to tell whether a speed target is reachable with this BLAS
(issues 2 and 5), and compare the floor to the epoch times of ``vae_vs_torch.py`` and
``autoencoder_vs_torch.py``.

Run (the VAE of issue 5, Fashion-MNIST's 60,000 rows, batch 128, 2 threads)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare/sgemm_floor.py
    python benchmarks/compare/sgemm_floor.py --vae 0 --layers 784,1000,500,250,30,250,500,1000,784

``--layers`` gives the widths of a chain of dense layers. For a VAE (``--vae LATENT``, the
default 20) it is the encoder up to the stats layer (``2 * latent`` wide, default
``784,400,40``) and ``--decoder`` the decoder from the latent (default ``20,400,784``), whose
input gradient is counted because it flows back through the sampling. Also ``--batch``,
``--rows``, ``--threads``, ``--seconds`` (time per shape).
"""

import argparse
import os
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits


def step_gemms(widths, batch, first_input_grad=False):
    """(m, k, n) of each GEMM of one step of a chain of dense layers ``widths``."""
    shapes = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        shapes.append(("forward", batch, n_in, n_out))
        shapes.append(("weight grad", n_in, batch, n_out))
        if i > 0 or first_input_grad:
            shapes.append(("input grad", batch, n_out, n_in))
    return shapes


def rate(m, k, n, transposed_a, seconds):
    """Seconds per call and GF/s of an (m x k) @ (k x n) float32 product."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((k, m) if transposed_a else (m, k), dtype=np.float32)
    B = rng.standard_normal((k, n), dtype=np.float32)
    A = A.T if transposed_a else A
    out = np.empty((m, n), dtype=np.float32)
    np.matmul(A, B, out=out)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        np.matmul(A, B, out=out)
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    return per_call, 2.0 * m * k * n / per_call / 1e9


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", default="784,400,40",
                   help="widths of the (encoder) chain, comma-separated")
    p.add_argument("--vae", type=int, default=20,
                   help="latent size of a VAE (0: not a VAE); a VAE adds the --decoder chain")
    p.add_argument("--decoder", default="20,400,784")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rows", type=int, default=60_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=0.5)
    args = p.parse_args(argv)
    widths = [int(w) for w in args.layers.split(",")]
    shapes = step_gemms(widths, args.batch)
    if args.vae:
        dec = [int(w) for w in args.decoder.split(",")]
        # the decoder's input gradient (dL/dz) is needed: it goes back through the sampling
        shapes += step_gemms(dec, args.batch, first_input_grad=True)
    blas = [(i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()]
    print(f"BLAS {blas}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}; "
          f"threads {args.threads}; load {os.getloadavg()[0]:.2f}")
    steps = -(-args.rows // args.batch)
    with threadpool_limits(args.threads, user_api="blas"):
        _, best = rate(2000, 2000, 2000, False, args.seconds)
        print(f"  2000 x 2000 x 2000 sgemm: {best:6.1f} GF/s (the machine's best case)")
        total_s = total_flop = 0.0
        for name, m, k, n in shapes:
            per_call, gf = rate(m, k, n, name == "weight grad", args.seconds)
            total_s += per_call
            total_flop += 2.0 * m * k * n
            print(f"  {name:<12s} {m:5d} x {k:5d} x {n:5d}: {gf:6.1f} GF/s")
    print(f"one step: {total_flop / 1e6:.1f} MFLOP in {total_s * 1e3:.3f} ms "
          f"({total_flop / total_s / 1e9:.1f} GF/s)")
    print(f"epoch of {args.rows:,} rows ({steps} steps): GEMMs alone {steps * total_s:.3f} s; "
          f"at the 2000^3 rate {steps * total_flop / best / 1e9:.3f} s")


if __name__ == "__main__":
    main()
