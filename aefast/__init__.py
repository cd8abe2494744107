"""aefast: fast autoencoders, from Hebbian learning and PCA to VAEs."""
from .exceptions import ModelFileError, TrainingDivergedError
from .io import load, save
from .models import Autoencoder

__version__ = "0.1.0"

__all__ = ["Autoencoder", "ModelFileError", "TrainingDivergedError", "load", "save",
           "__version__"]
