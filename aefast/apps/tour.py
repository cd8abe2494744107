"""The lecture "From PCA to Autoencoders" end to end on real data.

``run_tour`` fits each model of the lecture on one data set, prints the
results as it goes, and writes ``report.md`` (plus PNG figures when matplotlib
is installed) into an output folder:

1. PCA and its neural versions: exact PCA, Hebb's rule, Oja's streaming
   methods and the linear autoencoder, compared by their largest principal
   angle to PCA's subspace and the variance they capture;
2. a deep autoencoder against PCA at the same code size (held-out error);
3. sparse codes: KL sparsity and k-sparse (TopK) autoencoders;
4. a denoising autoencoder against a plain one on corrupted inputs;
5. the VAE: held-out ELBO and likelihood, samples, a 2-D latent map and an
   interpolation;
6. applications: anomaly detection of a held-out class, compression against
   PCA, latent-space augmentation, and codes as features (raw pixels, PCA, the
   deep, stacked and variational autoencoders).

The sections live in ``tour_models`` and ``tour_apps``; this module loads the
data, runs them in order and writes the report and figures.
"""
import os
import time
import warnings

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


def timed(fn):
    """(fn(), seconds it took)."""
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

    pca, t_pca = timed(lambda: PCA(k, svd_solver="covariance_eigh").fit(X))
    exact = explained_variance_captured(X, pca.components_)
    rows = [("exact PCA", 0.0, 1.0, t_pca)]
    log(f"  exact PCA                 k={k}  {t_pca:6.2f} s")
    models = [(f"OjaPCA({m})", OjaPCA(k, method=m, random_state=seed))
              for m in ("block", "gha", "subspace")]
    epochs = 20 if quick else 100
    models.append(("LinearAutoencoder", LinearAutoencoder(k, max_epochs=epochs,
                                                          random_state=seed)))
    for name, model in models:
        _, seconds = timed(lambda: model.fit(X))
        angle = _max_angle_deg(model.components_, pca.components_)
        ratio = explained_variance_captured(X, model.components_) / exact
        rows.append((name, angle, ratio, seconds))
        log(f"  {name:<25} max angle {angle:6.2f} deg, variance {ratio:7.2%}, {seconds:6.2f} s")
    with warnings.catch_warnings():
        # The divergence is the point here; its float64 overflow warning is not news.
        warnings.filterwarnings("ignore", "The Hebbian weight norm", RuntimeWarning)
        hebb, seconds = timed(lambda: HebbianNeuron(learning_rate=1e-3, n_epochs=20,
                                                     random_state=seed).fit(X))
    angle = _max_angle_deg(hebb.components_, pca.components_[:1])
    rows.append(("Hebb (1st PC only)", angle, float("nan"), seconds))
    log(f"  {'Hebb (1st PC only)':<25} angle to PC1 {angle:6.2f} deg, "
        f"|w| grew to 10^{hebb.log_weight_norms_[-1] / np.log(10):.0f}")
    return rows, hebb


def _autoencoder_section(X_train, X_test, k, quick, seed, log):
    from sklearn.decomposition import PCA

    from ..models import Autoencoder

    pca = PCA(k).fit(X_train)
    pca_mse = float(np.mean((pca.inverse_transform(pca.transform(X_test)) - X_test) ** 2))
    width = 256 if X_train.shape[1] > 100 else 64
    ae = Autoencoder(hidden_layers=(width,), n_components=k, max_epochs=30 if quick else 150,
                     batch_size=64, random_state=seed)
    _, seconds = timed(lambda: ae.fit(X_train))
    ae_mse = float(np.mean((ae.reconstruct(X_test) - X_test) ** 2))
    log(f"  held-out MSE: PCA {pca_mse:.5f}, autoencoder {ae_mse:.5f} "
        f"({ae.n_epochs_} epochs, {seconds:.2f} s)")
    return {"pca_mse": pca_mse, "ae_mse": ae_mse, "seconds": seconds,
            "epochs": ae.n_epochs_}, ae, pca


def _features_section(X_train, y_train, X_test, y_test, encoders, log):
    from sklearn.linear_model import LogisticRegression

    results = {}
    for name, transform in [("raw pixels", lambda X: X)] + list(encoders.items()):
        clf = LogisticRegression(max_iter=2000).fit(transform(X_train), y_train)
        results[name] = float(clf.score(transform(X_test), y_test))
        log(f"  logistic regression on {name:<26} accuracy {results[name]:.3f}")
    return results


