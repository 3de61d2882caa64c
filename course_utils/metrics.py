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


# ------------------------------------------------------------------ classifier evaluation
def binary_report(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5,
                  n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Evaluate a binary classifier as a paper would, with 95% confidence intervals.

    ``labels``: (n,) with 1 = positive (COVID); ``probs``: (n,) predicted p(positive). A case
    is called positive when p > ``threshold`` (the article used 50%). Returns counts (tp, fp,
    tn, fn), accuracy, sensitivity, specificity (each with a Wilson 95% CI: ``*_lo``,
    ``*_hi``) and ROC AUC (with a percentile-bootstrap 95% CI over cases).
    """
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(int).ravel()
    probs = np.asarray(probs, dtype=np.float64).ravel()
    if labels.shape != probs.shape:
        raise ValueError(f"labels {labels.shape} and probs {probs.shape} differ in shape")
    if not set(np.unique(labels)) <= {0, 1} or len(np.unique(labels)) < 2:
        raise ValueError("labels must contain both classes, coded 0 and 1")
    pred = probs > threshold
    tp, fn = int((pred & (labels == 1)).sum()), int((~pred & (labels == 1)).sum())
    tn, fp = int((~pred & (labels == 0)).sum()), int((pred & (labels == 0)).sum())
    out: dict[str, float] = {"n": len(labels), "tp": tp, "fp": fp, "tn": tn, "fn": fn}
    for name, k, n in (("accuracy", tp + tn, len(labels)), ("sensitivity", tp, tp + fn),
                       ("specificity", tn, tn + fp)):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        out |= {name: k / n, f"{name}_lo": ci.low, f"{name}_hi": ci.high}
    out["auc"] = float(roc_auc_score(labels, probs))
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):  # resample cases; skip draws with a single class
        idx = rng.integers(0, len(labels), len(labels))
        if labels[idx].min() != labels[idx].max():
            boot.append(roc_auc_score(labels[idx], probs[idx]))
    out["auc_lo"], out["auc_hi"] = (float(q) for q in np.percentile(boot, [2.5, 97.5]))
    return out
