"""The ``aefast`` command: ``tour``, ``fit`` and ``score``."""
import argparse
import os
import sys
import time

MODEL_KINDS = ("autoencoder", "linear", "oja", "vae")
SCORE_KINDS = ("reconstruction", "score_samples", "elbo", "log_likelihood")


class CommandError(Exception):
    """A user error the command reports on stderr (exit status 2)."""


# ------------------------------------------------------------------ tour
def _tour(args):
    from .apps.tour import run_tour

    try:
        run_tour(data=args.data, out=args.out, quick=args.quick, seed=args.seed)
    except FileNotFoundError as exc:
        print(f"aefast tour: {exc}", file=sys.stderr)
        return 2
    return 0


# ------------------------------------------------------------------ data
def _is_idx(path):
    name = os.path.basename(path).lower()
    return "idx" in name or name.endswith((".gz", ".ubyte"))


def _csv_rows_to_skip(path, delimiter):
    """1 when the first line of a text file is a header (not all numbers), else 0."""
    with open(path, encoding="utf-8") as f:
        first = f.readline().strip()
    try:
        [float(v) for v in first.split(delimiter) if v.strip() != ""]
    except ValueError:
        return 1
    return 0


def load_array(path, scale="auto"):
    """Read a data file for ``aefast fit`` / ``aefast score`` as a 2-D array.

    Parameters
    ----------
    path : str
        ``.npy`` (any numeric array; more than two dimensions are flattened
        per row), ``.csv`` (comma-separated, an optional header line),
        ``.tsv`` (tab-separated), ``.txt`` (whitespace-separated), or an IDX
        file (the MNIST format, gzipped or not: names containing ``idx`` or
        ending in ``.gz``/``.ubyte``).
    scale : "auto", "none" or float, default="auto"
        ``"auto"`` divides uint8 data (IDX images, uint8 ``.npy``) by 255,
        ``"none"`` leaves values as they are, a number divides by it.

    Returns
    -------
    ndarray of shape (n_samples, n_features)
    """
    import numpy as np

    if not os.path.isfile(path):
        raise CommandError(f"data file not found: {path}")
    lower = path.lower()
    try:
        if lower.endswith(".npy"):
            X = np.load(path, allow_pickle=False)
        elif lower.endswith((".csv", ".tsv", ".txt")):
            delimiter = {".csv": ",", ".tsv": "\t"}.get(lower[-4:])
            X = np.loadtxt(path, delimiter=delimiter, ndmin=2,
                           skiprows=_csv_rows_to_skip(path, delimiter))
        elif _is_idx(path):
            from .datasets import read_idx

            X = read_idx(path)
        else:
            raise CommandError(f"{path}: unknown data format; use .npy, .csv, .tsv, .txt or an "
                               "IDX file (.gz / *idx*)")
    except ValueError as exc:
        raise CommandError(f"{path}: cannot read the data: {exc}") from exc
    if X.ndim < 2:
        raise CommandError(f"{path}: expected one sample per row (2-D data), got shape "
                           f"{X.shape}")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise CommandError(f"{path}: the data are not numeric (dtype {X.dtype})")
    X = X.reshape(X.shape[0], -1)
    if scale == "auto":
        divisor = 255.0 if X.dtype == np.uint8 else None
    elif scale == "none":
        divisor = None
    else:
        divisor = float(scale)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float32)
    if divisor is not None:
        X = X / X.dtype.type(divisor)
    return X


def _scale_arg(value):
    if value in ("auto", "none"):
        return value
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--scale must be auto, none or a positive number, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"--scale must be positive, got {value!r}")
    return number


def _layers_arg(value):
    if value.strip().lower() in ("", "none", "()"):
        return ()
    try:
        layers = tuple(int(v) for v in value.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden-layers must be comma-separated integers like 128,64, got {value!r}"
        ) from None
    if any(width < 1 for width in layers):
        raise argparse.ArgumentTypeError(f"--hidden-layers entries must be >= 1, got {value!r}")
    return layers


def _positive_int(value):
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


# ------------------------------------------------------------------ fit
def _vae_class():
    try:
        from .models.vae import VAE
    except ImportError as exc:
        raise CommandError("--model vae needs aefast.VAE, which this installation does not "
                           f"have ({exc})") from exc
    return VAE


