"""Metrics on saliency maps (this module grows with notebooks 03-05).

All functions are batched: maps are (n, H, W) arrays and results are (n,) arrays.
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def _flat_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"expected two batches of maps with the same shape (n, H, W), got "
                         f"{a.shape} and {b.shape}")
    return a.reshape(len(a), -1), b.reshape(len(b), -1)


def spearman_maps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation between paired maps: (n, H, W) x (n, H, W) -> (n,) in [-1, 1].

    Ties get average ranks (as in :func:`scipy.stats.spearmanr`); a constant map gives NaN.
    """
    fa, fb = _flat_pair(a, b)
    ra, rb = stats.rankdata(fa, axis=1), stats.rankdata(fb, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denom = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (ra * rb).sum(1) / denom, np.nan)


def top_fraction_overlap(a: np.ndarray, b: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    """Share of the top-``fraction`` pixels of ``a`` that are also in the top of ``b``: (n,) in [0, 1].

    A reader looks at the brightest spots of a heat-map, not at all ranks; this asks
    whether two maps would draw the eye to the same places.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    fa, fb = _flat_pair(a, b)
    k = max(1, int(round(fraction * fa.shape[1])))
    top_a = np.argpartition(-fa, k - 1, axis=1)[:, :k]
    top_b = np.argpartition(-fb, k - 1, axis=1)[:, :k]
    in_b = np.zeros_like(fb, dtype=bool)
    np.put_along_axis(in_b, top_b, True, axis=1)
    return np.take_along_axis(in_b, top_a, axis=1).mean(axis=1)
