"""Anomaly detection with aefast and with PyOD's ``AutoEncoder``, side by side (issue 6).

Both detectors run in one process, with the same number of threads, on the same data:

- PyOD: ``pyod.models.auto_encoder.AutoEncoder`` with its defaults (only ``verbose=0`` to
  silence the progress bar, and ``contamination`` set to the data's).
- aefast: ``aefast.AnomalyDetector(aefast.Autoencoder(...), standardize=True)`` configured
  like PyOD's defaults (pyod 3.x, read from ``pyod/models/auto_encoder.py`` and
  ``base_dl.py``):

  - layers d-64-32-64-d (``hidden_neuron_list=[64, 32]``): ``hidden_layers=(64,)``,
    ``n_components=32``;
  - ReLU after every hidden block, the 32-unit code included, linear output:
    ``activation="relu"``, ``code_activation="relu"``, ``output_activation="identity"``;
  - MSE loss (``criterion_name="mse"``): ``loss="mse"``;
  - Adam, lr 1e-3, ``optimizer_params={"weight_decay": 1e-5}`` (L2 added to the gradient):
    ``optimizer="adam"``, ``learning_rate=1e-3``, ``weight_decay=1e-5``;
  - 10 epochs of shuffled batches of 32 (``drop_last=True``): ``max_epochs=10``,
    ``batch_size=32``;
  - ``preprocessing=True``, per-feature ``(x - mean) / (std + 1e-8)`` with training statistics:
    ``standardize=True`` (scikit-learn's StandardScaler);
  - score: Euclidean norm of the residual in standardized space; aefast's per-sample mean
    squared error ranks samples identically;
  - ``random_state=42``: ``random_state=42``.

  What aefast does not have and PyOD's default network does: ``BatchNorm1d`` after each
  hidden linear layer and dropout 0.2 after each hidden activation (``batch_norm=True``,
  ``dropout_rate=0.2``). PyOD applies weight decay to all parameters (biases and batch-norm
  too), aefast to weights only. PyOD standardizes a zero-variance feature by 1e-8 (a test
  value off the training constant becomes huge); scikit-learn's StandardScaler leaves it
  unscaled. Everything else matches.

Part 1: ``pyod.utils.data.generate_data(n_train=20000, n_test=5000, n_features=30,
contamination=0.05)``. Printed: fit time of each (``fit`` includes scoring the training data,
in both libraries), the speed-up (PyOD time / aefast time; target >= 10x, the issue measured
PyOD at about 6.8 s for its 10 default epochs), the time to score the test set and the test
AUROC (target: aefast at least PyOD's).

Part 2: the Fashion-MNIST one-class protocol. For each class, both detectors train on that
class's 6,000 training images (pixels / 255) and score the whole 10,000-image test set; the
AUROC takes the class as normal and the other nine as anomalies. The classes alternate between
the libraries so that both see the same machine load. Printed per class: fit times, speed-up,
AUROCs and the number of zero-variance pixels of that class (see above); then the mean AUROC of
each and the total fit time.

Both detectors are warmed up on a small slice first (thread pools, lazy imports, PyOD's numba
kernel for the scores), so the figures are steady-state fit times.

Ratios matter here, not absolute times. On a shared machine, other processes on the cores
hurt both libraries' thread pools; the script prints the load average and warns when it
exceeds the thread count. Torch's OpenMP pool (libgomp) suffers most: with its default
active waiting, threads spin between parallel regions, and when another process holds a core
PyOD's loop of tiny batch-32 steps ran 20-30x slower with 2 threads than with 1 (80 ms instead
of 3 ms per step, load average ~4 on 2 cores). That would inflate aefast's speed-up, so unless
``OMP_WAIT_POLICY`` is already set, the script sets it to ``PASSIVE`` before torch loads
(aefast's code used here does not use OpenMP; its BLAS is OpenBLAS with pthreads). Use
``--omp-wait-policy active`` for torch's default behaviour. OpenBLAS's pthreads pool has the
same weakness: at 784 features the batch-32 GEMMs of part 2 are large enough for OpenBLAS to
split over 2 threads, and with another process on a core aefast's fits varied 30-fold (0.8 s to
25 s per class); ``--threads 1`` gives the single-core comparison, stable under load. Run::

    python benchmarks/compare/anomaly_vs_pyod.py                          # parts 1 and 2
    python benchmarks/compare/anomaly_vs_pyod.py --part 1
    python benchmarks/compare/anomaly_vs_pyod.py --part 2 --classes 0,1,2 --epochs 3
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare/anomaly_vs_pyod.py

Options: ``--part 1|2|all`` (default all), ``--epochs N`` (default 10, PyOD's default; used by
both libraries in both parts), ``--classes 0,1,...`` (default all ten), ``--threads T``
(default 2; torch threads and BLAS threads through threadpoolctl), ``--repeats R`` (part 1:
timed fits of each library, median reported; default 1), ``--seed S`` (generate_data's and both
detectors' seed; default 42), ``--data PATH`` (a folder with the Fashion-MNIST IDX files;
default ``/usr/share/datasets/fashion-mnist`` from the Debian package
``dataset-fashion-mnist``), ``--omp-wait-policy passive|active|inherit`` (default passive
unless ``OMP_WAIT_POLICY`` is set; inherit leaves the environment alone). Needs
``pip install ".[bench]"`` (pyod 3.x, torch CPU, threadpoolctl) and ``tqdm``, which PyOD's
deep detectors import but pyod does not require.

PyOD's default network is overcomplete on 30 features (a 32-unit code); aefast warns about that
(``UserWarning: n_components=32 > n_features=30``); the script silences that one warning.
"""

