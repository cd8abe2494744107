"""aefast: fast autoencoders, from Hebbian learning and PCA to VAEs.

Public names are loaded on first use (PEP 562): ``import aefast`` stays cheap
and the scikit-learn / Numba machinery behind an estimator is imported when
the estimator is first touched.
"""
import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "AnomalyDetector": "aefast.apps.anomaly",
    "Autoencoder": "aefast.models.autoencoder",
    "Compressor": "aefast.apps.compression",
    "StackedAutoencoder": "aefast.apps.stacked",
    "VAE": "aefast.models.vae",
    "HebbianNeuron": "aefast.models.hebbian",
    "LinearAutoencoder": "aefast.models.linear",
    "OjaPCA": "aefast.models.oja",
    "GaussianNoise": "aefast.engine.regularizers",
    "KLSparsity": "aefast.engine.regularizers",
    "L1Activity": "aefast.engine.regularizers",
    "MaskingNoise": "aefast.engine.regularizers",
    "ModelFileError": "aefast.exceptions",
    "SaltPepperNoise": "aefast.engine.regularizers",
    "TopK": "aefast.engine.regularizers",
    "TrainingDivergedError": "aefast.exceptions",
    "load": "aefast.io",
    "save": "aefast.io",
}
_SUBMODULES = {
    "apps", "data", "datasets", "engine", "exceptions", "io", "metrics", "models", "ops",
    "augment",
}

__all__ = sorted(_LAZY) + sorted(_SUBMODULES) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"aefast.{name}")
    else:
        raise AttributeError(f"module 'aefast' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
