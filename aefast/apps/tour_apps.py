"""Tour sections for what autoencoders are used for.

Anomaly detection with a held-out class, compression against PCA at equal
code bits, latent-space augmentation of a small labelled set, and codes as
features (stacked pretraining and the VAE included).
"""
import numpy as np

from .tour import timed


def anomaly_section(X_train, y_train, X_test, y_test, k, quick, seed, log):
    """Train on every class but one; AUROC of the held-out class among the test images."""
    from sklearn.metrics import roc_auc_score

    from ..models import Autoencoder
    from .anomaly import AnomalyDetector

    held_out = int(np.unique(y_train)[0])
    normal = X_train[y_train != held_out]
    estimator = Autoencoder(hidden_layers=(min(256, 2 * X_train.shape[1]),), n_components=k,
                            max_epochs=20 if quick else 60, batch_size=64, random_state=seed)
    detector = AnomalyDetector(estimator, contamination=0.05, random_state=seed)
    _, seconds = timed(lambda: detector.fit(normal))
    is_outlier = (y_test == held_out).astype(int)
    auroc = float(roc_auc_score(is_outlier, -detector.score_samples(X_test)))
    flagged = detector.predict(X_test) == -1
    result = {"held_out": held_out, "auroc": auroc, "seconds": seconds,
              "recall": float(flagged[is_outlier == 1].mean()),
              "false_alarms": float(flagged[is_outlier == 0].mean())}
    log(f"  class {held_out} held out of training: AUROC {auroc:.3f}; at contamination 5%: "
        f"{result['recall']:.1%} of it flagged, {result['false_alarms']:.1%} false alarms "
        f"({seconds:.2f} s)")
    return result


def compression_section(X_train, X_test, k, quick, seed, log):
    """Rate-distortion of autoencoder codes against PCA codes, both quantized."""
    from ..models import Autoencoder
    from .compression import rate_distortion

    sizes = sorted({max(2, k // 2), k, 2 * k})
    estimator = Autoencoder(hidden_layers=(min(256, 2 * X_train.shape[1]),),
                            max_epochs=15 if quick else 60, batch_size=64)
    points, seconds = timed(lambda: rate_distortion(X_train, X_test, sizes, bits=(4, 8),
                                                    estimator=estimator, data_range=1.0,
                                                    random_state=seed))
    for p in points:
        if p["bits"] == 8:
            log(f"  {p['method']:<11} {p['n_components']:3d} codes x 8 bits = "
                f"{p['bytes_per_sample']:5.1f} bytes/sample (x{p['compression_ratio']:.0f} "
                f"vs float32): PSNR {p['psnr']:.1f} dB")
    return {"points": points, "seconds": seconds}


def augmentation_section(X_train, y_train, X_test, y_test, ae, seed, log):
    """A classifier on a few labelled images, with and without latent-space augmentation."""
    from sklearn.linear_model import LogisticRegression

    from .. import augment

    rng = np.random.default_rng(seed)
    per_class = 10
    idx = np.concatenate([rng.choice(np.flatnonzero(y_train == c), per_class, replace=False)
                          for c in np.unique(y_train)])
    X_small, y_small = X_train[idx], y_train[idx]

    def accuracy(X, y):
        clf = LogisticRegression(max_iter=2000).fit(X, y)
        return float(clf.score(X_test, y_test))

    result = {"per_class": per_class, "none": accuracy(X_small, y_small)}
    for name, make in (
            ("noise", lambda: augment.add_noise(ae, X_small, y_small, scale=0.5, n_new=4 * len(idx),
                                                clip=True, random_state=seed)),
            ("interpolation", lambda: augment.interpolate(
                ae, X_small, y_small, lam=0.5, n_neighbors=3, n_new=4 * len(idx), clip=True,
                random_state=seed)),
            ("extrapolation", lambda: augment.extrapolate(
                ae, X_small, y_small, lam=0.5, n_neighbors=3, n_new=4 * len(idx), clip=True,
                random_state=seed))):
        X_new, y_new = make()
        result[name] = accuracy(np.vstack([X_small, X_new]), np.concatenate([y_small, y_new]))
    log(f"  {per_class} labelled images per class: accuracy {result['none']:.3f} alone, "
        + ", ".join(f"{result[n]:.3f} with {n}" for n in ("noise", "interpolation",
                                                          "extrapolation")))
    return result


def stacked_features(X_train, k, quick, seed):
    """A stacked (greedily pretrained, then fine-tuned) autoencoder for the features table."""
    from .stacked import StackedAutoencoder

    width = max(k, min(256, X_train.shape[1] // 2))  # narrowing: no identity map to learn
    model = StackedAutoencoder(hidden_layers=(width, k), pretrain_epochs=10 if quick else 30,
                               finetune_epochs=10 if quick else 60, batch_size=64,
                               random_state=seed)
    return model.fit(X_train)
