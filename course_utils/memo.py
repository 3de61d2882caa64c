"""Expensive results computed once and kept in the data folder (e.g. the attacks of notebook 05).

``memo.cached(perturb.prediction_attack, model, x, eps=0.015, steps=60)`` calls the function the
first time and saves its result (a dataclass of arrays and plain values) under
``<data>/results/``; later calls with the same model weights, the same images and the same
arguments load it instead. ``python -m course_utils stage`` runs the notebooks with the data
folder as cache, so a staged workshop folder carries these results next to the trained models,
and a notebook that would spend minutes on an attack loads it in a second.

What makes a result "the same":

* the function and its keyword arguments (any change computes anew);
* the model's weights (a digest of their bytes: a staged or copied model matches, a model
  trained again on another laptop does not);
* the images: their shape names the file, and a seeded sample of their pixels must agree to
  ``1e-4``. Images are compared with a tolerance, not hashed, because the phantom's last float
  bits differ between CPUs (the same seed gives the same images to 1e-7, not the same bytes);
* the course's code and the TensorFlow/Keras versions that computed it.

Files are written under a temporary name and renamed, so a crash or a second learner writing
the same result never leaves a half-written file; a file that cannot be read is ignored and
computed again; a read-only shared folder is read and new results go to the user's own cache
(:func:`course_utils.config.writable_dir`).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import importlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from . import config

#: Sub-folder of the data folder that holds cached results.
RESULTS_DIR = "results"
#: Pixels of the input images kept with a result to check the images on load.
N_CHECK_PIXELS = 4096
#: Largest absolute difference (intensity units) of those pixels that still counts as the same images.
CHECK_ATOL = 1e-4

T = TypeVar("T")


@functools.cache
def code_digest() -> str:
    """SHA-256 (16 hex digits) of the course package's Python sources: changes with any edit."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def model_digest(model: Any) -> str:
    """SHA-256 (16 hex digits) of a Keras model's layer types and weights (shapes, dtypes, bytes)."""
    h = hashlib.sha256()
    h.update(",".join(type(layer).__name__ for layer in model.layers).encode())
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        h.update(f"{w.dtype}{w.shape}".encode())
        h.update(w.tobytes())
    return h.hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data; arrays become a digest of their bytes (for keys only)."""
    if isinstance(value, np.ndarray):
        return {"array": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:16],
                "shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot use a {type(value).__name__} as a cache key (arrays, numbers, "
                    "strings, lists and dicts can be)")


def _tuples(value: Any) -> Any:
    """JSON lists back to tuples (the results' settings use tuples, JSON has only lists)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _check_sample(x: np.ndarray) -> np.ndarray:
    """(N_CHECK_PIXELS,) float32 pixels of ``x`` at evenly spaced flat positions."""
    flat = x.reshape(-1)
    return flat[np.linspace(0, flat.size - 1, min(N_CHECK_PIXELS, flat.size)).astype(np.int64)]


def _stack() -> dict[str, str]:
    """TensorFlow and Keras versions (a result computed by another version is computed anew)."""
    import importlib.metadata as md

    out = {}
    for dist in ("tensorflow", "keras"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def result_key(fn: Callable, model: Any, x: np.ndarray, kwargs: dict) -> dict:
    """What identifies a result of ``fn(model, x, **kwargs)``, as JSON-ready data."""
    return {"function": f"{fn.__module__}.{fn.__qualname__}", "kwargs": _jsonable(kwargs),
            "model": model_digest(model), "x_shape": list(x.shape), "code": code_digest(),
            "stack": _stack()}


def result_path(key: dict, folder: Path) -> Path:
    """File of the result with ``key`` in ``folder``: ``<function>_<digest of key>.npz``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return folder / f"{key['function'].rsplit('.', 1)[-1]}_{digest}.npz"


def _save(result: Any, key: dict, x: np.ndarray, path: Path) -> None:
    """Write ``result`` (a dataclass) to ``path`` atomically: a unique temporary name, then rename."""
    arrays, plain = {}, {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if isinstance(value, np.ndarray):
            arrays[f"field:{f.name}"] = value
        else:
            plain[f.name] = _jsonable(value)
    cls = type(result)
    meta = {"key": key, "class": f"{cls.__module__}.{cls.__qualname__}", "fields": plain,
            "saved": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{time.monotonic_ns()}.partial.npz")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), x_check=_check_sample(x), **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load(path: Path, key: dict, x: np.ndarray) -> tuple[Any, dict] | None:
    """The result in ``path`` and its metadata if it was saved under ``key`` for images like ``x``."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta["key"] != key:
            return None
        check = z["x_check"]
        sample = _check_sample(x)
        if check.shape != sample.shape or not np.allclose(check, sample, atol=CHECK_ATOL, rtol=0):
            return None
        arrays = {name.split(":", 1)[1]: z[name] for name in z.files if name.startswith("field:")}
    module, _, qualname = meta["class"].rpartition(".")
    if not module.startswith(__name__.rsplit(".", 1)[0] + "."):
        raise ValueError(f"{meta['class']} is not a course_utils result")
    cls = getattr(importlib.import_module(module), qualname)
    return cls(**arrays, **{k: _tuples(v) for k, v in meta["fields"].items()}), meta


def cached(fn: Callable[..., T], model: Any, x: np.ndarray, /, **kwargs: Any) -> T:
    """``fn(model, x, **kwargs)``, loaded from the data folder when it was computed before.

    Args:
        fn: a course function of a Keras model and images returning a dataclass whose fields
            are arrays and plain values (e.g. :func:`course_utils.perturb.prediction_attack`).
        model: the Keras model (identified by its weights).
        x: (n, H, W, C) images (identified by their shape and a sample of pixels).
        **kwargs: the function's keyword arguments (part of the key).

    Returns:
        The result; when loaded, a line says from where and how long computing it took.
    """
    x = np.asarray(x)
    key = result_key(fn, model, x, kwargs)
    for folder in config.read_dirs(RESULTS_DIR):
        path = result_path(key, folder)
        if not path.exists():
            continue
        try:
            loaded = _load(path, key, x)
        except Exception as e:  # noqa: BLE001 - a damaged file of any kind is computed again
            print(f"note: the cached result {path} could not be read ({type(e).__name__}: "
                  f"{str(e)[:120]}); computing it again.", flush=True)
            continue
        if loaded is None:
            continue
        result, meta = loaded
        seconds = getattr(result, "seconds", None)
        took = f" in {seconds:.0f} s" if isinstance(seconds, float) else ""
        print(f"{fn.__name__}: loaded the result computed{took} on {meta['saved'][:16]} UTC from "
              f"{path} (same model weights, images and settings; delete the file to recompute).",
              flush=True)
        return result
    result = fn(model, x, **kwargs)
    folder = config.writable_dir(RESULTS_DIR)
    try:
        _save(result, key, x, result_path(key, folder))
    except OSError as e:
        print(f"note: the result could not be cached in {folder} ({e.strerror or e}); it is used "
              "now and computed again next time.", flush=True)
    return result
