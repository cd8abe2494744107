"""Exceptions and warnings raised by aefast."""


class TrainingDivergedError(FloatingPointError):
    """Training produced a non-finite loss or gradient.

    The model keeps the parameters of its last finite step and stays usable;
    lower the learning rate, scale the data, or add weight decay.
    """


class ModelFileError(ValueError):
    """A file given to :func:`aefast.load` is not a valid aefast model file."""
