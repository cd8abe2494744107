"""Optimizers over the flat parameter buffer.

The update itself is one fused compiled pass (``src_ext/_network.pyx``); this
module holds the hyper-parameters and the state twins (momentum buffer, Adam's
first and second moments) that persist between ``partial_fit`` calls.
"""
from dataclasses import dataclass

import numpy as np

OPTIMIZER_CODES = {"sgd": 0, "momentum": 1, "nesterov": 2, "adam": 3}


@dataclass
class Optimizer:
    """Hyper-parameters of one optimizer.

    ``"sgd"``: p -= lr g. ``"momentum"``: b = mu b + g, p -= lr b (PyTorch's
    form); with ``nesterov`` p -= lr (g + mu b). ``"adam"``: Kingma & Ba with
    PyTorch's placement of epsilon, p -= lr m_hat / (sqrt(v_hat) + eps).
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8

    def __post_init__(self):
        if self.name not in ("sgd", "momentum", "adam"):
            raise ValueError(
                f"optimizer={self.name!r} is not supported; choose sgd, momentum or adam")
        if not np.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        for name in ("beta_1", "beta_2"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if not self.epsilon > 0:
            raise ValueError(f"epsilon must be positive, got {self.epsilon}")

    @property
    def code(self):
        if self.name == "momentum" and self.nesterov:
            return OPTIMIZER_CODES["nesterov"]
        return OPTIMIZER_CODES[self.name]


class OptimizerState:
    """State twins of the flat buffer and the number of updates done."""

    def __init__(self, n_params, dtype):
        self.state1 = np.zeros(n_params, dtype=dtype)
        self.state2 = np.zeros(n_params, dtype=dtype)
        self.t = 0

    def to_arrays(self):
        return {"opt_state1": self.state1, "opt_state2": self.state2,
                "opt_t": np.asarray(self.t, dtype=np.int64)}

    @classmethod
    def from_arrays(cls, arrays, n_params, dtype):
        state = cls(n_params, dtype)
        for name in ("state1", "state2"):
            values = np.asarray(arrays["opt_" + name])
            if values.shape != (n_params,):
                raise ValueError("optimizer state does not match the parameter buffer")
            getattr(state, name)[:] = values
        state.t = int(arrays["opt_t"])
        return state
