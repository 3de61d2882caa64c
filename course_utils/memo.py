"""Expensive results computed once and kept in the data folder (notebook 05's attacks, 03's
perturbation maps and faithfulness curves).

``memo.cached(perturb.prediction_attack, model, x, eps=0.015, steps=60)`` calls the function the
first time and saves its result (a dataclass of arrays and plain values) under
``<data>/results/``; later calls with the same model weights, the same images and the same
arguments load it instead. ``python -m course_utils stage`` runs the notebooks with the data
folder as cache, so a staged workshop folder carries these results next to the trained models,
and a notebook that would spend minutes on an attack loads it in a second.

What makes a result "the same":

* the function and its other arguments (any change computes anew; integer arrays such as class
  indices must match exactly, float arrays such as saliency maps as the images do);
* the model's weights (a digest of their bytes: a staged or copied model matches, a model
  trained again on another laptop does not);
* the images (and any float array argument): their shape is part of the key, and a sample of
  their values must agree to ``1e-4`` of the array's largest value (relative ``1e-4``). They are
  compared with a tolerance, not hashed, because float results' last bits differ between CPUs
  (the phantom gives the same images to 1e-7 on every CPU, not the same bytes);
* the course's code (its syntax: comments and docstrings do not count) and the TensorFlow/Keras
  versions that computed it.

Files are written under a temporary name and renamed, so a crash or a second learner writing
the same result never leaves a half-written file; a file that cannot be read is ignored and
computed again; a read-only shared folder is read and new results go to the user's own cache
(:func:`course_utils.config.writable_dir`).
"""
from __future__ import annotations

import ast
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
#: Values of each float array argument (the images, maps) kept with a result to check it on load.
N_CHECK_PIXELS = 4096
#: Tolerance of that check, relative to the array's largest magnitude (and to each value).
CHECK_ATOL = 1e-4

T = TypeVar("T")

#: Functions whose loaded results this process has already reported (one note each).
_told_loaded: set[str] = set()


@functools.cache
def code_digest() -> str:
    """SHA-256 (16 hex digits) of the course package's code (:func:`source_digest` of its modules)."""
    return source_digest(sorted(Path(__file__).parent.glob("*.py")))


def source_digest(paths: list[Path]) -> str:
    """SHA-256 (16 hex digits) of Python files' code: their syntax trees without docstrings.

    Any change to what the code does changes it; comments, docstrings and layout do not, so a
    course update that only fixes documentation keeps a staged folder's results valid.
    """
    h = hashlib.sha256()
    for path in paths:
        tree = ast.parse(path.read_bytes(), filename=str(path))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                    and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        h.update(path.name.encode())
        h.update(ast.dump(tree, include_attributes=False).encode())
    return h.hexdigest()[:16]


def model_digest(model: Any) -> str:
    """SHA-256 (16 hex digits) of a Keras model's layer types and weights (shapes, dtypes, bytes).

    The weights are read one variable at a time (``get_weights()`` would copy all of them at
    once: +0.55 GB for VGG16) and hashed in place, without a ``tobytes()`` copy (VGG16: 0.4 s
    instead of 0.75-2.8 s); the digest is the same.
    """
    h = hashlib.sha256()
    h.update(",".join(type(layer).__name__ for layer in model.layers).encode())
    for variable in model.weights:
        w = np.ascontiguousarray(variable.numpy())
        h.update(f"{w.dtype}{w.shape}".encode())
        h.update(w)  # the array's buffer (C-contiguous), the same bytes as w.tobytes()
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


def _storable(value: Any) -> Any:
    """A result's non-array field as JSON (arrays inside, e.g. targets in settings, kept whole)."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, dict):
        return {str(k): _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable(v) for v in value]
    return _jsonable(value)


def _restored(value: Any) -> Any:
    """Inverse of :func:`_storable`; JSON lists come back as tuples (settings use tuples)."""
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"])
        return {k: _restored(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_restored(v) for v in value)
    return value


def _check_sample(x: np.ndarray) -> np.ndarray:
    """(N_CHECK_PIXELS,) values of ``x`` at evenly spaced flat positions."""
    flat = x.reshape(-1)
    return flat[np.linspace(0, flat.size - 1, min(N_CHECK_PIXELS, flat.size)).astype(np.int64)]


def _same(saved: np.ndarray, now: np.ndarray) -> bool:
    """Two samples agree to CHECK_ATOL of the saved one's largest magnitude (and relatively)."""
    if saved.shape != now.shape:
        return False
    scale = float(np.abs(saved).max()) if saved.size else 0.0
    return bool(np.allclose(saved, now, rtol=CHECK_ATOL, atol=CHECK_ATOL * scale, equal_nan=True))