import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np

SPEED_TARGET = 10.0  # issue 6: aefast at least this many times faster than PyOD in part 1
PYOD_REFERENCE_S = 6.8  # PyOD fit time in part 1 on the machine (10 epochs, 2 cores)
PYOD_HIDDEN = (64, 32)  # PyOD's hidden_neuron_list default
PYOD_LR, PYOD_BATCH, PYOD_EPOCHS, PYOD_WEIGHT_DECAY = 1e-3, 32, 10, 1e-5


# --------------------------------------------------------------------------- detectors


def make_pyod(contamination, epochs, seed):
    """PyOD's AutoEncoder with its defaults (silent; epochs only changed by --epochs)."""
    from pyod.models.auto_encoder import AutoEncoder

    return AutoEncoder(contamination=contamination, epoch_num=epochs, random_state=seed,
                       verbose=0)


def make_aefast(contamination, epochs, seed):
    """An aefast AnomalyDetector configured like PyOD's AutoEncoder defaults."""
    import aefast

    estimator = aefast.Autoencoder(
        hidden_layers=PYOD_HIDDEN[:-1],
        n_components=PYOD_HIDDEN[-1],
        activation="relu",
        code_activation="relu",  # PyOD's last encoder block is Linear-BN-ReLU-Dropout
        output_activation="identity",
        loss="mse",
        optimizer="adam",
        learning_rate=PYOD_LR,
        weight_decay=PYOD_WEIGHT_DECAY,
        batch_size=PYOD_BATCH,
        max_epochs=epochs,
        shuffle=True,
        early_stopping=False,
        dtype="float32",
    )
    return aefast.AnomalyDetector(estimator, contamination=contamination, standardize=True,
                                  random_state=seed)


def check_pyod_defaults():
    """Fail loudly if the installed PyOD's defaults differ from those matched here."""
    import inspect

    from pyod.models.auto_encoder import AutoEncoder

    p = {k: v.default for k, v in inspect.signature(AutoEncoder.__init__).parameters.items()}
    expected = dict(preprocessing=True, lr=PYOD_LR, epoch_num=PYOD_EPOCHS, batch_size=PYOD_BATCH,
                    optimizer_name="adam", optimizer_params={"weight_decay": PYOD_WEIGHT_DECAY},
                    hidden_neuron_list=list(PYOD_HIDDEN), hidden_activation_name="relu",
                    random_state=42)
    wrong = {k: p.get(k) for k, v in expected.items() if p.get(k) != v}
    if wrong:
        raise SystemExit(f"PyOD's AutoEncoder defaults differ from those this script matches: "
                         f"{wrong}; update make_aefast")
    return p


