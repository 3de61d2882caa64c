"""Course-wide settings: the random seed, where data lives, and fast mode.

Every notebook and every helper reads its settings from here so that one
environment variable changes the whole course:

* ``COURSE_FAST=1``  – shrink data sets, epochs and sample counts (CI and quick tries).
* ``COURSE_DATA_DIR`` – where downloaded and generated assets are cached
  (default: ``data/`` in the repository checkout, else ``~/.cache/saliency-course``).
* ``COURSE_OFFLINE=1`` – never touch the network, even if it is reachable.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

#: The seed used by every notebook unless a cell says otherwise.
SEED: int = 42

_TRUE = {"1", "true", "yes", "on"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def fast_mode() -> bool:
    """True when ``COURSE_FAST`` is set to 1/true/yes/on (smaller data, fewer iterations)."""
    return _flag("COURSE_FAST")


def offline_forced() -> bool:
    """True when ``COURSE_OFFLINE`` asks the course never to use the network."""
    return _flag("COURSE_OFFLINE")


def repo_root() -> Path | None:
    """The repository checkout this package lives in, or None for a non-editable install."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() and (here / "notebooks").is_dir() else None


def data_dir() -> Path:
    """Directory for cached assets (created on first use).

    ``COURSE_DATA_DIR`` wins; otherwise ``<repo>/data`` for a checkout, else
    ``~/.cache/saliency-course``.
    """
    env = os.environ.get("COURSE_DATA_DIR")
    if env:
        path = Path(env).expanduser()
    elif (root := repo_root()) is not None:
        path = root / "data"
    else:
        path = Path.home() / ".cache" / "saliency-course"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pick(full, fast):
    """Return ``fast`` in fast mode and ``full`` otherwise (the one fast-mode knob).

    >>> pick(full=20, fast=3)  # doctest: +SKIP
    """
    return fast if fast_mode() else full


def set_seed(seed: int = SEED) -> None:
    """Seed Python, NumPy and (if imported) TensorFlow/Keras for reproducible runs."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import keras

        keras.utils.set_random_seed(seed)
    except ImportError:  # pragma: no cover - keras is a hard dependency
        pass