def _stack() -> dict[str, str]:
    """TensorFlow and Keras versions (a result computed by another version is computed anew)."""
    from .environment import version

    return {dist: version(dist) for dist in ("tensorflow", "keras")}


def _describe(value: Any, name: str, checks: dict[str, np.ndarray]) -> Any:
    """Key form of one argument; a float array goes into ``checks`` (compared on load)."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        checks[name] = _check_sample(value)
        return {"float array": list(value.shape), "dtype": str(value.dtype)}
    return _jsonable(value)


def result_key(fn: Callable, model: Any, x: np.ndarray, args: tuple = (), kwargs: dict | None = None
               ) -> tuple[dict, dict[str, np.ndarray]]:
    """What identifies ``fn(model, x, *args, **kwargs)``: a JSON-ready key (names the file) and
    samples of the float arrays (checked with a tolerance on load).
    """
    checks: dict[str, np.ndarray] = {}
    key = {"function": f"{fn.__module__}.{fn.__qualname__}", "model": model_digest(model),
           "x": _describe(x, "x", checks),
           "args": [_describe(a, f"arg{i}", checks) for i, a in enumerate(args)],
           "kwargs": {k: _describe(v, f"kw.{k}", checks) for k, v in (kwargs or {}).items()},
           "code": code_digest(), "stack": _stack()}
    return key, checks


def _stem(key: dict) -> str:
    """``<function>_<digest of key>``: the start of every file name for ``key``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return f"{key['function'].rsplit('.', 1)[-1]}_{digest}"


def result_path(key: dict, checks: dict[str, np.ndarray], folder: Path) -> Path:
    """File of a new result in ``folder``: ``<function>_<digest of key>_<digest of inputs>.npz``.

    Several results can share a key (e.g. one faithfulness test of five maps of one shape):
    the exact bytes of the sampled float inputs tell their files apart. Lookup does not use
    that digest (another CPU's rounding changes it); it checks every file of the key.
    """
    h = hashlib.sha256()
    for name in sorted(checks):
        h.update(name.encode())
        h.update(np.ascontiguousarray(checks[name]).tobytes())
    return folder / f"{_stem(key)}_{h.hexdigest()[:8]}.npz"


def _candidates(key: dict, folder: Path) -> list[Path]:
    """Files in ``folder`` that may hold a result for ``key``, newest first."""
    try:
        found = list(folder.glob(f"{_stem(key)}_*.npz"))
        return sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)
    except OSError:  # a folder that vanished or cannot be listed: nothing cached there
        return []