def _image_grid(ax_row, images, side, label):
    for ax, image in zip(ax_row, images):
        ax.imshow(np.clip(image, 0, 1).reshape(side, side), cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
    ax_row[0].set_title(label, fontsize=8, loc="left")


def _figures(out, X_test, models, log):
    """PNG figures; returns their file names ([] without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("  matplotlib is not installed (pip install 'aefast[plot]'): figures skipped")
        return []
    side = int(round(np.sqrt(X_test.shape[1])))
    if side * side != X_test.shape[1]:
        log("  the images are not square: figures skipped")
        return []
    n = 8
    ae, pca, hebb = models["autoencoder"], models["pca"], models["hebb"]
    denoising, corrupted = models["denoising"]
    vae, latent, labels = models["vae"]
    files = []

    fig, axes = plt.subplots(6, n, figsize=(n, 6.6))
    for r, (label, images) in enumerate((
            ("input", X_test[:n]), ("PCA", pca.inverse_transform(pca.transform(X_test[:n]))),
            ("autoencoder", ae.reconstruct(X_test[:n])),
            ("TopK autoencoder", models["topk"].reconstruct(X_test[:n])),
            ("masked input", corrupted[:n]),
            ("denoising autoencoder", denoising.reconstruct(corrupted[:n])))):
        _image_grid(axes[r], images, side, label)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "reconstructions.png"), dpi=100)
    plt.close(fig)
    files.append("reconstructions.png")

    fig, axes = plt.subplots(3, n, figsize=(n, 3.3))
    _image_grid(axes[0], vae.sample(n, random_state=0), side, "VAE samples")
    _image_grid(axes[1], vae.sample(n, random_state=1), side, "")
    _image_grid(axes[2], vae.interpolate(X_test[0], X_test[1], n_steps=n), side,
                "VAE interpolation between two test images")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "vae.png"), dpi=100)
    plt.close(fig)
    files.append("vae.png")

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 3.6))
    points = a.scatter(latent[:, 0], latent[:, 1], c=labels, cmap="tab10", s=5)
    a.set(xlabel="z1", ylabel="z2", title="2-D VAE: posterior means of test images")
    fig.colorbar(points, ax=a)
    b.plot(np.arange(1, len(ae.loss_curve_) + 1), ae.loss_curve_)
    b.set(xlabel="epoch", ylabel="training loss", title="deep autoencoder")
    # log10 |w|: on large data the norm leaves the float64 range
    c.plot(hebb.log_weight_norms_ / np.log(10))
    c.set(xlabel="step", ylabel="log10 |w|", title="plain Hebb: the weights grow without bound")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "latent_and_training.png"), dpi=100)
    plt.close(fig)
    files.append("latent_and_training.png")

    from .compression import plot_rate_distortion

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    plot_rate_distortion(models["rate_distortion"], ax=ax)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "rate_distortion.png"), dpi=100)
    plt.close(fig)
    files.append("rate_distortion.png")
    return files


def run_tour(data="digits", out="aefast-tour", quick=False, seed=0, log=print):
    """Run the tour and write ``report.md`` into `out`; returns the results dict."""
    from sklearn.model_selection import train_test_split

    from . import tour_apps, tour_models

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
    results = {}
    log("1. PCA, Hebb, Oja and the linear autoencoder (angles to PCA's subspace)")
    results["pca"], hebb = _pca_section(X_train, k, quick, seed, log)
    log("2. deep autoencoder vs PCA at the same code size")
    results["autoencoder"], ae, pca = _autoencoder_section(X_train, X_test, k, quick, seed, log)
    log("3. sparse codes")
    results["sparse"], topk = tour_models.sparse_section(X_train, X_test, k, quick, seed, log)
    log("4. denoising")
    results["denoising"], denoising = tour_models.denoising_section(
        X_train, X_test, k, quick, seed, log)
    log("5. variational autoencoder")
    results["vae"], vae_parts = tour_models.vae_section(X_train, X_test, y_test, k, quick,
                                                        seed, log)
    log("6. applications")
    log(" anomaly detection")
    results["anomaly"] = tour_apps.anomaly_section(X_train, y_train, X_test, y_test, k, quick,
                                                   seed, log)
    log(" compression against PCA at equal code bits")
    results["compression"] = tour_apps.compression_section(X_train, X_test, k, quick, seed, log)
    log(" latent-space augmentation (DeVries & Taylor 2017)")
    results["augmentation"] = tour_apps.augmentation_section(X_train, y_train, X_test, y_test,
                                                             ae, seed, log)
    log(" codes as features")
    stacked = tour_apps.stacked_features(X_train, k, quick, seed)
    encoders = {"PCA codes": pca.transform, "autoencoder codes": ae.transform,
                "stacked autoencoder codes": stacked.transform,
                "VAE posterior means": vae_parts[0].transform}
    results["features"] = _features_section(X_train, y_train, X_test, y_test, encoders, log)
    models = {"autoencoder": ae, "pca": pca, "hebb": hebb, "topk": topk,
              "denoising": denoising, "vae": vae_parts,
              "rate_distortion": results["compression"]["points"]}
    results["figures"] = _figures(out, X_test, models, log)
    results["seconds"] = time.perf_counter() - tic
    _write_report(out, name, k, results)
    log(f"report written to {os.path.join(out, 'report.md')} ({results['seconds']:.1f} s)")
    return results


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _write_report(out, name, k, results):
    r = results
    lines = [f"# aefast tour: {name}", "", f"{k} components; total {r['seconds']:.1f} s.", "",
             "## 1. PCA and its neural versions", ""]
    lines += _table(["method", "largest principal angle to PCA (deg)",
                     "variance captured / PCA's", "seconds"],
                    [(m, f"{a:.2f}", "" if np.isnan(v) else f"{v:.2%}", f"{t:.2f}")
                     for m, a, v, t in r["pca"]])
    ae = r["autoencoder"]
    lines += ["", "Hebb's row is the angle of its single weight vector to the first "
              "principal component; its norm grows without bound.", "",
              "## 2. Deep autoencoder vs PCA (held-out mean squared error)", ""]
    lines += _table(["model", "MSE"], [
        ("PCA", f"{ae['pca_mse']:.5f}"),
        (f"autoencoder ({ae['epochs']} epochs, {ae['seconds']:.2f} s)", f"{ae['ae_mse']:.5f}")])
    lines += ["", "## 3. Sparse codes (held-out)", ""]
    lines += _table(["model", "mean code value", "non-zeros per sample", "dead latents",
                     "normalized MSE", "seconds"],
                    [(row["model"], f"{row['mean_activation']:.3f}",
                      "" if np.isnan(row["l0"]) else f"{row['l0']:.1f}", f"{row['dead']:.1%}",
                      f"{row['nmse']:.3f}", f"{row['seconds']:.2f}")
                     for row in r["sparse"]["rows"]])
    lines += ["", "Normalized MSE: the mean squared error divided by that of predicting each "
              "feature's mean. Dead latents: never above 0.01 (KL) or never selected (TopK, "
              "last training epoch).", "",
              f"## 4. Denoising ({r['denoising']['fraction']:.0%} of pixels masked)", ""]
    dn = r["denoising"]
    lines += _table(["reconstruction of the masked test images", "MSE to the clean images"], [
        ("the masked input itself", f"{dn['corrupted']:.4f}"),
        ("plain autoencoder", f"{dn['plain']:.4f}"),
        ("denoising autoencoder (MaskingNoise)", f"{dn['denoising']:.4f}")])
    v = r["vae"]
    lines += ["", "## 5. Variational autoencoder (held-out, nats per image)", ""]
    lines += _table(["quantity", "value"], [
        (f"ELBO ({v['n_components']} latents)", f"{v['elbo']:.2f}"),
        (f"log-likelihood, importance-weighted, K={v['K']} ({v['n_ll']} images, "
         f"{v['ll_seconds']:.2f} s)", f"{v['log_likelihood']:.2f}"),
        ("ELBO (2 latents)", f"{v['elbo_2d']:.2f}")])
    lines += ["", "Grey levels are used as soft Bernoulli targets (not binarized), so these "
              "are not likelihoods of a normalized density of grey levels.", "",
              "## 6. Applications", "", "### Anomaly detection", ""]
    an = r["anomaly"]
    lines += [f"An autoencoder trained on every class but class {an['held_out']}; the held-out "
              f"class among the test images is found with AUROC **{an['auroc']:.3f}**. With "
              f"the threshold at 5% contamination, {an['recall']:.1%} of it is flagged, with "
              f"{an['false_alarms']:.1%} false alarms.", "",
              "### Compression (codes quantized per dimension, equal bits for both)", ""]
    lines += _table(["method", "codes", "bits", "bytes/sample", "ratio vs float32", "PSNR (dB)"],
                    [(p["method"], p["n_components"], p["bits"], f"{p['bytes_per_sample']:.1f}",
                      f"{p['compression_ratio']:.0f}", f"{p['psnr']:.1f}")
                     for p in r["compression"]["points"]])
    au = r["augmentation"]
    lines += ["", f"### Augmentation ({au['per_class']} labelled images per class, "
              "logistic regression, held-out accuracy)", ""]
    lines += _table(["training set", "accuracy"],
                    [("the labelled images alone", f"{au['none']:.3f}")]
                    + [(f"+ 4x new samples by {n} in code space", f"{au[n]:.3f}")
                       for n in ("noise", "interpolation", "extrapolation")])
    lines += ["", "### Codes as features (logistic regression, held-out accuracy)", ""]
    lines += _table(["input", "accuracy"], [(key, f"{value:.3f}")
                                            for key, value in r["features"].items()])
    if r["figures"]:
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in r["figures"]]
    else:
        lines += ["", "Figures skipped: matplotlib is not installed."]
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
