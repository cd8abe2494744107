"""Reconstruction losses of the engine.

Both are means over samples and features, the convention of
``torch.nn.MSELoss`` and ``torch.nn.BCEWithLogitsLoss``:

- ``"mse"``: mean of (x~ - x)^2 (Gaussian likelihood up to constants);
- ``"bce"``: Bernoulli cross-entropy computed from the logits z of the last
  layer, max(z, 0) - z x + log(1 + exp(-|z|)), which never overflows. It needs
  targets in [0, 1] and a sigmoid output layer.
"""
LOSSES = ("mse", "bce")
# "gaussian" (the VAE's Gaussian likelihood, summed over features) is not an
# Autoencoder loss; the VAE selects it through its `likelihood`.
LOSS_CODES = {"mse": 0, "bce": 1, "gaussian": 2}


def resolve_loss(loss, output_activation, data_in_unit_interval):
    """Resolve ``"auto"`` choices to a (loss, output_activation) pair.

    ``"auto"`` picks sigmoid + cross-entropy for data in [0, 1] and identity +
    MSE otherwise; an explicit choice of one settles the other.
    """
    if loss not in ("auto",) + LOSSES:
        raise ValueError(f"loss={loss!r} is not supported; choose auto, mse or bce")
    if loss == "auto":
        if output_activation in ("auto", "sigmoid"):
            loss = "bce" if data_in_unit_interval else "mse"
        else:
            loss = "mse"
    if output_activation == "auto":
        output_activation = "sigmoid" if loss == "bce" else "identity"
    if loss == "bce":
        if output_activation != "sigmoid":
            raise ValueError(
                f"loss='bce' needs output_activation='sigmoid', got {output_activation!r}")
        if not data_in_unit_interval:
            raise ValueError("loss='bce' needs data in [0, 1]; scale it or use loss='mse'")
    return loss, output_activation
