"""Plain NumPy float64 references of the network engine's compiled kernels.

Straightforward, unfused, unoptimised code: forward, loss, backward and the
optimizer updates of ``src_ext/_network.pyx`` written as the textbook defines
them. Tests compare the compiled engine against these.
"""
import numpy as np

LEAKY_SLOPE = 0.01


def activation(name, z):
    if name == "identity":
        return z
    if name == "relu":
        return np.maximum(z, 0)
    if name == "leaky_relu":
        return np.where(z > 0, z, LEAKY_SLOPE * z)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "softplus":
        return np.logaddexp(0, z)
    raise ValueError(name)


def activation_derivative(name, z):
    """d act / dz evaluated at the pre-activation z."""
    if name == "identity":
        return np.ones_like(z)
    if name == "relu":
        return (z > 0).astype(float)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, LEAKY_SLOPE)
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    if name in ("sigmoid", "softplus"):
        s = 1 / (1 + np.exp(-z))
        return s * (1 - s) if name == "sigmoid" else s
    raise ValueError(name)


def forward(weights, activations, X):
    """Pre-activations and outputs of every layer (float64)."""
    hs, zs = [np.asarray(X, float)], []
    for (W, b), act in zip(weights, activations):
        z = hs[-1] @ W + b
        zs.append(z)
        hs.append(activation(act, z))
    return zs, hs


def loss(name, zs, hs, X):
    """Mean reconstruction loss over samples and features."""
    X = np.asarray(X, float)
    if name == "mse":
        return np.mean((hs[-1] - X) ** 2)
    z = zs[-1]
    return np.mean(np.maximum(z, 0) - z * X + np.log1p(np.exp(-np.abs(z))))


def objective(weights, activations, loss_name, X, weight_decay=0.0, weight_l1=0.0):
    zs, hs = forward(weights, activations, X)
    penalty = sum(0.5 * weight_decay * np.sum(W ** 2) + weight_l1 * np.sum(np.abs(W))
                  for W, _ in weights)
    return loss(loss_name, zs, hs, X) + penalty


def gradients(weights, activations, loss_name, X, weight_decay=0.0, weight_l1=0.0):
    """Backpropagation: list of (dW, db) of ``objective``."""
    X = np.asarray(X, float)
    zs, hs = forward(weights, activations, X)
    n = X.size
    if loss_name == "mse":
        delta = 2 * (hs[-1] - X) / n * activation_derivative(activations[-1], zs[-1])
    else:
        delta = (1 / (1 + np.exp(-zs[-1])) - X) / n
    grads = [None] * len(weights)
    for layer in range(len(weights) - 1, -1, -1):
        W, _ = weights[layer]
        dW = hs[layer].T @ delta + weight_decay * W + weight_l1 * np.sign(W)
        grads[layer] = (dW, delta.sum(axis=0))
        if layer:
            delta = (delta @ W.T) * activation_derivative(activations[layer - 1], zs[layer - 1])
    return grads


def optimizer_step(name, params, grad, state, lr, t, momentum=0.9, nesterov=False,
                   beta_1=0.9, beta_2=0.999, eps=1e-8):
    """One update of the flat float64 `params`; `state` is a dict updated in place."""
    if name == "sgd":
        return params - lr * grad
    if name == "momentum":
        buf = momentum * state.get("buf", 0) + grad
        state["buf"] = buf
        return params - lr * (grad + momentum * buf if nesterov else buf)
    m = beta_1 * state.get("m", 0) + (1 - beta_1) * grad
    v = beta_2 * state.get("v", 0) + (1 - beta_2) * grad ** 2
    state["m"], state["v"] = m, v
    m_hat = m / (1 - beta_1 ** t)
    v_hat = v / (1 - beta_2 ** t)
    return params - lr * m_hat / (np.sqrt(v_hat) + eps)


# --- code-layer constraints (sparsity penalties, k-sparse codes) -------------

def keep_topk(code, k):
    """Zero all but the k largest entries of each row (ties: lower index first)."""
    out = np.zeros_like(code)
    for i, row in enumerate(code):
        keep = np.argsort(-row, kind="stable")[:k]
        out[i, keep] = row[keep]
    return out


