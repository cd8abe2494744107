"""Save and load fitted models without pickle.

A model file is a NumPy ``.npz`` archive: the model's arrays (the flat
parameter buffer, optimizer state, ...) plus one entry ``__aefast__`` holding a
JSON document with the format name and version, the estimator class, its
constructor parameters and its fitted scalar state. ``load`` reads it with
``allow_pickle=False``, checks every part, and rebuilds only aefast classes.
"""
import json
import zipfile

import numpy as np

from .engine.regularizers import part_from_dict
from .exceptions import ModelFileError

FORMAT_NAME = "aefast-model"
FORMAT_VERSION = 1
META_KEY = "__aefast__"


def _registry():
    from . import models

    return {name: getattr(models, name) for name in models.__all__}


def _jsonable_params(params):
    out = {}
    for key, value in params.items():
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, (np.random.Generator, np.random.RandomState)):
            value = None  # a generator's state is not a parameter worth keeping
        elif isinstance(value, type) and issubclass(value, np.generic):
            value = np.dtype(value).name
        elif hasattr(value, "to_dict"):  # sparsity / corruption parts
            value = value.to_dict()
        try:
            json.dumps(value)
        except TypeError:
            raise TypeError(f"parameter {key}={value!r} cannot be saved") from None
        out[key] = value
    return out


def save(model, path):
    """Write a fitted aefast model to `path` (an ``.npz`` file).

    Parameters
    ----------
    model : a fitted aefast estimator
    path : str or path-like
        Destination; NumPy appends ``.npz`` when the name lacks it.
    """
    if type(model).__name__ not in _registry() or not hasattr(model, "_get_fitted_state"):
        raise TypeError(f"cannot save {type(model).__name__}: not an aefast model")
    if not hasattr(model, "n_features_in_"):
        raise ValueError("the model is not fitted; fit it before saving")
    state, arrays = model._get_fitted_state()
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "class": type(model).__name__,
        "params": _jsonable_params(model.get_params(deep=False)),
        "state": state,
    }
    if META_KEY in arrays:
        raise ValueError(f"array name {META_KEY!r} is reserved")
    np.savez(path, **{META_KEY: np.array(json.dumps(meta))}, **arrays)


def load(path):
    """Read a model written by :func:`save`.

    Raises
    ------
    ModelFileError
        When the file is not a readable aefast model file (corrupt, truncated,
        foreign, or of a newer format version).
    """
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a lone .npy array
            raise ModelFileError(f"{path} is not an aefast model file (not an .npz archive)")
        with archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ModelFileError(f"{path} is not a readable aefast model file: {exc}") from exc
    if META_KEY not in arrays:
        raise ModelFileError(f"{path} is not an aefast model file (no {META_KEY} entry)")
    try:
        meta = json.loads(str(arrays.pop(META_KEY)))
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: the model description is corrupt: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} is not an aefast model file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path} has format version {meta.get('format_version')!r}; "
                             f"this aefast reads version {FORMAT_VERSION}")
    cls = _registry().get(meta.get("class"))
    if cls is None:
        raise ModelFileError(f"{path} holds an unknown model class {meta.get('class')!r}")
    try:
        params = dict(meta["params"])
        for key, value in params.items():
            if isinstance(value, list):
                params[key] = tuple(value)
            elif isinstance(value, dict) and "part" in value:
                params[key] = part_from_dict(value)
        model = cls(**params)
        model._set_fitted_state(meta["state"], arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the model's contents are inconsistent: {exc!r}") from exc
    return model
