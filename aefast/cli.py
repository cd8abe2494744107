"""The ``aefast`` command."""
import argparse
import sys


def _tour(args):
    from .apps.tour import run_tour

    try:
        run_tour(data=args.data, out=args.out, quick=args.quick, seed=args.seed)
    except FileNotFoundError as exc:
        print(f"aefast tour: {exc}", file=sys.stderr)
        return 2
    return 0


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
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
