"""The lecture "From PCA to Autoencoders" end to end on real data.

``run_tour`` fits each model of the lecture that aefast has so far on one data
set, prints a results table as it goes, and writes ``report.md`` (plus PNG
figures when matplotlib is installed) into an output folder:

1. PCA and its neural versions: exact PCA, Hebb's rule, Oja's streaming
   methods and the linear autoencoder, compared by their largest principal
   angle to PCA's subspace and the variance they capture;
2. a deep autoencoder against PCA at the same code size (held-out error);
3. codes as features: a logistic regression on raw pixels, PCA codes and
   autoencoder codes.
"""
import os
import time

import numpy as np

SECTIONS = ("pca", "autoencoder", "features")


def load_tour_data(data):
    """(X in [0, 1] float32, labels, name) for ``digits``, ``fashion-mnist`` or a path."""
    from .. import datasets

    if data == "digits":
        X, y = datasets.load_digits()
        return X, y, "digits (scikit-learn, 1797 x 64)"
    if data == "fashion-mnist":
        X, y = datasets.load_fashion_mnist(kind="train")
        return X, y, "Fashion-MNIST train (60000 x 784)"
    if os.path.isdir(data):
        X, y = datasets.load_fashion_mnist(path=data, kind="train")
        return X, y, f"Fashion-MNIST from {data}"
    raise FileNotFoundError(
        f"--data {data!r}: choose digits, fashion-mnist or a folder holding the "
        "Fashion-MNIST IDX files")


def _timed(fn):
    tic = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - tic


def _max_angle_deg(A, B):
    from ..metrics import principal_angles

    return float(np.degrees(np.max(principal_angles(A, B))))


def _pca_section(X, k, quick, seed, log):
    from sklearn.decomposition import PCA

    from ..metrics import explained_variance_captured
    from ..models import HebbianNeuron, LinearAutoencoder, OjaPCA

    pca, t_pca = _timed(lambda: PCA(k, svd_solver="covariance_eigh").fit(X))
    exact = explained_variance_captured(X, pca.components_)
    rows = [("exact PCA", 0.0, 1.0, t_pca)]
    log(f"  exact PCA                 k={k}  {t_pca:6.2f} s")
    models = [(f"OjaPCA({m})", OjaPCA(k, method=m, random_state=seed))
              for m in ("block", "gha", "subspace")]
    epochs = 20 if quick else 100
    models.append(("LinearAutoencoder", LinearAutoencoder(k, max_epochs=epochs,
                                                          random_state=seed)))
    for name, model in models:
        _, seconds = _timed(lambda: model.fit(X))
        angle = _max_angle_deg(model.components_, pca.components_)
        ratio = explained_variance_captured(X, model.components_) / exact
        rows.append((name, angle, ratio, seconds))
        log(f"  {name:<25} max angle {angle:6.2f} deg, variance {ratio:7.2%}, {seconds:6.2f} s")
    hebb, seconds = _timed(lambda: HebbianNeuron(learning_rate=1e-3, n_epochs=20,
                                                 random_state=seed).fit(X))
    angle = _max_angle_deg(hebb.weights_[None, :], pca.components_[:1])
    rows.append(("Hebb (1st PC only)", angle, float("nan"), seconds))
    log(f"  {'Hebb (1st PC only)':<25} angle to PC1 {angle:6.2f} deg, "
        f"|w| grew to {hebb.weight_norms_[-1]:.3g}")
    return rows, hebb


def _autoencoder_section(X_train, X_test, k, quick, seed, log):
    from sklearn.decomposition import PCA

    from ..models import Autoencoder

    pca = PCA(k).fit(X_train)
    pca_mse = float(np.mean((pca.inverse_transform(pca.transform(X_test)) - X_test) ** 2))
    width = 256 if X_train.shape[1] > 100 else 64
    ae = Autoencoder(hidden_layers=(width,), n_components=k, max_epochs=30 if quick else 150,
                     batch_size=64, random_state=seed)
    _, seconds = _timed(lambda: ae.fit(X_train))
    ae_mse = float(np.mean((ae.reconstruct(X_test) - X_test) ** 2))
    log(f"  held-out MSE: PCA {pca_mse:.5f}, autoencoder {ae_mse:.5f} "
        f"({ae.n_epochs_} epochs, {seconds:.2f} s)")
    return {"pca_mse": pca_mse, "ae_mse": ae_mse, "seconds": seconds,
            "epochs": ae.n_epochs_}, ae, pca