def outlier_scores(detector, X):
    """Higher = more abnormal, for either library."""
    import aefast

    if isinstance(detector, aefast.AnomalyDetector):
        return -detector.score_samples(X)  # aefast: minus the normality score
    return detector.decision_function(X)  # PyOD


def timed_fit(detector, X):
    t0 = time.perf_counter()
    detector.fit(X)
    return time.perf_counter() - t0


def timed_scores(detector, X):
    t0 = time.perf_counter()
    s = outlier_scores(detector, X)
    return time.perf_counter() - t0, s


def warm_up(X, seed):
    """Fit both on a small slice: thread pools, lazy imports, PyOD's numba score kernel."""
    Xs = np.ascontiguousarray(X[:512])
    for make in (make_pyod, make_aefast):
        det = make(0.1, 1, seed)
        det.fit(Xs)
        outlier_scores(det, Xs)


# --------------------------------------------------------------------------- report


def blas_info():
    from threadpoolctl import threadpool_info

    lines = [
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '<unset>')}  "
        f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '<unset>')}  "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '<unset>')}  "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '<unset>')}"
    ]
    for lib in threadpool_info():
        lines.append(
            f"  {lib['internal_api']:9s} {lib['prefix']:22s} version={lib.get('version')} "
            f"coretype={lib.get('architecture', '-')} threads={lib['num_threads']} "
            f"file={os.sep.join(lib['filepath'].split(os.sep)[-2:])}"
        )
    return "\n".join(lines)


def load_line():
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def warn_load(threads):
    load = os.getloadavg()[0]
    if load > threads + 0.5:
        print(f"  warning: load average {load:.2f} on {os.cpu_count()} CPUs: other processes share "
              "the cores, so these times (PyOD's torch above all) are unreliable; rerun when idle")


# --------------------------------------------------------------------------- part 1


def part1(args):
    from pyod.utils.data import generate_data
    from sklearn.metrics import roc_auc_score

    X_train, X_test, y_train, y_test = generate_data(
        n_train=20000, n_test=5000, n_features=30, contamination=0.05, random_state=args.seed)
    print(f"part 1: generate_data(n_train=20000, n_test=5000, n_features=30, contamination=0.05, "
          f"random_state={args.seed}): X_train {X_train.shape} {X_train.dtype}, "
          f"{int(y_train.sum())} train / {int(y_test.sum())} test outliers; {args.epochs} epochs; "
          f"{load_line()}")
    warm_up(X_train, args.seed)

    fits = {"pyod": [], "aefast": []}
    last = {}
    for _ in range(args.repeats):  # alternate, so that both see the same load
        for name, make in (("pyod", make_pyod), ("aefast", make_aefast)):
            det = make(0.05, args.epochs, args.seed)
            fits[name].append(timed_fit(det, X_train))
            last[name] = det
    rows = {}
    for name, det in last.items():
        t_score, scores = timed_scores(det, X_test)
        train_auc = roc_auc_score(y_train, det.decision_scores_)
        test_auc = roc_auc_score(y_test, scores)
        pred = det.predict(X_test)
        flagged = float(np.mean(pred == (1 if name == "pyod" else -1)))
        rows[name] = dict(fit=statistics.median(fits[name]), fits=fits[name], score=t_score,
                          train_auc=train_auc, test_auc=test_auc, flagged=flagged)
        print(f"  {name:6s}: fit {rows[name]['fit']:7.3f} s (runs: "
              f"{', '.join(f'{t:.3f}' for t in fits[name])}), score test {t_score:.3f} s, "
              f"AUROC train {train_auc:.4f} test {test_auc:.4f}, "
              f"test flagged {flagged:.1%}")
    ratio = rows["pyod"]["fit"] / rows["aefast"]["fit"]
    print(f"  speed-up PyOD/aefast (fit): {ratio:.1f}x (target >= {SPEED_TARGET:.0f}x; the issue's "
          f"PyOD reference {PYOD_REFERENCE_S} s for 10 epochs); scoring the test set: "
          f"{rows['pyod']['score'] / rows['aefast']['score']:.1f}x")
    diff = rows["aefast"]["test_auc"] - rows["pyod"]["test_auc"]
    print(f"  test AUROC aefast - PyOD: {diff:+.4f} (target >= 0: "
          f"{'met' if diff >= 0 else 'NOT met'})")
    print(f"  {load_line()}")
    warn_load(args.threads)
    return dict(ratio=ratio, **{f"{k}_{n}": v for n, r in rows.items() for k, v in r.items()})


