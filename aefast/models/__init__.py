"""Estimators: thin scikit-learn front ends to the engine and kernels.

Each estimator is imported on first use (PEP 562), so that fitting an
``Autoencoder`` does not import Numba for the Hebbian and Oja kernels.
"""
import importlib

_MODULES = {
    "Autoencoder": "autoencoder",
    "HebbianNeuron": "hebbian",
    "LinearAutoencoder": "linear",
    "OjaPCA": "oja",
    "VAE": "vae",
}

__all__ = sorted(_MODULES)


def __getattr__(name):
    if name not in _MODULES:
        raise AttributeError(f"module 'aefast.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"aefast.models.{_MODULES[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