def _build_model(args, X):
    from . import models
    from .models._validation import in_unit_interval

    if args.model == "autoencoder":
        cls = models.Autoencoder
    elif args.model == "linear":
        cls = models.LinearAutoencoder
    elif args.model == "oja":
        cls = models.OjaPCA
    else:
        cls = _vae_class()
    wanted = {
        "hidden_layers": args.hidden_layers,
        "n_components": args.n_components,
        "max_epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "loss": args.loss,
        "random_state": args.seed,
        "verbose": args.verbose,
    }
    if args.model == "vae":
        # the VAE's likelihood plays the part of the loss
        loss = args.loss or "auto"
        if loss == "auto":
            loss = "bce" if in_unit_interval(X) else "mse"
        wanted["likelihood"] = "bernoulli" if loss == "bce" else "gaussian"
    accepted = cls().get_params(deep=False)
    # Options left at None keep the model's own default; options a model does not
    # have (e.g. hidden layers for the linear autoencoder) are ignored.
    params = {key: value for key, value in wanted.items()
              if value is not None and key in accepted}
    if args.model == "linear" and args.hidden_layers:
        print("aefast fit: --hidden-layers is ignored by --model linear", file=sys.stderr)
    return cls(**params)


def _fit(args):
    from .io import save

    X = load_array(args.data, args.scale)
    model = _build_model(args, X)
    log = (lambda *a: None) if args.quiet else print
    log(f"aefast fit: {type(model).__name__} on {args.data} ({X.shape[0]} x {X.shape[1]})")
    tic = time.perf_counter()
    try:
        model.fit(X)
    except (ValueError, FloatingPointError) as exc:
        raise CommandError(f"cannot fit the model: {exc}") from exc
    seconds = time.perf_counter() - tic
    curve = getattr(model, "loss_curve_", None)
    summary = f"  trained in {seconds:.2f} s"
    if curve:
        summary += f", {len(curve)} epochs, final loss {curve[-1]:.6g}"
    log(summary)
    save(model, args.output)
    path = args.output if args.output.endswith(".npz") else args.output + ".npz"
    log(f"  saved to {path}")
    return 0


# ------------------------------------------------------------------ score
def _scores(model, X, kind, n_samples, seed):
    import inspect

    import numpy as np

    if kind == "reconstruction":
        if callable(getattr(model, "reconstruction_error", None)):
            return model.reconstruction_error(X)
        rec = model.inverse_transform(model.transform(X))
        return np.mean((np.asarray(X, dtype=np.float64) - rec) ** 2, axis=1)
    method = getattr(model, kind, None)
    if not callable(method):
        raise CommandError(f"--kind {kind}: a {type(model).__name__} has no {kind}() method")
    kwargs = {"n_samples": n_samples} if kind == "log_likelihood" else {}
    try:
        if "random_state" in inspect.signature(method).parameters:
            kwargs["random_state"] = seed
    except (TypeError, ValueError):
        pass
    return method(X, **kwargs)


def _score(args):
    import numpy as np

    from .exceptions import ModelFileError
    from .io import load

    try:
        model = load(args.model)
    except FileNotFoundError:
        raise CommandError(f"model file not found: {args.model}") from None
    except ModelFileError as exc:
        raise CommandError(str(exc)) from exc
    except (TypeError, ValueError) as exc:
        raise CommandError(f"{args.model} is not a readable aefast model file ({exc})") from exc
    X = load_array(args.data, args.scale)
    try:
        scores = _scores(model, X, args.kind, args.n_samples, args.seed)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    except ValueError as exc:
        raise CommandError(f"cannot score {args.data}: {exc}") from exc
    out = args.output
    if out is None or out == "-":
        try:
            np.savetxt(sys.stdout, scores, fmt="%.9g")
            sys.stdout.flush()
        except BrokenPipeError:  # piped into head: stop quietly (Python's documented recipe)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    if out.lower().endswith(".npy"):
        np.save(out, scores)
    elif out.lower().endswith((".csv", ".txt")):
        np.savetxt(out, scores, fmt="%.9g", header=args.kind, comments="")
    else:
        raise CommandError(f"--output {out}: use a .npy, .csv or .txt name (or - for stdout)")
    print(f"aefast score: {scores.shape[0]} {args.kind} scores written to {out}",
          file=sys.stderr)
    return 0


# ------------------------------------------------------------------ parser
_DATA_HELP = ("data file: .npy, .csv (comma-separated, optional header line), .tsv, .txt "
              "(whitespace-separated) or IDX (MNIST format, gzipped or not); one sample per "
              "row (.npy and IDX arrays with more dimensions are flattened per sample)")