# --------------------------------------------------------------------------- part 2


def part2(args):
    from sklearn.metrics import roc_auc_score

    from aefast.datasets import load_fashion_mnist

    X_tr, y_tr = load_fashion_mnist(args.data, kind="train")
    X_te, y_te = load_fashion_mnist(args.data, kind="test")
    print(f"part 2: Fashion-MNIST one-class, train {X_tr.shape} / test {X_te.shape} (pixels / "
          f"255, float32), classes {','.join(map(str, args.classes))}, {args.epochs} epochs; "
          f"{load_line()}")
    warm_up(X_tr, args.seed)

    print(f"  {'class':>5s} {'n':>5s} {'const px':>8s} {'PyOD fit':>9s} {'aefast fit':>10s} "
          f"{'speed-up':>8s} {'PyOD AUROC':>10s} {'aefast AUROC':>12s} {'load':>5s}")
    rows = []
    for c in args.classes:
        Xc = np.ascontiguousarray(X_tr[y_tr == c])
        anomalous = (y_te != c).astype(np.int64)
        n_const = int(np.sum(Xc.std(axis=0) == 0))
        row = dict(cls=c, n=Xc.shape[0], const=n_const)
        for name, make in (("pyod", make_pyod), ("aefast", make_aefast)):
            # contamination only sets the threshold, which the AUROC ignores; PyOD's default
            det = make(0.1, args.epochs, args.seed)
            row[f"{name}_fit"] = timed_fit(det, Xc)
            row[f"{name}_score"], scores = timed_scores(det, X_te)
            row[f"{name}_auc"] = roc_auc_score(anomalous, scores)
        rows.append(row)
        print(f"  {c:5d} {row['n']:5d} {n_const:8d} {row['pyod_fit']:8.2f}s "
              f"{row['aefast_fit']:9.3f}s {row['pyod_fit'] / row['aefast_fit']:7.1f}x "
              f"{row['pyod_auc']:10.4f} "
              f"{row['aefast_auc']:12.4f} {os.getloadavg()[0]:5.2f}", flush=True)

    t_pyod = sum(r["pyod_fit"] for r in rows)
    t_aefast = sum(r["aefast_fit"] for r in rows)
    auc_pyod = float(np.mean([r["pyod_auc"] for r in rows]))
    auc_aefast = float(np.mean([r["aefast_auc"] for r in rows]))
    s_pyod = sum(r["pyod_score"] for r in rows)
    s_aefast = sum(r["aefast_score"] for r in rows)
    print(f"  total fit: PyOD {t_pyod:.2f} s, aefast {t_aefast:.2f} s, speed-up "
          f"{t_pyod / t_aefast:.1f}x; scoring the test set {len(rows)}x: PyOD {s_pyod:.2f} s, "
          f"aefast {s_aefast:.2f} s ({s_pyod / s_aefast:.1f}x)")
    print(f"  mean AUROC over {len(rows)} classes: PyOD {auc_pyod:.4f}, aefast {auc_aefast:.4f} "
          f"(aefast - PyOD {auc_aefast - auc_pyod:+.4f})")
    print(f"  {load_line()}")
    warn_load(args.threads)
    return dict(ratio=t_pyod / t_aefast, auc_pyod=auc_pyod, auc_aefast=auc_aefast,
                fit_pyod=t_pyod, fit_aefast=t_aefast, n_classes=len(rows))