def _features_section(X_train, y_train, X_test, y_test, ae, pca, log):
    from sklearn.linear_model import LogisticRegression

    results = {}
    for name, transform in (("raw pixels", lambda X: X), ("PCA codes", pca.transform),
                            ("autoencoder codes", ae.transform)):
        clf = LogisticRegression(max_iter=2000).fit(transform(X_train), y_train)
        results[name] = float(clf.score(transform(X_test), y_test))
        log(f"  logistic regression on {name:<18} accuracy {results[name]:.3f}")
    return results


def _figures(out, X_test, ae, pca, hebb, log):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("  matplotlib is not installed (pip install 'aefast[plot]'): figures skipped")
        return []
    side = int(round(np.sqrt(X_test.shape[1])))
    n = 8
    fig, axes = plt.subplots(3, n, figsize=(n, 3.3))
    rows = (("input", X_test[:n]), ("PCA", pca.inverse_transform(pca.transform(X_test[:n]))),
            ("autoencoder", ae.reconstruct(X_test[:n])))
    for r, (label, images) in enumerate(rows):
        for c in range(n):
            axes[r, c].imshow(images[c].reshape(side, side), cmap="gray", vmin=0, vmax=1)
            axes[r, c].axis("off")
        axes[r, 0].set_title(label, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "reconstructions.png"), dpi=100)
    plt.close(fig)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(np.arange(1, len(ae.loss_curve_) + 1), ae.loss_curve_)
    a.set(xlabel="epoch", ylabel="training loss", title="deep autoencoder")
    b.semilogy(np.maximum(hebb.weight_norms_, 1e-300))
    b.set(xlabel="step", ylabel="|w|", title="plain Hebb: the weights grow without bound")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "training.png"), dpi=100)
    plt.close(fig)
    return ["reconstructions.png", "training.png"]


def run_tour(data="digits", out="aefast-tour", quick=False, seed=0, log=print):
    """Run the tour and write ``report.md`` into `out`; returns the results dict."""
    from sklearn.model_selection import train_test_split

    os.makedirs(out, exist_ok=True)
    tic = time.perf_counter()
    X, y, name = load_tour_data(data)
    k = 8 if X.shape[1] <= 100 else 16
    if quick and X.shape[0] > 10_000:
        X, y = X[:10_000], y[:10_000]
    log(f"aefast tour on {name}{' (quick)' if quick else ''}: {X.shape[0]} samples, "
        f"{X.shape[1]} features, {k} components")
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25,
                                                        random_state=seed, stratify=y)
    log("1. PCA, Hebb, Oja and the linear autoencoder (angles to PCA's subspace)")
    pca_rows, hebb = _pca_section(X_train, k, quick, seed, log)
    log("2. deep autoencoder vs PCA at the same code size")
    ae_result, ae, pca = _autoencoder_section(X_train, X_test, k, quick, seed, log)
    log("3. codes as features")
    features = _features_section(X_train, y_train, X_test, y_test, ae, pca, log)
    figures = _figures(out, X_test, ae, pca, hebb, log)
    seconds = time.perf_counter() - tic
    _write_report(out, name, k, pca_rows, ae_result, features, figures, seconds)
    log(f"report written to {os.path.join(out, 'report.md')} ({seconds:.1f} s)")
    return {"pca": pca_rows, "autoencoder": ae_result, "features": features,
            "figures": figures, "seconds": seconds}


def _write_report(out, name, k, pca_rows, ae_result, features, figures, seconds):
    lines = [f"# aefast tour: {name}", "", f"{k} components; total {seconds:.1f} s.", "",
             "## PCA and its neural versions", "",
             "| method | largest principal angle to PCA (deg) | variance captured / PCA's | seconds |",
             "|---|---|---|---|"]
    for method, angle, ratio, secs in pca_rows:
        ratio_text = "" if np.isnan(ratio) else f"{ratio:.2%}"
        lines.append(f"| {method} | {angle:.2f} | {ratio_text} | {secs:.2f} |")
    lines += ["", "Hebb's row is the angle of its single weight vector to the first "
              "principal component; its norm grows without bound.", "",
              "## Deep autoencoder vs PCA (held-out mean squared error)", "",
              "| model | MSE |", "|---|---|",
              f"| PCA | {ae_result['pca_mse']:.5f} |",
              f"| autoencoder ({ae_result['epochs']} epochs, {ae_result['seconds']:.2f} s) "
              f"| {ae_result['ae_mse']:.5f} |", "",
              "## Codes as features (logistic regression, held-out accuracy)", "",
              "| input | accuracy |", "|---|---|"]
    lines += [f"| {key} | {value:.3f} |" for key, value in features.items()]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
    else:
        lines += ["", "Figures skipped: matplotlib is not installed."]
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
