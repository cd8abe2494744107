"""The one network engine every aefast model uses (see DESIGN.md section 2)."""
from .network import ACTIVATIONS, Network
from .optimizers import Optimizer, OptimizerState
from .training import History, TrainingConfig, train

__all__ = ["ACTIVATIONS", "Network", "Optimizer", "OptimizerState", "History",
           "TrainingConfig", "train"]