# --------------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["1", "2", "all"], default="all")
    parser.add_argument("--epochs", type=int, default=PYOD_EPOCHS,
                        help="epochs of both detectors (default: PyOD's 10)")
    parser.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9",
                        help="comma-separated Fashion-MNIST classes for part 2")
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and BLAS")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed fits per library in part 1 (median reported)")
    parser.add_argument("--seed", type=int, default=42, help="data and detector seed")
    parser.add_argument("--data", default=None, help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--omp-wait-policy", choices=["passive", "active", "inherit"],
                        default=None, help="OMP_WAIT_POLICY set before torch loads (default: "
                        "passive unless the variable is set)")
    args = parser.parse_args(argv)
    policy = args.omp_wait_policy
    if policy is None:
        policy = "inherit" if "OMP_WAIT_POLICY" in os.environ else "passive"
    if policy != "inherit":
        if "torch" in sys.modules:
            raise SystemExit("--omp-wait-policy must be applied before torch is imported")
        os.environ["OMP_WAIT_POLICY"] = policy.upper()
    warnings.filterwarnings("ignore", message=r"n_components=\d+ > n_features=\d+",
                            category=UserWarning)
    try:
        args.classes = [int(c) for c in args.classes.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--classes must be comma-separated integers, got {args.classes!r}")
    if not args.classes or any(not 0 <= c <= 9 for c in args.classes):
        parser.error("--classes must name classes 0 to 9")
    if args.epochs < 1 or args.threads < 1 or args.repeats < 1:
        parser.error("--epochs, --threads and --repeats must be >= 1")

    import scipy.linalg  # noqa: F401  (load SciPy's OpenBLAS before reporting thread pools)
    import sklearn
    import torch
    from threadpoolctl import threadpool_limits

    import aefast
    import pyod

    check_pyod_defaults()
    torch.set_num_threads(args.threads)
    print(f"python {sys.version.split()[0]}  numpy {np.__version__}  torch {torch.__version__}  "
          f"pyod {pyod.__version__}  sklearn {sklearn.__version__}  "
          f"aefast {getattr(aefast, '__version__', '?')}  threads={args.threads}")
    print(f"both: layers d-{'-'.join(map(str, PYOD_HIDDEN))}-{PYOD_HIDDEN[0]}-d, ReLU (code too), "
          f"MSE, Adam lr {PYOD_LR} weight decay {PYOD_WEIGHT_DECAY}, batch {PYOD_BATCH}, "
          f"standardized inputs; PyOD also has BatchNorm + dropout 0.2 (its defaults)")
    print(blas_info())
    print()

    results = {}
    with threadpool_limits(limits=args.threads, user_api="blas"):
        if args.part in ("1", "all"):
            results["part1"] = part1(args)
            print()
        if args.part in ("2", "all"):
            results["part2"] = part2(args)
            print()

    print("summary:")
    if "part1" in results:
        r = results["part1"]
        print(f"  part 1 (generate_data 20000x30): fit PyOD {r['fit_pyod']:.3f} s, aefast "
              f"{r['fit_aefast']:.3f} s, speed-up {r['ratio']:.1f}x (target >= "
              f"{SPEED_TARGET:.0f}x); test AUROC PyOD {r['test_auc_pyod']:.4f}, aefast "
              f"{r['test_auc_aefast']:.4f}")
    if "part2" in results:
        r = results["part2"]
        print(f"  part 2 (Fashion-MNIST one-class, {r['n_classes']} classes): total fit PyOD "
              f"{r['fit_pyod']:.2f} s, aefast {r['fit_aefast']:.2f} s, speed-up {r['ratio']:.1f}x; "
              f"mean AUROC PyOD {r['auc_pyod']:.4f}, aefast {r['auc_aefast']:.4f}")


if __name__ == "__main__":
    main()
