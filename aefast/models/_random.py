"""Resolving ``random_state`` to one ``numpy.random.Generator`` per fit."""

import numbers

import numpy as np


def as_generator(random_state):
    """Return a ``numpy.random.Generator`` for a ``random_state`` parameter.

    Parameters
    ----------
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
        ``None`` gives fresh OS entropy; an int seeds a new generator (so two
        fits with the same int give the same result); a ``Generator`` is used
        as it is (and advanced); a legacy ``RandomState`` seeds a new generator
        from one draw of it.

    Returns
    -------
    numpy.random.Generator

    Raises
    ------
    ValueError
        For any other value.
    """
    if random_state is None or (
        isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
    ):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    raise ValueError(
        "random_state must be None, an int, a numpy.random.Generator or a "
        f"numpy.random.RandomState, got {random_state!r}."
    )
