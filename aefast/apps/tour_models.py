"""Tour sections for the constrained and generative models of the lecture.

Each function fits its models on the tour's training split, logs one line per
result and returns a dict of plain numbers for the report (plus the fitted
models the figures need).
"""
import numpy as np

from .tour import timed


def _masked(X, fraction, seed):
    """X with a random `fraction` of its entries set to 0 (masking noise)."""
    keep = np.random.default_rng(seed).random(X.shape) >= fraction
    return (X * keep).astype(X.dtype)


def sparse_section(X_train, X_test, k, quick, seed, log):
    """KL-sparse and k-sparse (TopK) codes: sparsity reached and reconstruction kept."""
    from ..engine.regularizers import KLSparsity, TopK
    from ..metrics import dead_latent_fraction, l0_per_sample, normalized_mse
    from ..models import Autoencoder

    d = X_train.shape[1]
    epochs = 20 if quick else 100
    n_code = 4 * k
    rows = []
    kl = Autoencoder(hidden_layers=(min(256, 2 * d),), n_components=n_code,
                     code_activation="sigmoid", sparsity=KLSparsity(target=0.05, weight=0.5),
                     max_epochs=epochs, batch_size=64, random_state=seed)
    _, seconds = timed(lambda: kl.fit(X_train))
    codes = kl.transform(X_test)
    rows.append({"model": f"KL sparsity (target 0.05, {n_code} sigmoid units)",
                 "mean_activation": float(codes.mean()), "l0": float("nan"),
                 "dead": float(dead_latent_fraction(codes, tol=1e-2)),
                 "nmse": float(normalized_mse(X_test, kl.reconstruct(X_test))),
                 "seconds": seconds})
    n_topk = 2 * d if d <= 100 else 1024
    topk_k = max(2, k // 2)
    topk = Autoencoder(hidden_layers=(), n_components=n_topk, loss="mse",
                       output_activation="identity",
                       sparsity=TopK(topk_k, encode_k=2 * topk_k, normalize_decoder=True,
                                     aux_k=2 * topk_k),
                       max_epochs=epochs, batch_size=64, random_state=seed)
    _, seconds = timed(lambda: topk.fit(X_train))
    codes = topk.transform(X_test)
    rows.append({"model": f"TopK k={topk_k}, encode_k={2 * topk_k} ({n_topk} latents, "
                          "overcomplete)",
                 "mean_activation": float(codes.mean()),
                 "l0": float(np.mean(l0_per_sample(codes))), "dead": float(topk.dead_fraction_),
                 "nmse": float(normalized_mse(X_test, topk.reconstruct(X_test))),
                 "seconds": seconds})
    for row in rows:
        l0 = "" if np.isnan(row["l0"]) else f", L0 {row['l0']:.1f}"
        log(f"  {row['model']}: mean code {row['mean_activation']:.3f}{l0}, dead "
            f"{row['dead']:.1%}, normalized MSE {row['nmse']:.3f}, {row['seconds']:.2f} s")
    return {"rows": rows}, topk


def denoising_section(X_train, X_test, k, quick, seed, log):
    """Plain vs denoising (masking noise) autoencoder on corrupted held-out inputs."""
    from ..engine.regularizers import MaskingNoise
    from ..models import Autoencoder

    fraction = 0.3
    params = dict(hidden_layers=(min(256, 2 * X_train.shape[1]),), n_components=k,
                  max_epochs=20 if quick else 100, batch_size=64, random_state=seed)
    plain = Autoencoder(**params)
    denoising = Autoencoder(corruption=MaskingNoise(fraction), **params)
    _, t_plain = timed(lambda: plain.fit(X_train))
    _, t_dae = timed(lambda: denoising.fit(X_train))
    corrupted = _masked(X_test, fraction, seed + 1)
    result = {"fraction": fraction}
    for name, model, seconds in (("plain", plain, t_plain), ("denoising", denoising, t_dae)):
        result[name] = float(np.mean((model.reconstruct(corrupted) - X_test) ** 2))
        result[name + "_seconds"] = seconds
    result["corrupted"] = float(np.mean((corrupted - X_test) ** 2))
    log(f"  MSE to the clean images from inputs with {fraction:.0%} of pixels masked: "
        f"corrupted input {result['corrupted']:.4f}, plain autoencoder {result['plain']:.4f}, "
        f"denoising autoencoder {result['denoising']:.4f}")
    return result, (denoising, corrupted)


def vae_section(X_train, X_test, y_test, k, quick, seed, log):
    """A VAE: held-out ELBO and importance-weighted likelihood; a 2-D VAE for the latent map."""
    from ..models import VAE

    width = min(400, 4 * X_train.shape[1])
    epochs = 30 if quick else 150
    vae = VAE(hidden_layers=(width,), n_components=k, max_epochs=epochs, batch_size=64,
              random_state=seed)
    _, seconds = timed(lambda: vae.fit(X_train))
    n_ll = min(X_test.shape[0], 500)
    K = 100 if quick else 1000
    elbo = float(np.mean(vae.elbo(X_test, n_samples=5, random_state=seed)))
    ll, t_ll = timed(lambda: float(np.mean(vae.log_likelihood(X_test[:n_ll], n_samples=K,
                                                                random_state=seed))))
    vae2 = VAE(hidden_layers=(width,), n_components=2, max_epochs=epochs, batch_size=64,
               random_state=seed)
    _, seconds2 = timed(lambda: vae2.fit(X_train))
    latent = vae2.transform(X_test)
    result = {"n_components": k, "elbo": elbo, "log_likelihood": ll, "K": K, "n_ll": n_ll,
              "ll_seconds": t_ll, "seconds": seconds, "elbo_2d": float(np.mean(
                  vae2.elbo(X_test, n_samples=5, random_state=seed))), "seconds_2d": seconds2}
    log(f"  VAE ({k} latents, {vae.n_epochs_} epochs, {seconds:.2f} s): held-out ELBO "
        f"{elbo:.2f} nats, log-likelihood (K={K}, {n_ll} images) {ll:.2f} nats ({t_ll:.2f} s)")
    log(f"  VAE (2 latents, for the map): held-out ELBO {result['elbo_2d']:.2f} nats")
    return result, (vae, latent, y_test)
