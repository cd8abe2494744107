"""The VAE: sampling kernel, gradients through it, ELBO and likelihood, the estimator."""
import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.datasets import load_digits
from sklearn.utils.estimator_checks import parametrize_with_checks

import aefast
from aefast._ext import _network
from aefast.engine.backends import CPUBackend
from aefast.engine.network import Network
from aefast.engine.optimizers import Optimizer, OptimizerState
from aefast.engine.regularizers import make_regularization

import reference_network as ref


@pytest.fixture(scope="module")
def digits():
    return (load_digits().data / 16).astype(np.float32)


@pytest.fixture(scope="module")
def digits_vae(digits):
    return aefast.VAE(hidden_layers=(64,), n_components=8, batch_size=64, max_epochs=25,
                      random_state=0).fit(digits)


def bottleneck(seed, n_latent, kl_weight=1.0, code_block=1, **kw):
    return make_regularization(None, None, code_block, 2 * n_latent,
                               np.random.Generator(np.random.PCG64(seed)), gaussian=True,
                               n_latent=n_latent, kl_weight=kl_weight, **kw)


def random_stats(rng, n, k, dtype):
    stats = np.hstack([rng.normal(size=(n, k)), rng.uniform(-3, 2, size=(n, k))])
    return stats.astype(dtype)


