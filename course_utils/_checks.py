"""Input validation and batching shared by the package's modules (private).

Every check returns the validated value (converted where that is free) or raises a
``ValueError`` that says what was expected, what was given and, where it helps, what to do.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: Values held at once when work over images is split into memory-bounded chunks.
CHUNK_VALUES = 1 << 22


def batches(n: int, size: int) -> list[slice]:
    """Slices covering ``range(n)`` in consecutive chunks of ``size`` (the last may be shorter)."""
    size = positive_int(size, "batch_size")
    return [slice(lo, min(n, lo + size)) for lo in range(0, n, size)]


def chunks(n: int, values_per_item: int) -> Iterator[slice]:
    """Slices over ``n`` items, each covering about :data:`CHUNK_VALUES` values."""
    yield from batches(n, max(1, CHUNK_VALUES // max(1, values_per_item)))


def positive_int(value: object, name: str) -> int:
    """``value`` as an int >= 1 (bools refused), or ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def in_unit_interval(value: object, name: str, units: str = "") -> float:
    """``value`` as a float in [0, 1], or ValueError (``units`` says what the number means)."""
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if not ok or not 0.0 <= float(value) <= 1.0:
        what = f" ({units})" if units else ""
        raise ValueError(f"{name} must be a number in [0, 1]{what}, got {value!r}")
    return float(value)


def images(x: object, name: str = "images", *, unit_range: bool = False) -> np.ndarray:
    """A non-empty batch (n, H, W, C) as float32; with ``unit_range`` also finite and in [0, 1]."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch of shape (n, H, W, C), got shape "
                         f"{arr.shape}; add a batch axis with x[None] for one image")
    if unit_range:
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contain NaN or infinite values")
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError(f"{name} must be intensities in [0, 1], got min {arr.min():.3g} and "
                             f"max {arr.max():.3g}; rescale them first (e.g. x / 255)")
    return arr


def maps(x: object, name: str = "maps", ndims: tuple[int, ...] = (3,)) -> np.ndarray:
    """A non-empty batch of real, finite maps with ``ndim`` in ``ndims`` (no copy if possible)."""
    arr = np.asarray(x)
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must be a real-valued array, got dtype {arr.dtype}")
    shapes = " or ".join({3: "(n, H, W)", 4: "(n, H, W, C)"}[d] for d in ndims)
    if arr.ndim not in ndims or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty batch of maps shaped {shapes}, got shape "
                         f"{arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contain NaN or inf values")
    return arr


def same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    """ValueError unless ``a`` and ``b`` have the same shape."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got "
                         f"{np.shape(a)} and {np.shape(b)}")


def masks(x: object, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A boolean (or 0/1) mask batch of the given shape, as a bool array."""
    m = np.asarray(x)
    if m.shape != tuple(shape):
        raise ValueError(f"{name} has shape {m.shape}, expected the same shape as the maps "
                         f"{tuple(shape)}")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise ValueError(f"{name} must be a boolean mask (or contain only 0 and 1)")
        m = m.astype(bool)
    return m


def probabilities(p: object, name: str) -> np.ndarray:
    """(n,) float64 probabilities, finite and in [0, 1]; an (n, 1) model output is accepted."""
    x = np.asarray(p, np.float64)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"{name} must be (n,) probabilities of the positive class, got shape "
                         f"{np.shape(p)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    if (x < 0).any() or (x > 1).any():
        raise ValueError(f"{name} must be probabilities in [0, 1] (not logits), got values in "
                         f"[{x.min():.3g}, {x.max():.3g}]")
    return x


def bootstrap_args(n_boot: object, confidence: float) -> None:
    """ValueError unless ``n_boot`` is a positive integer and ``confidence`` is in (0, 1)."""
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def indices(idx: object, n: int) -> np.ndarray:
    """A 1-D int64 array of row indices in [0, n)."""
    arr = np.asarray(idx)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"indices must be a 1-D array of integers, got shape {arr.shape} "
                         f"and dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ValueError(f"indices must lie in [0, {n}) (the set's size), got "
                         f"{arr.min()}..{arr.max()}")
    return arr.astype(np.int64)


def maps_of(maps: object, images: np.ndarray, name: str) -> np.ndarray:
    """``maps`` as float32, checked to be one (H, W) map per image of ``images`` (n, H, W, C)."""
    arr = np.asarray(maps, np.float32)
    if arr.shape != images.shape[:3]:
        raise ValueError(f"{name}: expected maps of shape {images.shape[:3]}, got {arr.shape}")
    return arr


def targets(t: object, n: int | None = None) -> np.ndarray:
    """Class indices as a 1-D int64 array: one int (broadcast later) or one per image.

    Integer-valued floats (labels stored as 0.0/1.0) are accepted; anything else — e.g.
    probabilities such as 0.73, which would silently become class 0 — is refused, as are 2-D
    arrays and a length other than ``n``.
    """
    arr = np.asarray(t)
    if arr.ndim > 1:
        raise ValueError(f"targets must be one class index or one per image (1-D), got shape "
                         f"{arr.shape}")
    if arr.size == 0:
        raise ValueError("targets is empty: give one class index or one per image")
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"targets must be class indices (integers), got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not (np.isfinite(arr).all()
                                                      and (arr == np.round(arr)).all()):
        bad = arr[~(np.isfinite(arr) & (arr == np.round(arr)))].ravel()[0]
        raise ValueError(f"targets must be class indices (integers), got {bad!r}: probabilities? "
                         "Use e.g. (p > 0.5).astype(int) for the predicted class")
    arr = np.atleast_1d(arr.astype(np.int64))
    if n is not None and arr.size not in (1, n):
        raise ValueError(f"targets has {arr.size} entries for {n} images: give one class index "
                         "for all, or one per image")
    return arr
