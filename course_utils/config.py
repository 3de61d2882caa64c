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
_FALSE = {"", "0", "false", "no", "off"}


class ConfigError(ValueError):
    """A course setting (environment variable) is unusable; the message names it and the fix."""


def _flag(name: str) -> bool:
    """Read an on/off environment variable; anything but the usual spellings is an error."""
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={os.environ[name]!r} is neither on nor off: use 1/true/yes/on or "
                      f"0/false/no/off (or unset it).")


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

    ``COURSE_DATA_DIR`` wins (``~`` expanded; a relative path is taken relative to the
    repository checkout, so ``make prefetch`` at the root and the notebooks in ``notebooks/``
    share one cache); otherwise ``<repo>/data`` for a checkout, else ``~/.cache/saliency-course``.
    Raises :class:`ConfigError` naming the problem if the folder cannot be used.
    """
    env = os.environ.get("COURSE_DATA_DIR", "").strip()
    if env:
        try:
            path = Path(env).expanduser()
        except RuntimeError:  # "~otheruser" that does not exist
            raise ConfigError(f"COURSE_DATA_DIR={env!r}: cannot expand the home folder in it; "
                              "give a full path.") from None
        if not path.is_absolute():
            path = (repo_root() or Path.cwd()) / path
    elif (root := repo_root()) is not None:
        path = root / "data"
    else:
        path = Path.home() / ".cache" / "saliency-course"
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            what = "is a file" if part == path else f"lies under the file {part}"
            raise ConfigError(f"The course's data folder {path} {what}. Point COURSE_DATA_DIR "
                              "at a folder (or unset it to use the default).")
        if part.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"The course's data folder {path} cannot be created ({e.strerror}). "
                          "Point COURSE_DATA_DIR at a folder you can write to.") from None
    return path


def user_cache_dir() -> Path:
    """This user's own cache, ``$XDG_CACHE_HOME/saliency-course`` or ``~/.cache/saliency-course``.

    Used for new files when the configured data folder is shared and not writable for this user.
    """
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "saliency-course"


def is_writable(folder: Path) -> bool:
    """True if files can be created in ``folder`` (an existing directory) by this process."""
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


_told_fallback: set[str] = set()


def writable_dir(sub: str = "") -> Path:
    """Where new files of kind ``sub`` (e.g. "models", "weights") go, created if needed.

    ``data_dir()/sub`` when this user may write there; otherwise (a shared workshop folder that
    is read-only, or owned by another user) the same place under :func:`user_cache_dir`, with a
    one-time note saying so. Files already in the shared folder are still read from there
    (:func:`read_dirs`).
    """
    shared = data_dir() / sub if sub else data_dir()
    try:
        make_dir(shared)
        if is_writable(shared):
            return shared
    except OSError:
        pass
    own = user_cache_dir() / sub if sub else user_cache_dir()
    make_dir(own)
    if str(shared) not in _told_fallback:
        _told_fallback.add(str(shared))
        print(f"note: {shared} is not writable for you (a shared folder?); new files go to {own}, "
              "and files already in the shared folder are still used.")
    return own


def read_dirs(sub: str = "") -> list[Path]:
    """Folders to look in for a cached file of kind ``sub``: the data folder, then the user cache."""
    dirs = [data_dir() / sub if sub else data_dir()]
    own = user_cache_dir() / sub if sub else user_cache_dir()
    return dirs + ([own] if own not in dirs else [])


def make_dir(path: Path) -> Path:
    """``mkdir -p`` that shares like its parent: a new folder inside a group- (or world-)
    writable folder gets the same write bits and set-group-id bit, so that every learner of a
    workshop can add files to a shared cache (the umask would otherwise drop those bits).
    """
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for new in reversed(missing):
        try:
            parent_mode = new.parent.stat().st_mode
            extra = parent_mode & (0o020 | 0o002 | 0o2000)  # g+w, o+w, setgid
            if extra:
                os.chmod(new, new.stat().st_mode | extra | (0o010 if extra & 0o020 else 0)
                         | (0o001 if extra & 0o002 else 0))
        except OSError:
            pass
    return path


def file_mode() -> int:
    """Permission bits a new file gets under this process's umask (e.g. 0o644 for umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


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
