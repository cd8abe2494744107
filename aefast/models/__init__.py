"""Estimators: thin scikit-learn front ends to the engine and kernels."""
from .autoencoder import Autoencoder

__all__ = ["Autoencoder"]