# ------------------------------------------------------------------ sampling kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k", [(1, 1), (7, 3), (513, 5)])
def test_reparameterize_matches_numpy_generator_exactly(dtype, n, k):
    stats = random_stats(np.random.default_rng(0), n, k, dtype)
    stats[0, k] = -40.0  # clamped from below
    z = np.empty((n, k), dtype)
    eps = np.empty((n, k), dtype)
    kl = np.empty(n)
    total = _network.reparameterize(stats, z, eps, bottleneck(11, k), True, kl)
    expected_eps = np.random.Generator(np.random.PCG64(11)).standard_normal((n, k), dtype=dtype)
    np.testing.assert_array_equal(eps, expected_eps)
    z_ref, kl_ref = ref.reparameterize(stats, expected_eps.astype(float))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(z, z_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(kl, kl_ref, rtol=1e-10)
    assert total == pytest.approx(kl_ref.sum(), rel=1e-10)


def test_reparameterize_without_sampling_gives_the_mean():
    stats = random_stats(np.random.default_rng(1), 9, 4, np.float64)
    z = np.empty((9, 4))
    _network.reparameterize(stats, z, np.empty((9, 4)), bottleneck(0, 4), False)
    np.testing.assert_array_equal(z, stats[:, :4])


def test_reparameterize_mean_and_variance():
    n, k = 200_000, 2
    stats = np.tile([1.5, -2.0, np.log(0.25), np.log(4.0)], (n, 1))
    z = np.empty((n, k))
    _network.reparameterize(stats, z, np.empty((n, k)), bottleneck(3, k), True)
    np.testing.assert_allclose(z.mean(axis=0), [1.5, -2.0], atol=0.015)
    np.testing.assert_allclose(z.var(axis=0), [0.25, 4.0], rtol=0.015)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reparameterize_backward_matches_reference_and_finite_differences(dtype):
    rng = np.random.default_rng(2)
    n, k, kl_scale = 6, 3, 0.7
    stats = random_stats(rng, n, k, np.float64)
    stats[1, k + 1] = 12.0  # clamped from above: no gradient
    eps = rng.standard_normal((n, k))
    d_z = rng.standard_normal((n, k))
    d_stats = np.empty((n, 2 * k), dtype)
    _network.reparameterize_backward(stats.astype(dtype), eps.astype(dtype), d_z.astype(dtype),
                                     d_stats, kl_scale)
    expected = ref.reparameterize_backward(stats, eps, d_z, kl_scale)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(d_stats, expected, rtol=tol, atol=tol)

    def f(s):
        z, kl = ref.reparameterize(s, eps)
        return np.sum(d_z * z) + kl_scale * kl.sum()

    h = 1e-4  # the clamped entry's KL (~ e^10) makes a smaller step lose to round-off
    numeric = np.zeros_like(stats)
    for idx in np.ndindex(*stats.shape):
        e = np.zeros_like(stats)
        e[idx] = h
        numeric[idx] = (f(stats + e) - f(stats - e)) / (2 * h)
    np.testing.assert_allclose(expected, numeric, rtol=1e-6, atol=1e-8)
    assert expected[1, k + 1] == 0


def test_analytic_kl_matches_monte_carlo():
    rng = np.random.default_rng(4)
    stats = random_stats(rng, 3, 4, np.float64)
    n_mc = 400_000
    kl = np.empty(3)
    _network.reparameterize(stats, np.empty((3, 4)), np.empty((3, 4)), bottleneck(0, 4), False,
                            kl)
    for i in range(3):
        mu, lv = stats[i, :4], stats[i, 4:]
        eps = rng.standard_normal((n_mc, 4))
        z = mu + np.exp(0.5 * lv) * eps
        log_q = -0.5 * np.sum(eps ** 2 + lv + np.log(2 * np.pi), axis=1)
        log_p = -0.5 * np.sum(z ** 2 + np.log(2 * np.pi), axis=1)
        mc = np.mean(log_q - log_p)
        assert kl[i] == pytest.approx(mc, abs=4 * np.std(log_q - log_p) / np.sqrt(n_mc))


# --------------------------------------------------------------- training gradients
@pytest.mark.parametrize("likelihood,learned", [("bernoulli", False), ("gaussian", False),
                                                ("gaussian", True)])
def test_training_step_gradient_matches_finite_differences(likelihood, learned):
    rng = np.random.default_rng(5)
    n, d, k = 7, 5, 2
    X = rng.uniform(0.05, 0.95, size=(n, d))
    acts = ["tanh", "identity", "tanh", "sigmoid" if likelihood == "bernoulli" else "identity"]
    net = Network([d, 4, 2 * k, 4, d], acts, np.float64, n_latent=k, vae_block=2,
                  n_extra=d if learned else 0)
    net.initialize(np.random.default_rng(6))
    if learned:
        net.extra()[:] = rng.uniform(-1, 1, size=d)
    loss = "bce" if likelihood == "bernoulli" else "gaussian"
    kw = dict(obs_off=net.extra_off if learned else -1, obs_logvar=np.log(0.6))
    reg = bottleneck(9, k, kl_weight=0.7, code_block=2, **kw)
    grads = np.zeros_like(net.params)
    before = net.params.copy()
    steps, status = CPUBackend(net, loss, reg).train_batches(
        X, np.arange(n, dtype=np.int64), 0, n, n, Optimizer("sgd", 1e-300),
        OptimizerState(net.n_params, net.dtype), grads, 0.0, 0.0, np.empty(1))
    net.params[:] = before
    assert (steps, status) == (1, 0)
    eps = np.random.Generator(np.random.PCG64(9)).standard_normal((n, k))

    def objective(p):
        net.params[:] = p
        weights = [(net.weight(l), net.bias(l)) for l in range(net.n_layers)]
        obs = net.extra() if learned else np.log(0.6)
        return ref.vae_objective(weights, acts, likelihood, X, 2, eps, 0.7, obs)

    h = 1e-6
    numeric = np.array([(objective(before + h * e) - objective(before - h * e)) / (2 * h)
                        for e in np.eye(before.size)])
    net.params[:] = before
    np.testing.assert_allclose(grads, numeric, rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------ the estimator
def test_transform_is_deterministic_and_the_posterior_mean(digits_vae, digits):
    Z = digits_vae.transform(digits[:50])
    np.testing.assert_array_equal(Z, digits_vae.transform(digits[:50]))
    mu, log_var = digits_vae.posterior(digits[:50])
    np.testing.assert_array_equal(Z, mu)
    assert Z.shape == (50, 8) and Z.dtype == np.float32
    assert np.all((log_var >= -20) & (log_var <= 10))


def test_training_improves_the_elbo(digits_vae, digits):
    assert digits_vae.loss_curve_[-1] < 0.75 * digits_vae.loss_curve_[0]
    elbo, rec, kl = digits_vae.elbo(digits[:300], random_state=0, return_parts=True)
    np.testing.assert_allclose(elbo, rec - kl)
    assert np.all(kl > 0)
    # The training loss is the negative ELBO (up to sampling noise and the weights moving).
    assert -elbo.mean() == pytest.approx(digits_vae.loss_curve_[-1], rel=0.1)


def test_log_likelihood_grows_with_k_and_bounds_the_elbo(digits_vae, digits):
    X = digits[:300]
    elbo = digits_vae.elbo(X, n_samples=20, random_state=1).mean()
    ll1 = digits_vae.log_likelihood(X, n_samples=1, random_state=2).mean()
    ll10 = digits_vae.log_likelihood(X, n_samples=10, random_state=3).mean()
    ll200 = digits_vae.log_likelihood(X, n_samples=200, random_state=4).mean()
    assert ll1 == pytest.approx(elbo, abs=0.3)  # K = 1 is the ELBO
    assert elbo < ll10 < ll200


def test_log_likelihood_batches_large_k(digits_vae, digits):
    ll = digits_vae.log_likelihood(digits[:3], n_samples=30_000, random_state=0)
    assert ll.shape == (3,) and np.all(np.isfinite(ll))


def test_linear_gaussian_vae_reaches_the_ppca_likelihood():
    # Probabilistic PCA: x = W z + m + noise, z ~ N(0, I_2), noise ~ N(0, 0.3 I_10).
    rng = np.random.default_rng(7)
    d, q, n = 10, 2, 6000
    W = rng.normal(size=(d, q)) * np.array([2.0, 1.2])
    m = rng.normal(size=d)
    X = rng.standard_normal((n, q)) @ W.T + m + np.sqrt(0.3) * rng.standard_normal((n, d))
    exact = multivariate_normal(m, W @ W.T + 0.3 * np.eye(d)).logpdf(X[:1000]).mean()
    vae = aefast.VAE(hidden_layers=(), n_components=q, likelihood="gaussian",
                     output_variance="learned", learning_rate=1e-2, batch_size=128,
                     max_epochs=60, dtype="float64", random_state=0).fit(X)
    ll = vae.log_likelihood(X[:1000], n_samples=500, random_state=0).mean()
    assert abs(ll - exact) < 0.01 * abs(exact)
    # Per-feature variances (a factor-analysis decoder) find the shared noise level.
    assert np.median(vae.output_variance_) == pytest.approx(0.3, rel=0.1)


def test_sample_and_interpolate(digits_vae, digits):
    X, Z = digits_vae.sample(5, random_state=0, return_latent=True)
    assert X.shape == (5, 64) and Z.shape == (5, 8)
    assert np.all((X >= 0) & (X <= 1))
    np.testing.assert_array_equal(X, digits_vae.sample(5, random_state=0))
    np.testing.assert_allclose(X, digits_vae.inverse_transform(Z))
    path = digits_vae.interpolate(digits[0], digits[1], n_steps=6)
    assert path.shape == (6, 64)
    ends = digits_vae.inverse_transform(digits_vae.transform(digits[:2]))
    np.testing.assert_allclose(path[[0, -1]], ends, atol=1e-6)


def test_score_samples_is_a_deterministic_elbo(digits_vae, digits):
    s = digits_vae.score_samples(digits[:20])
    np.testing.assert_array_equal(s, digits_vae.score_samples(digits[:20]))
    np.testing.assert_allclose(s[5:10], digits_vae.score_samples(digits[5:10]), rtol=1e-6)
    # Close to the sampled ELBO (the reconstruction at the mean is a bit better).
    assert s.mean() == pytest.approx(digits_vae.elbo(digits[:20], 50, 0).mean(), rel=0.1)
    noise = np.random.default_rng(0).uniform(0, 1, size=(20, 64)).astype(np.float32)
    assert s.mean() > digits_vae.score_samples(noise).mean()


def test_kl_warmup_and_monte_carlo_samples(digits):
    vae = aefast.VAE(hidden_layers=(32,), n_components=4, kl_warmup_epochs=4, n_samples=3,
                     beta=2.0, max_epochs=3, random_state=0)
    assert [vae._kl_weight(e) for e in (0, 2, 4, 9)] == [0.0, 1.0, 2.0, 2.0]
    vae.fit(digits)
    assert vae.n_epochs_ == 3 and np.all(np.isfinite(vae.loss_curve_))


def test_save_load_round_trip(tmp_path, digits_vae, digits):
    path = tmp_path / "vae.npz"
    aefast.save(digits_vae, path)
    loaded = aefast.load(path)
    assert isinstance(loaded, aefast.VAE)
    np.testing.assert_array_equal(loaded.transform(digits[:10]), digits_vae.transform(digits[:10]))
    np.testing.assert_array_equal(loaded.elbo(digits[:10], random_state=3),
                                  digits_vae.elbo(digits[:10], random_state=3))


def test_learned_variance_round_trip(tmp_path):
    X = np.random.default_rng(0).normal(size=(200, 6))
    vae = aefast.VAE(hidden_layers=(), n_components=2, likelihood="gaussian",
                     output_variance="learned", max_epochs=3, random_state=0).fit(X)
    aefast.save(vae, tmp_path / "g.npz")
    np.testing.assert_array_equal(aefast.load(tmp_path / "g.npz").output_variance_,
                                  vae.output_variance_)


@pytest.mark.parametrize("params,match", [
    (dict(likelihood="poisson"), "likelihood"),
    (dict(likelihood="gaussian", output_variance=-1.0), "output_variance"),
    (dict(likelihood="gaussian", output_variance="fixed"), "output_variance"),
    (dict(beta=-0.5), "beta"),
    (dict(n_samples=0), "n_samples"),
    (dict(kl_warmup_epochs=-1), "kl_warmup_epochs"),
    (dict(learning_rate=-1.0), "learning_rate"),
])
def test_bad_parameters(digits, params, match):
    vae = aefast.VAE(hidden_layers=(8,), n_components=2, max_epochs=1, **params)
    with pytest.raises((ValueError, TypeError), match=match):
        vae.fit(digits)
    assert not hasattr(vae, "network_")


def test_bernoulli_needs_unit_interval_data(digits):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        aefast.VAE(hidden_layers=(8,), n_components=2, max_epochs=1).fit(digits * 16)


def test_divergence_stops_with_the_last_finite_parameters():
    X = np.random.default_rng(0).normal(size=(64, 5)) * 1e18
    vae = aefast.VAE(hidden_layers=(4,), n_components=2, likelihood="gaussian",
                     optimizer="sgd", learning_rate=1e6, dtype="float32", max_epochs=50,
                     batch_size=16, random_state=0)
    with pytest.raises(aefast.TrainingDivergedError):
        vae.fit(X)
    assert np.all(np.isfinite(vae.network_.params))


@parametrize_with_checks([aefast.VAE(hidden_layers=(4,), n_components=2, likelihood="gaussian",
                                     max_epochs=2, batch_size=16, random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_cuda_without_a_gpu_is_refused_clearly(digits, monkeypatch):
    monkeypatch.setattr("aefast.engine.cuda_backend.cuda_available",
                        lambda: (False, "no GPU in this test"))
    vae = aefast.VAE(hidden_layers=(8,), n_components=2, max_epochs=1, device="cuda")
    with pytest.raises(ValueError, match="cuda"):
        vae.fit(digits[:50])
    assert not hasattr(vae, "network_")