_SCALE_HELP = ("auto (default): divide uint8 data such as IDX images by 255 so they lie in "
               "[0, 1]; none: use the values as they are; a number: divide by it. Use the "
               "same value for fit and score")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="aefast", description="Fast autoencoders, from Hebbian learning and PCA to VAEs.")
    commands = parser.add_subparsers(dest="command", required=True)
    tour = commands.add_parser(
        "tour", help="the lecture 'From PCA to Autoencoders' end to end on real data",
        description="Fit PCA, Hebb, Oja's streaming PCA, the linear autoencoder and a deep "
                    "autoencoder on one data set; print a results table and write report.md "
                    "(and PNG figures when matplotlib is installed).")
    tour.add_argument("--data", default="digits",
                      help="digits (scikit-learn's, embedded; the default), fashion-mnist "
                           "(Debian's dataset-fashion-mnist package) or a folder holding the "
                           "Fashion-MNIST IDX files")
    tour.add_argument("--out", default="aefast-tour",
                      help="folder for report.md and the figures (default: aefast-tour)")
    tour.add_argument("--quick", action="store_true",
                      help="fewer epochs and at most 10,000 samples")
    tour.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    tour.set_defaults(handler=_tour)

    fit = commands.add_parser(
        "fit", help="train a model on a data file and save it",
        description="Train an autoencoder (or streaming PCA) on a data file and save it with "
                    "aefast.save, to be used by 'aefast score' or aefast.load.",
        epilog="example: aefast fit train-images-idx3-ubyte.gz --hidden-layers 256,64 "
               "--n-components 16 --epochs 20 -o fashion.npz")
    fit.add_argument("data", help=_DATA_HELP)
    fit.add_argument("--model", choices=MODEL_KINDS, default="autoencoder",
                     help="autoencoder (deep, aefast.Autoencoder; the default), linear "
                          "(aefast.LinearAutoencoder), oja (aefast.OjaPCA, streaming PCA) or "
                          "vae (aefast.VAE, when this installation has it)")
    fit.add_argument("--hidden-layers", type=_layers_arg, default=None, metavar="W1,W2,...",
                     help="widths of the encoder's hidden layers, comma-separated (the "
                          "decoder mirrors them); 'none' for no hidden layer (default: the "
                          "model's, 128,64 for autoencoder); ignored by linear and oja")
    fit.add_argument("--n-components", type=_positive_int, default=None, metavar="K",
                     help="width of the code / number of components (default: the model's, "
                          "32 for autoencoder, 2 for linear and oja)")
    fit.add_argument("--epochs", type=_positive_int, default=None,
                     help="maximum number of training epochs (default: the model's, 100); "
                          "ignored by oja, which makes one pass")
    fit.add_argument("--batch-size", type=_positive_int, default=None, metavar="N",
                     help="rows per training step (default: the model's, 256 for "
                          "autoencoder, 64 for linear, 1000 for oja)")
    fit.add_argument("--learning-rate", type=float, default=None, metavar="LR",
                     help="optimizer step size (default: the model's, 1e-3 for autoencoder, "
                          "1e-2 for linear)")
    fit.add_argument("--loss", choices=("auto", "mse", "bce"), default=None,
                     help="reconstruction loss: auto (cross-entropy for data in [0, 1], mean "
                          "squared error otherwise; the default), mse or bce; for vae it picks "
                          "the likelihood (bce: Bernoulli, mse: Gaussian); ignored by linear "
                          "(always mse) and oja")
    fit.add_argument("--scale", type=_scale_arg, default="auto", help=_SCALE_HELP)
    fit.add_argument("--seed", type=int, default=0,
                     help="random seed: the same seed gives the same model (default: 0)")
    fit.add_argument("-o", "--output", default="model.npz",
                     help="where to save the model (.npz is appended when missing; default: "
                          "model.npz)")
    fit.add_argument("--verbose", action="store_true", help="print the loss every epoch")
    fit.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    fit.set_defaults(handler=_fit)

    score = commands.add_parser(
        "score", help="score every row of a data file with a saved model",
        description="Load a model saved by 'aefast fit' (or aefast.save) and write one score "
                    "per row of a data file.",
        epilog="example: aefast score model.npz test.npy --kind reconstruction -o scores.csv")
    score.add_argument("model", help="model file written by 'aefast fit' or aefast.save")
    score.add_argument("data", help=_DATA_HELP + "; same number of features as at fit time")
    score.add_argument("--kind", choices=SCORE_KINDS, default="reconstruction",
                       help="reconstruction (per-row reconstruction error, the training loss "
                            "averaged over features: higher = worse fit; the default), "
                            "score_samples (the model's normality score: higher = more "
                            "normal), elbo (VAE: evidence lower bound per row) or "
                            "log_likelihood (VAE: importance-weighted log-likelihood estimate)")
    score.add_argument("--n-samples", type=_positive_int, default=100, metavar="K",
                       help="importance samples per row for --kind log_likelihood (default: "
                            "100)")
    score.add_argument("--scale", type=_scale_arg, default="auto", help=_SCALE_HELP)
    score.add_argument("--seed", type=int, default=0,
                       help="seed of the random draws behind elbo and log_likelihood "
                            "(default: 0)")
    score.add_argument("-o", "--output", default=None,
                       help="where to write the scores: .npy (float64 array), .csv or .txt "
                            "(a header line with the kind, then one score per line); "
                            "default or '-': print them to stdout")
    score.set_defaults(handler=_score)
    return parser


def main(argv=None):
    """Run the ``aefast`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except CommandError as exc:
        print(f"aefast {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
