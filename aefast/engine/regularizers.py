"""Parts that constrain the code: sparsity penalties, k-sparse codes, corruption.

Each is a small validated value object that the estimators accept as a
parameter (``sparsity=``, ``corruption=``) and that ``make_regularization``
turns into the compiled step's ``Regularization`` for one network. They
follow scikit-learn's ``get_params`` protocol so that ``clone`` and
``GridSearchCV`` handle them, and ``to_dict`` / ``from_dict`` for save/load.
"""
import numbers

import numpy as np

from .._ext._network import Regularization

SPARSITY_CODES = {"none": 0, "l1": 1, "kl": 2, "topk": 3}
CORRUPTION_CODES = {"none": 0, "gaussian": 1, "masking": 2, "salt_pepper": 3}


def _real(value, name, low=None, high=None, low_open=False, high_open=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def _int(value, name, low):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


class _Part:
    """get_params / repr / equality / dict round trip from the constructor's fields."""

    _fields = ()

    def get_params(self, deep=True):
        return {name: getattr(self, name) for name in self._fields}

    def set_params(self, **params):
        for name, value in params.items():
            if name not in self._fields:
                raise ValueError(f"{type(self).__name__} has no parameter {name!r}")
        merged = {**self.get_params(), **params}
        self.__init__(**merged)
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(other) is type(self) and other.get_params() == self.get_params()

    def __hash__(self):
        return hash((type(self).__name__, tuple(self.get_params().items())))

    def to_dict(self):
        return {"part": type(self).__name__, **self.get_params()}


class L1Activity(_Part):
    """L1 penalty on the code: ``weight * mean over samples of sum_j |h_j|``.

    Parameters
    ----------
    weight : float, >= 0
    """

    _fields = ("weight",)
    kind = "l1"

    def __init__(self, weight=1e-3):
        self.weight = _real(weight, "L1Activity weight", low=0)


class KLSparsity(_Part):
    """Ng's sparsity penalty ``weight * sum_j KL(target || rho_j)``.

    ``rho_j`` is the mean activation of code unit ``j`` over the batch. The
    code activation must take values in (0, 1) (``code_activation="sigmoid"``).

    Parameters
    ----------
    target : float in (0, 1)
        Desired mean activation of each code unit.
    weight : float, >= 0
    """

    _fields = ("target", "weight")
    kind = "kl"

    def __init__(self, target=0.05, weight=0.1):
        self.target = _real(target, "KLSparsity target", low=0, high=1, low_open=True,
                            high_open=True)
        self.weight = _real(weight, "KLSparsity weight", low=0)


class TopK(_Part):
    """k-sparse code (Makhzani & Frey 2013): keep the k largest units per sample.

    In training only the k largest code units of each sample stay non-zero and
    gradients flow through them alone (ties: lower index first); the decoder
    reads only those k rows of its first weight matrix. ``transform`` keeps
    ``encode_k`` units (default ``k``; the paper uses 2 to 3 times ``k``).

    Parameters
    ----------
    k : int, >= 1
    encode_k : int or None
        Units kept at inference, ``>= k``.
    normalize_decoder : bool, default=False
        Keep each latent's decoder direction (row of the first decoder
        matrix) at unit norm after every update, as current TopK practice
        (Gao et al. 2024) does.
    aux_k : int or None, default=None
        AuxK (Gao et al. 2024): per sample, the ``aux_k`` largest code values
        among dead latents reconstruct the residual ``x - x_hat`` of the main
        reconstruction through the decoder weights, adding
        ``aux_weight * mean((e - e_hat)**2)`` to the loss so that dead latents
        get gradient again. Needs a single decoder layer (``hidden_layers=()``).
        The residual lives in output space and its estimate is the decoder's
        linear output, so AuxK is meant for ``loss="mse"`` with an identity
        output, as in the paper (with cross-entropy the estimate is in logit
        units and revives latents far less).
    aux_weight : float, default=1/32
    dead_after : int, default=10_000
        A latent is dead once it has not fired for this many training samples.
    """

    _fields = ("k", "encode_k", "normalize_decoder", "aux_k", "aux_weight", "dead_after")
    kind = "topk"

    def __init__(self, k=32, encode_k=None, normalize_decoder=False, aux_k=None,
                 aux_weight=1 / 32, dead_after=10_000):
        self.k = _int(k, "TopK k", 1)
        self.encode_k = None if encode_k is None else _int(encode_k, "TopK encode_k", 1)
        if self.encode_k is not None and self.encode_k < self.k:
            raise ValueError(f"TopK encode_k must be >= k={self.k}, got {self.encode_k}")
        self.normalize_decoder = bool(normalize_decoder)
        self.aux_k = None if aux_k is None else _int(aux_k, "TopK aux_k", 1)
        self.aux_weight = _real(aux_weight, "TopK aux_weight", low=0)
        self.dead_after = _int(dead_after, "TopK dead_after", 1)


class GaussianNoise(_Part):
    """Additive noise ``x + std * N(0, 1)`` on training inputs (denoising AE).

    The normals come from the fit's NumPy bit generator by Box-Muller, a pair
    per 64-bit word with 24-bit uniforms (so ``|N(0, 1)|`` stays below 5.8),
    computed in a vectorised loop: NumPy's scalar ziggurat cost about 10 ns
    per input entry, 1.7x the plain epoch on case M; Box-Muller costs 1.13x.
    """

    _fields = ("std",)
    kind = "gaussian"

    def __init__(self, std=0.1):
        self.std = _real(std, "GaussianNoise std", low=0)


class MaskingNoise(_Part):
    """Each training input entry set to 0 with probability ``fraction``
    (resolved to a multiple of 1/65536)."""

    _fields = ("fraction",)
    kind = "masking"

    def __init__(self, fraction=0.25):
        self.fraction = _real(fraction, "MaskingNoise fraction", low=0, high=1)


class SaltPepperNoise(_Part):
    """Each training input entry set, with probability ``fraction`` (resolved
    to a multiple of 1/65536), to ``low`` or ``high`` (each with probability 1/2)."""

    _fields = ("fraction", "low", "high")
    kind = "salt_pepper"

    def __init__(self, fraction=0.1, low=0.0, high=1.0):
        self.fraction = _real(fraction, "SaltPepperNoise fraction", low=0, high=1)
        self.low = _real(low, "SaltPepperNoise low")
        self.high = _real(high, "SaltPepperNoise high")


SPARSITY_PARTS = (L1Activity, KLSparsity, TopK)
CORRUPTION_PARTS = (GaussianNoise, MaskingNoise, SaltPepperNoise)
PARTS = {cls.__name__: cls for cls in SPARSITY_PARTS + CORRUPTION_PARTS}


def part_from_dict(data):
    """Rebuild a part written by ``to_dict``."""
    data = dict(data)
    cls = PARTS.get(data.pop("part", None))
    if cls is None:
        raise ValueError(f"unknown regularization part in {data!r}")
    return cls(**data)


def check_sparsity(sparsity, n_components, code_activation, hidden_layers=()):
    """Validate the ``sparsity`` parameter against the code it constrains."""
    if sparsity is None:
        return None
    if not isinstance(sparsity, SPARSITY_PARTS):
        raise TypeError("sparsity must be None, aefast.L1Activity, aefast.KLSparsity or "
                        f"aefast.TopK, got {sparsity!r}")
    if isinstance(sparsity, KLSparsity) and code_activation != "sigmoid":
        raise ValueError("KLSparsity needs code activations in (0, 1): use "
                         f"code_activation='sigmoid', not {code_activation!r}")
    if isinstance(sparsity, TopK):
        encode_k = sparsity.encode_k or sparsity.k
        if sparsity.k > n_components or encode_k > n_components:
            raise ValueError(f"TopK k={sparsity.k}, encode_k={encode_k} must be <= "
                             f"n_components={n_components}")
        if sparsity.aux_k is not None:
            if sparsity.aux_k > n_components:
                raise ValueError(f"TopK aux_k={sparsity.aux_k} must be <= "
                                 f"n_components={n_components}")
            if len(hidden_layers):
                raise ValueError("TopK aux_k needs a single decoder layer: hidden_layers=()")
    return sparsity


def check_corruption(corruption):
    """Validate the ``corruption`` parameter."""
    if corruption is not None and not isinstance(corruption, CORRUPTION_PARTS):
        raise TypeError("corruption must be None, aefast.GaussianNoise, aefast.MaskingNoise "
                        f"or aefast.SaltPepperNoise, got {corruption!r}")
    return corruption


def regularization_kwargs(sparsity, corruption, code_block, n_code, **bottleneck):
    """The parts as keyword arguments of a backend's regularization object.

    Everything but the source of randomness, which each backend supplies in
    its own form (a NumPy bit generator on the CPU, a seed on the GPU).
    """
    kwargs = dict(code_block=code_block, n_code=n_code, **bottleneck)
    if sparsity is not None:
        kwargs["sparsity"] = SPARSITY_CODES[sparsity.kind]
        if isinstance(sparsity, TopK):
            kwargs.update(k=sparsity.k, encode_k=sparsity.encode_k or sparsity.k,
                          normalize_decoder=sparsity.normalize_decoder,
                          aux_k=sparsity.aux_k or 0, aux_weight=sparsity.aux_weight,
                          dead_after=sparsity.dead_after)
        elif isinstance(sparsity, KLSparsity):
            kwargs.update(weight=sparsity.weight, target=sparsity.target)
        else:
            kwargs.update(weight=sparsity.weight)
    if corruption is not None:
        kwargs["corruption"] = CORRUPTION_CODES[corruption.kind]
        if isinstance(corruption, GaussianNoise):
            kwargs["level"] = corruption.std
        else:
            kwargs["level"] = corruption.fraction
        if isinstance(corruption, SaltPepperNoise):
            kwargs.update(low=corruption.low, high=corruption.high)
    return kwargs


def make_regularization(sparsity, corruption, code_block, n_code, rng=None, **bottleneck):
    """The compiled step's ``Regularization`` for a network.

    Parameters
    ----------
    sparsity, corruption : parts or None (validated)
    code_block : int
        Number of encoder layers (the workspace block of the code).
    n_code : int
        Width of the code.
    rng : numpy.random.Generator or None
        Its bit generator draws the corruption noise (training only) and a
        VAE's samples; without it the corruption is off (inference).
    **bottleneck
        A VAE's sampling bottleneck (``gaussian=True, n_latent, kl_weight,
        obs_off, obs_logvar``), passed on to ``Regularization``.
    """
    kwargs = regularization_kwargs(sparsity, corruption if rng is not None else None,
                                   code_block, n_code, **bottleneck)
    if rng is not None and ("corruption" in kwargs or bottleneck.get("gaussian")):
        kwargs["bit_generator"] = rng.bit_generator
    return Regularization(**kwargs)
