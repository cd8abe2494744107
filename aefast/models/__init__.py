"""Estimators: thin scikit-learn front ends to the engine and kernels."""
from .autoencoder import Autoencoder
from .hebbian import HebbianNeuron
from .linear import LinearAutoencoder
from .oja import OjaPCA
from .vae import VAE

__all__ = ["Autoencoder", "HebbianNeuron", "LinearAutoencoder", "OjaPCA", "VAE"]