def forward_constrained(weights, activations, X, code_layer, topk=None):
    """Like ``forward``, with the output of layer ``code_layer - 1`` k-sparse."""
    hs, zs = [np.asarray(X, float)], []
    for layer, ((W, b), act) in enumerate(zip(weights, activations)):
        z = hs[-1] @ W + b
        zs.append(z)
        h = activation(act, z)
        if topk and layer + 1 == code_layer:
            h = keep_topk(h, topk)
        hs.append(h)
    return zs, hs


def code_penalty(kind, code, weight, target=None):
    if kind == "l1":
        return weight * np.sum(np.abs(code)) / code.shape[0]
    rho = np.clip(code.mean(axis=0), 1e-7, 1 - 1e-7)
    t = target
    return weight * np.sum(t * np.log(t / rho) + (1 - t) * np.log((1 - t) / (1 - rho)))


def objective_constrained(weights, activations, loss_name, X, code_layer, penalty=None,
                          weight=0.0, target=None, topk=None):
    zs, hs = forward_constrained(weights, activations, X, code_layer, topk)
    value = loss(loss_name, zs, hs, X)
    if penalty:
        value += code_penalty(penalty, hs[code_layer], weight, target)
    return value


def auxk_loss(W_dec, dense, residual, dead, aux_k, weight):
    """AuxK: the aux_k largest dense values among `dead` units reconstruct `residual`.

    With no dead unit there is nothing to revive and the loss is 0 (as in the
    engine, which skips such rows).
    """
    if not np.any(dead):
        return 0.0
    e_hat = np.zeros_like(residual)
    for i, row in enumerate(dense):
        candidates = np.where(dead, row, -np.inf)
        m = min(aux_k, int(dead.sum()))
        keep = np.argsort(-candidates, kind="stable")[:m]
        e_hat[i] = row[keep] @ W_dec[keep]
    return weight * np.mean((residual - e_hat) ** 2)


# ----------------------------------------------------------------- VAE bottleneck
LOGVAR_MIN, LOGVAR_MAX = -20.0, 10.0


def reparameterize(stats, eps):
    """z = mu + exp(clamp(log var) / 2) * eps and the per-row analytic KL to N(0, I)."""
    k = eps.shape[1]
    mu = stats[:, :k].astype(float)
    lv = np.clip(stats[:, k:].astype(float), LOGVAR_MIN, LOGVAR_MAX)
    z = mu + np.exp(0.5 * lv) * eps
    kl = 0.5 * np.sum(mu ** 2 + np.exp(lv) - 1.0 - lv, axis=1)
    return z, kl


def reparameterize_backward(stats, eps, d_z, kl_scale):
    """Gradient of sum(d_z * z) + kl_scale * sum(KL) w.r.t. [mu | log var]."""
    k = eps.shape[1]
    mu = stats[:, :k].astype(float)
    raw = stats[:, k:].astype(float)
    sd = np.exp(0.5 * raw)
    d_mu = d_z + kl_scale * mu
    d_lv = 0.5 * d_z * eps * sd + kl_scale * 0.5 * (sd ** 2 - 1.0)
    d_lv[(raw < LOGVAR_MIN) | (raw > LOGVAR_MAX)] = 0.0
    return np.hstack([d_mu, d_lv])


def vae_objective(weights, activations, likelihood, X, vae_block, eps, kl_weight,
                  obs_logvar=None):
    """Mean over rows of (reconstruction NLL summed over features + kl_weight * KL)."""
    h = X.astype(float)
    for layer, ((W, b), act) in enumerate(zip(weights, activations)):
        if layer == vae_block:
            h, kl = reparameterize(h, eps)
        z = h @ W + b
        h = z if layer == len(weights) - 1 else activation(act, z)
    if likelihood == "bernoulli":
        nll = np.sum(np.maximum(z, 0) - z * X + np.log1p(np.exp(-np.abs(z))), axis=1)
    else:
        lv = np.clip(obs_logvar, LOGVAR_MIN, LOGVAR_MAX)
        nll = 0.5 * np.sum((X - z) ** 2 * np.exp(-lv) + lv + np.log(2 * np.pi), axis=1)
    return float(np.mean(nll + kl_weight * kl))