def _save(result: Any, key: dict, checks: dict[str, np.ndarray], path: Path) -> None:
    """Write ``result`` (a dataclass) to ``path`` atomically: a unique temporary name, then rename."""
    arrays, plain = {}, {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if isinstance(value, np.ndarray):
            arrays[f"field:{f.name}"] = value
        else:
            plain[f.name] = _storable(value)
    cls = type(result)
    meta = {"key": key, "class": f"{cls.__module__}.{cls.__qualname__}", "fields": plain,
            "saved": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    write_npz(path, meta=np.array(json.dumps(meta)), **arrays,
              **{f"check:{name}": v for name, v in checks.items()})


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` (uncompressed) to ``path`` atomically: a unique hidden temporary name in the
    same folder, then a rename, so readers never see a half-written file and two writers of the
    same file leave one whole copy.
    """
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{time.monotonic_ns()}.partial.npz")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load(path: Path, key: dict, checks: dict[str, np.ndarray]) -> tuple[Any, dict] | None:
    """The result in ``path`` and its metadata if it was saved under ``key`` for arrays that
    agree with ``checks``; None if not.
    """
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta["key"] != key or {n for n in z.files if n.startswith("check:")} != {
                f"check:{name}" for name in checks}:
            return None
        if not all(_same(z[f"check:{name}"], sample) for name, sample in checks.items()):
            return None
        arrays = {name.split(":", 1)[1]: z[name] for name in z.files if name.startswith("field:")}
    module, _, qualname = meta["class"].rpartition(".")
    if not module.startswith(__name__.rsplit(".", 1)[0] + "."):
        raise ValueError(f"{meta['class']} is not a course_utils result")
    cls = getattr(importlib.import_module(module), qualname)
    return cls(**arrays, **{k: _restored(v) for k, v in meta["fields"].items()}), meta


def cached(fn: Callable[..., T], model: Any, x: np.ndarray, /, *args: Any, **kwargs: Any) -> T:
    """``fn(model, x, *args, **kwargs)``, loaded from the data folder when it was computed before.

    Args:
        fn: a course function of a Keras model and images returning a dataclass whose fields
            are arrays and plain values (e.g. :func:`course_utils.perturb.prediction_attack`,
            :func:`course_utils.saliency.compute`, :func:`course_utils.faithfulness.road`).
        model: the Keras model (identified by its weights).
        x: (n, H, W, C) images (identified by their shape and a sample of pixels).
        *args: the function's other positional arguments (part of the key; float arrays
            such as maps are checked like the images).
        **kwargs: its keyword arguments (likewise).

    Returns:
        The result; when loaded, a line says from where and how long computing it took.
    """
    x = np.asarray(x)
    key, checks = result_key(fn, model, x, args, kwargs)
    for path in (p for folder in config.read_dirs(RESULTS_DIR) for p in _candidates(key, folder)):
        try:
            loaded = _load(path, key, checks)
        except Exception as e:  # noqa: BLE001 - a damaged file of any kind is computed again
            print(f"note: the cached result {path} could not be read ({type(e).__name__}: "
                  f"{str(e)[:120]}); computing it again.", flush=True)
            continue
        if loaded is None:
            continue
        result, meta = loaded
        if fn.__name__ not in _told_loaded:  # one line per function, not one per result
            _told_loaded.add(fn.__name__)
            seconds = getattr(result, "seconds", None)
            took = f" in {seconds:.0f} s" if isinstance(seconds, float) else ""
            print(f"{fn.__name__}: loaded the result computed{took} on {meta['saved'][:16]} UTC "
                  f"from {path} (same model weights, inputs and settings; delete the file to "
                  "recompute). Further cached results of this function load without a note.",
                  flush=True)
        return result
    result = fn(model, x, *args, **kwargs)
    folder = config.writable_dir(RESULTS_DIR)
    try:
        _save(result, key, checks, result_path(key, checks, folder))
    except OSError as e:
        print(f"note: the result could not be cached in {folder} ({e.strerror or e}); it is used "
              "now and computed again next time.", flush=True)
    return result


@dataclasses.dataclass(frozen=True)
class Inventory:
    """What a results folder holds: ``current`` files can load with this code and software stack,
    ``stale`` files were computed by another version of the course's code or of TF/Keras (they
    never load again); ``unreadable`` files are damaged. Each is a list of paths; sizes in bytes.
    """

    current: list[Path]
    stale: list[Path]
    unreadable: list[Path]

    @staticmethod
    def size(paths: list[Path]) -> int:
        """Total size of ``paths`` in bytes (files that vanished count 0)."""
        return sum(p.stat().st_size for p in paths if p.is_file())


def inventory(folder: Path) -> Inventory:
    """Sort the results in ``folder`` (a ``results/`` folder) by whether they can still load here.

    A result's key holds the code digest and the TF/Keras versions it was computed with
    (:func:`result_key`); only its metadata is read, not its arrays.
    """
    current, stale, unreadable = [], [], []
    here = {"code": code_digest(), "stack": _stack()}
    for path in sorted(Path(folder).glob("*.npz")):
        if path.name.startswith("."):  # another process's temporary file
            continue
        try:
            with np.load(path, allow_pickle=False) as z:
                key = json.loads(str(z["meta"]))["key"]
        except Exception:  # noqa: BLE001 - any damage counts as unreadable
            unreadable.append(path)
            continue
        same = key.get("code") == here["code"] and key.get("stack") == here["stack"]
        (current if same else stale).append(path)
    return Inventory(current, stale, unreadable)


def prune(folder: Path, *, dry_run: bool = False) -> tuple[int, int]:
    """Delete the stale and unreadable results in ``folder``: ``(files, bytes)`` removed
    (with ``dry_run``: what would be removed, nothing deleted).

    Used by ``python -m course_utils stage`` on the folder it stages: results of another code
    version or software stack can never load there again, and a staged folder is copied to
    every learner. Files that cannot be deleted (read-only folder) are left and not counted.
    """
    inv = inventory(folder)
    files = nbytes = 0
    for path in inv.stale + inv.unreadable:
        try:
            size = path.stat().st_size
            if not dry_run:
                path.unlink()
        except OSError:
            continue
        files, nbytes = files + 1, nbytes + size
    return files, nbytes
