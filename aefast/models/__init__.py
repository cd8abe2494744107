"""Estimators: thin scikit-learn front ends to the engine and kernels."""
from .autoencoder import Autoencoder
from .linear import LinearAutoencoder

__all__ = ["Autoencoder", "LinearAutoencoder"]
