"""Metrics on saliency maps and classifiers, used by notebooks 01-05.

Similarity (Spearman, SSIM, top-fraction overlap), region attribution and localisation
(pointing game, IoU), divergences and the prediction-saliency correlation (PSC, Zhang et al.
2024, as the authors' public code computes it), bootstrap confidence intervals, and the
evaluation of a binary classifier. All functions are batched: maps are (n, H, W) arrays,
masks (n, H, W) bool, and per-image results (n,) arrays.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

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


# =========================================================================== notebooks 03-05
# Region attribution, localisation, similarity, divergences, PSC and bootstrap CIs.
# Conventions: saliency maps are (n, H, W) arrays, masks (n, H, W) bool, per-image results
# (n,) float64 arrays. Work over images is vectorised, in chunks of about 4 M values so that a
# few thousand 128 x 128 maps never need more than a few hundred MB.


if TYPE_CHECKING:
    import pandas as pd

#: Name of the region :func:`region_attribution` adds as the complement of ``"body"``.
OUTSIDE_BODY = "outside body"

_CHUNK_VALUES = 1 << 22  # values held at once when processing images in chunks


def _image_chunks(n: int, values_per_image: int) -> Iterator[slice]:
    """Slices over ``n`` images, each covering about ``_CHUNK_VALUES`` values."""
    step = max(1, _CHUNK_VALUES // max(1, values_per_image))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def _maps(maps: np.ndarray, name: str = "maps", ndims: tuple[int, ...] = (3,)) -> np.ndarray:
    """Validate a batch of real, finite maps with ``ndim`` in ``ndims`` (no copy if possible)."""
    x = np.asarray(maps)
    if x.dtype == bool:
        x = x.astype(np.float32)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"{name} must be a real-valued array, got dtype {x.dtype}")
    shapes = " or ".join({3: "(n, H, W)", 4: "(n, H, W, C)"}[d] for d in ndims)
    if x.ndim not in ndims or x.size == 0:
        raise ValueError(f"{name} must be a non-empty batch of maps shaped {shapes}, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or inf values")
    return x


def _masks(masks: np.ndarray, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Validate a boolean (or 0/1) mask batch of the given shape; returns a bool array."""
    m = np.asarray(masks)
    if m.shape != tuple(shape):
        raise ValueError(f"{name} has shape {m.shape}, expected the same shape as the maps {tuple(shape)}")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise ValueError(f"{name} must be a boolean mask (or contain only 0 and 1)")
        m = m.astype(bool)
    return m


def minmax(x: np.ndarray) -> np.ndarray:
    """Per-image min-max scaling of (n, H, W) maps to [0, 1] (float64); constant maps become 0."""
    x = np.asarray(x, np.float64)
    lo = x.min(axis=(1, 2), keepdims=True)
    span = x.max(axis=(1, 2), keepdims=True) - lo
    return np.divide(x - lo, span, out=np.zeros_like(x), where=span > 0)


def nanmean(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """:func:`numpy.nanmean` without the warning for an all-NaN slice (which gives NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


# ------------------------------------------------------------------ region attribution
@dataclass(frozen=True)
class RegionAttribution:
    """Where the saliency mass lies, per region and per image (see :func:`region_attribution`).

    Attributes:
        mass_share: region -> (n,) share of the map's total |saliency| inside the region, in
            [0, 1] (NaN for an all-zero map). Overlapping regions each count the shared pixels.
        area_share: region -> (n,) share of the image's pixels inside the region, in [0, 1].
        enrichment: region -> (n,) ``mass_share / area_share``: 1 = the region gets the saliency
            its size predicts (a uniform map), > 1 = over-attended, < 1 = under-attended;
            NaN where the region is empty in that image (or the map is all zero).
    """

    mass_share: dict[str, np.ndarray]
    area_share: dict[str, np.ndarray]
    enrichment: dict[str, np.ndarray]

    @property
    def regions(self) -> list[str]:
        """Region names, in the order they were given (``"outside body"`` last if added)."""
        return list(self.mass_share)

    def table(self, labels: np.ndarray | None = None,
              groups: Mapping[object, str] | None = None, *, n_boot: int = 0,
              seed: int = 0) -> pd.DataFrame:
        """Means over images per region (and per class when ``labels`` are given).

        Args:
            labels: optional (n,) class per image (0 = normal, 1 = COVID), or any other grouping
                of the images (e.g. ``has_marker``).
            groups: names for the label values; default ``{0: "normal", 1: "COVID"}`` for
                integer labels and none for boolean ones; values without a name are shown as
                ``str(value)``.

        Returns:
            DataFrame indexed by region (or by (region, class) with ``labels``) with columns
            ``mass_share``, ``area_share``, ``enrichment`` (means of the per-image values,
            NaNs ignored; enrichment is the mean of per-image ratios, not a ratio of means) and
            ``n_images`` (images where the enrichment is defined, i.e. the region is not empty).
            With ``n_boot > 0`` also ``enrichment_lo`` / ``enrichment_hi``: a 95% percentile
            bootstrap interval of the mean enrichment over images.
        """
        import pandas as pd

        n = len(next(iter(self.mass_share.values())))
        if labels is None:
            keys, names = np.zeros(n, dtype=int), {0: "all"}
        else:
            keys = np.asarray(labels).ravel()
            if keys.shape != (n,):
                raise ValueError(f"labels must have shape ({n},), got {np.shape(labels)}")
            if groups is None:
                groups = {} if keys.dtype == bool else {0: "normal", 1: "COVID"}
            names = dict(groups)
        rows = []
        for region in self.regions:
            for key in np.unique(keys):
                sel = keys == key
                row = {
                    "region": region, "class": names.get(key.item(), str(key.item())),
                    "mass_share": nanmean(self.mass_share[region][sel]),
                    "area_share": nanmean(self.area_share[region][sel]),
                    "enrichment": nanmean(self.enrichment[region][sel]),
                    "n_images": int(np.isfinite(self.enrichment[region][sel]).sum()),
                }
                if n_boot:
                    values = self.enrichment[region][sel]
                    values = values[np.isfinite(values)]
                    _, row["enrichment_lo"], row["enrichment_hi"] = (
                        bootstrap_ci(values, n_boot=n_boot, seed=seed) if len(values)
                        else (np.nan, np.nan, np.nan))
                rows.append(row)
        df = pd.DataFrame(rows)
        return df.drop(columns="class").set_index("region") if labels is None \
            else df.set_index(["region", "class"])


def region_attribution(maps: np.ndarray, masks: Mapping[str, np.ndarray], *,
                       absolute: bool = True) -> RegionAttribution:
    """Share of saliency mass, share of area and their ratio (enrichment) per region.

    Args:
        maps: (n, H, W) saliency maps (raw, not min-max normalised: normalising shifts mass).
        masks: region name -> (n, H, W) bool mask. Regions may overlap (lesions inside lungs
            inside body). If ``"body"`` is given, its complement is added as ``"outside body"``
            (unless that key is already present).
        absolute: use |map| (default). With ``False`` the maps are used as they are and must be
            non-negative (a signed "mass" share is not a share).

    Returns:
        :class:`RegionAttribution` with (n,) arrays per region.
    """
    x = _maps(maps)
    if not masks:
        raise ValueError("masks is empty: give at least one region, e.g. {'lungs': ...}")
    regions = {str(k): _masks(v, f"masks[{k!r}]", x.shape) for k, v in masks.items()}
    if "body" in regions and OUTSIDE_BODY not in regions:
        regions[OUTSIDE_BODY] = ~regions["body"]
    if not absolute and (x < 0).any():
        raise ValueError("maps have negative values; use absolute=True (mass of |map|)")
    n, hw = len(x), x.shape[1] * x.shape[2]
    total = np.empty(n)
    mass = {k: np.empty(n) for k in regions}
    for sl in _image_chunks(n, hw):
        a = np.abs(x[sl].astype(np.float64))
        total[sl] = a.sum(axis=(1, 2))
        for k, m in regions.items():
            mass[k][sl] = (a * m[sl]).sum(axis=(1, 2))
    mass_share, area_share, enrichment = {}, {}, {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for k, m in regions.items():
            mass_share[k] = np.where(total > 0, mass[k] / total, np.nan)
            area_share[k] = m.sum(axis=(1, 2)) / hw
            enrichment[k] = np.where(area_share[k] > 0, mass_share[k] / area_share[k], np.nan)
    return RegionAttribution(mass_share, area_share, enrichment)


# ------------------------------------------------------------------ bootstrap confidence intervals
def _check_boot_args(n_boot: int, confidence: float) -> None:
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _bootstrap(n: int, n_boot: int, seed: int, values_per_draw: int,
               stat_of_indices: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Bootstrap distribution: ``stat_of_indices`` gets (b, n) index matrices, returns (b, ...)."""
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_VALUES // max(1, n * values_per_draw))
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for start in range(0, int(n_boot), rows):
            idx = rng.integers(0, n, size=(min(rows, int(n_boot) - start), n))
            out.append(np.asarray(stat_of_indices(idx), np.float64))
    return np.concatenate(out)


def _percentile_ci(boot: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0, ignoring resamples whose statistic is NaN."""
    alpha = (1 - confidence) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(boot, [alpha, 1 - alpha], axis=0)
    return lo, hi


def _scalar(x: np.ndarray) -> float | np.ndarray:
    x = np.asarray(x, np.float64)
    return float(x) if x.ndim == 0 else x


def bootstrap_ci(values: np.ndarray, *, statistic: Callable[..., np.ndarray] = np.nanmean,
                 n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
                 ) -> tuple[float | np.ndarray, float | np.ndarray, float | np.ndarray]:
    """Percentile-bootstrap confidence interval of ``statistic`` over the first axis.

    Images (rows of ``values``) are resampled with replacement ``n_boot`` times, all at once
    (an (n_boot, n) index matrix, processed in memory-bounded chunks).

    Args:
        values: (n,) or (n, ...) per-image values; NaNs are ignored by the default
            :func:`numpy.nanmean` (e.g. enrichment of an empty region).
        statistic: ``f(array, axis=k)`` reducing along ``axis`` like the NumPy reductions
            (``np.nanmean``, ``np.nanmedian``, ...).
        n_boot: number of resamples; confidence: e.g. 0.95; seed: for the resampling.

    Returns:
        ``(estimate, low, high)``: the statistic of all values and the percentile interval.
        Floats for (n,) input, arrays of shape ``values.shape[1:]`` otherwise. Resamples where
        the statistic is NaN (e.g. all values NaN) are left out of the interval.
    """
    v = np.asarray(values, np.float64)
    if v.ndim == 0 or len(v) == 0:
        raise ValueError(f"values must be a non-empty array with images on the first axis, got shape {v.shape}")
    _check_boot_args(n_boot, confidence)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        estimate = statistic(v, axis=0)
    boot = _bootstrap(len(v), n_boot, seed, max(1, v[0].size), lambda idx: statistic(v[idx], axis=1))
    lo, hi = _percentile_ci(boot, confidence)
    return _scalar(estimate), _scalar(lo), _scalar(hi)


def _pearson_last_axis(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis (vectorised); NaN where either side is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    constant = (x == x[..., :1]).all(-1) | (y == y[..., :1]).all(-1)
    xc = x - x.mean(-1, keepdims=True)
    yc = y - y.mean(-1, keepdims=True)
    den = np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip((xc * yc).sum(-1) / den, -1.0, 1.0)
    return np.where(constant | ~(den > 0), np.nan, r)


def _spearman_last_axis(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho along the last axis (average ranks for ties); NaN where a side is constant."""
    return _pearson_last_axis(stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1))


_PAIRED_STATISTICS = {"pearson": _pearson_last_axis, "spearman": _spearman_last_axis}


def bootstrap_ci_paired(x: np.ndarray, y: np.ndarray,
                        statistic: str | Callable[[np.ndarray, np.ndarray], np.ndarray] = "pearson",
                        *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
                        ) -> tuple[float, float, float]:
    """Percentile-bootstrap CI of a statistic of two paired (n,) arrays, e.g. a correlation.

    Both arrays are resampled with the same indices (pairs stay together).

    Args:
        x, y: (n,) paired values (one pair per image). Must be finite for the built-in
            statistics.
        statistic: ``"pearson"`` (default) or ``"spearman"`` correlation, or a callable
            ``f(x, y)`` vectorised along the last axis: given (b, n) arrays it returns (b,)
            (and a scalar for (n,) arrays). Return NaN for an undefined resample.
        n_boot, confidence, seed: as in :func:`bootstrap_ci`.

    Returns:
        ``(estimate, low, high)``. Resamples where the statistic is NaN (for the correlations: one
        side constant, which happens with few images) are skipped.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
        raise ValueError(f"x and y must be paired 1-D arrays of the same shape (n >= 2), got "
                         f"{x.shape} and {y.shape}")
    _check_boot_args(n_boot, confidence)
    if isinstance(statistic, str):
        if statistic not in _PAIRED_STATISTICS:
            raise ValueError(f"statistic must be one of {sorted(_PAIRED_STATISTICS)} or a callable, "
                             f"got {statistic!r}")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("x and y must be finite; drop the pairs with NaN first")
        statistic = _PAIRED_STATISTICS[statistic]
    estimate = statistic(x, y)
    boot = _bootstrap(len(x), n_boot, seed, 2, lambda idx: statistic(x[idx], y[idx]))
    lo, hi = _percentile_ci(boot, confidence)
    return float(estimate), float(lo), float(hi)


# ------------------------------------------------------------------ localisation
def pointing_game(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Pointing game ("hit rate", Saporta et al. 2022): does the map's maximum lie in the mask?

    Args:
        maps: (n, H, W) saliency maps (pass |map| for signed maps).
        masks: (n, H, W) bool ground truth (e.g. lesions).

    Returns:
        (n,) float64: 1.0 = hit, 0.0 = miss, NaN where the mask is empty (nothing to point at;
        :func:`numpy.nanmean` of the result is the hit rate). Ties for the maximum go to the
        first pixel in row-major order, so a constant map points at the top-left corner.
    """
    x = _maps(maps)
    m = _masks(masks, "masks", x.shape).reshape(len(x), -1)
    peak = x.reshape(len(x), -1).argmax(axis=1)
    hit = m[np.arange(len(x)), peak]
    return np.where(m.any(axis=1), hit.astype(np.float64), np.nan)


def binarise(maps: np.ndarray, method: str = "otsu", value: float | None = None) -> np.ndarray:
    """Turn saliency maps into (n, H, W) bool masks (pixels strictly above a per-image threshold).

    Methods:
        ``"otsu"`` (default, as CheXlocalize): Otsu's threshold of each map
        (:func:`skimage.filters.threshold_otsu`, 256 bins over the map's range); ``value`` must
        be None. CheXlocalize runs Otsu on the map min-max scaled to uint8, which differs only by
        rounding.
        ``"quantile"``: keep pixels above the per-image ``value`` quantile, ``0 < value < 1``
        (0.9 keeps the top 10%). Pixels tied with the threshold are dropped, so maps with large
        flat areas keep less than the nominal fraction.
        ``"threshold"``: keep pixels whose per-image min-max normalised value is above
        ``value`` in [0, 1] (CheXlocalize's tuned-threshold variant, tuned over 0.2-0.8).
    A constant map gives an empty mask with every method.
    """
    x = _maps(maps)
    if method == "otsu":
        if value is not None:
            raise ValueError("method='otsu' chooses its own threshold; value must be None")
        from skimage.filters import threshold_otsu

        out = np.zeros(x.shape, dtype=bool)
        for i, m in enumerate(x):  # Otsu is a per-image histogram search
            if m.max() > m.min():
                out[i] = m > threshold_otsu(m)
        return out
    if method == "quantile":
        if value is None or not 0 < value < 1:
            raise ValueError(f"method='quantile' needs 0 < value < 1 (0.9 keeps the top 10%), got {value}")
        t = np.quantile(x.reshape(len(x), -1), value, axis=1)
        return x > t[:, None, None]
    if method == "threshold":
        if value is None or not 0 <= value <= 1:
            raise ValueError(f"method='threshold' needs value in [0, 1] (on min-max normalised maps), got {value}")
        return minmax(x) > value
    raise ValueError(f"method must be 'otsu', 'quantile' or 'threshold', got {method!r}")


def iou(pred_masks: np.ndarray, true_masks: np.ndarray) -> np.ndarray:
    """Intersection over union per image: (n, H, W) x (n, H, W) bool -> (n,) in [0, 1].

    NaN where both masks are empty (IoU undefined); 0 where only one is.
    """
    t = np.asarray(true_masks)
    if t.ndim != 3:
        raise ValueError(f"masks must be (n, H, W), got shape {t.shape}")
    t = _masks(t, "true_masks", t.shape)
    p = _masks(pred_masks, "pred_masks", t.shape)
    inter = (p & t).sum(axis=(1, 2))
    union = (p | t).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def saliency_iou(maps: np.ndarray, true_masks: np.ndarray, method: str = "otsu",
                 value: float | None = None) -> np.ndarray:
    """IoU between binarised maps and ground-truth masks: ``iou(binarise(maps, method, value), true_masks)``.

    (n, H, W) maps and masks -> (n,) in [0, 1], NaN where both the binarised map and the mask are
    empty. The mean over images is CheXlocalize's mIoU.
    """
    return iou(binarise(maps, method, value), true_masks)


# ------------------------------------------------------------------ similarity
def ssim_maps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Structural similarity of paired maps: (n, H, W) x (n, H, W) -> (n,), 1 = identical.

    Each map is min-max scaled to [0, 1] (a constant map becomes all zeros) and compared with
    :func:`skimage.metrics.structural_similarity` (defaults: 7 x 7 uniform window) with
    ``data_range=1``. DIAL-RPI (Zhang et al.) scale to 0-255 and use ``data_range=255``, which
    gives the same value. Maps must be at least 7 x 7 pixels.
    """
    from skimage.metrics import structural_similarity

    x, y = _maps(a, "a"), _maps(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"expected two batches of maps with the same shape (n, H, W), got {x.shape} and {y.shape}")
    if min(x.shape[1:]) < 7:
        raise ValueError(f"SSIM needs maps of at least 7 x 7 pixels, got {x.shape[1:]}")
    x, y = minmax(x), minmax(y)
    return np.array([structural_similarity(u, v, data_range=1.0) for u, v in zip(x, y)])


def spearman_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of |a| and |b| per pair: (n, H, W) x (n, H, W) -> (n,) in [-1, 1].

    Adebayo et al.'s sanity checks report Spearman both with absolute values (this; a sign flip
    of the map does not count as a change) and without (:func:`spearman_maps`).
    """
    return spearman_maps(np.abs(np.asarray(a, np.float64)), np.abs(np.asarray(b, np.float64)))


# ------------------------------------------------------------------ divergences and PSC
def jensen_shannon(p: np.ndarray, q: np.ndarray, *, axis: int = -1, clamp: float = 1e-7) -> np.ndarray:
    """Jensen-Shannon divergence between distributions along ``axis``, in nats (natural log).

    Follows the DIAL-RPI code (``compute_jsd``) exactly:
    ``JSD = (KL(p || M) + KL(q || M)) / 2`` with ``M = clip((p + q) / 2, clamp, 1)`` and
    ``KL(p || M) = sum p (log p - log M)``, where terms with p = 0 are 0 (0 log 0 = 0).

    The range is [0, ln 2 ~ 0.693] nats (ln 2 for distributions with disjoint support). The clamp
    changes the result only where an entry of M is below ``clamp``: then log M is too large and the
    JSD is biased down, slightly below 0 for (near-)identical distributions with many entries in
    (0, clamp). Pass ``clamp=0`` for the exact JSD (``scipy.spatial.distance.jensenshannon(p, q)**2``).

    Args:
        p, q: non-negative arrays of the same shape, each summing to 1 along ``axis`` (not
            checked or renormalised, as in the original); NaNs propagate to the result.
        axis: the axis holding the outcomes. clamp: lower bound for M, in [0, 1).

    Returns:
        the divergence with ``axis`` removed, float64.
    """
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    if not 0 <= clamp < 1:
        raise ValueError(f"clamp must be in [0, 1), got {clamp}")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("p and q must be non-negative (probability distributions)")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_m = np.log(np.clip((p + q) / 2, clamp, 1.0))
        kl_p = np.where(p == 0, 0.0, p * (np.log(p) - log_m)).sum(axis=axis)
        kl_q = np.where(q == 0, 0.0, q * (np.log(q) - log_m)).sum(axis=axis)
    return 0.5 * (kl_p + kl_q)


def _probabilities(p: np.ndarray, name: str) -> np.ndarray:
    """(n,) probabilities, finite and in [0, 1]; an (n, 1) model output is accepted."""
    x = np.asarray(p, np.float64)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"{name} must be (n,) probabilities of the positive class, got shape {np.shape(p)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    if (x < 0).any() or (x > 1).any():
        raise ValueError(f"{name} must be probabilities in [0, 1] (not logits), got values in "
                         f"[{x.min():.3g}, {x.max():.3g}]")
    return x


def prediction_divergence(p_before: np.ndarray, p_after: np.ndarray) -> np.ndarray:
    """D_pred: JSD between the Bernoulli distributions [p, 1 - p] before and after, per image.

    Args:
        p_before, p_after: (n,) probabilities of the positive class in [0, 1] (an (n, 1) model
            output is accepted).

    Returns:
        (n,) in [0, ln 2] nats (0 = unchanged; ln 2 = a confident prediction flipped to the
        opposite certainty), with the DIAL-RPI clamp of :func:`jensen_shannon`.
    """
    pb, pa = _probabilities(p_before, "p_before"), _probabilities(p_after, "p_after")
    if pb.shape != pa.shape:
        raise ValueError(f"p_before and p_after must have the same shape, got {pb.shape} and {pa.shape}")
    return jensen_shannon(np.stack([pb, 1 - pb], -1), np.stack([pa, 1 - pa], -1))


def _saliency_pair(before: np.ndarray, after: np.ndarray, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    b, a = _maps(before, names[0], (3, 4)), _maps(after, names[1], (3, 4))
    if b.shape != a.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {b.shape} and {a.shape}")
    return b, a


def _pixel_distribution(maps: np.ndarray) -> np.ndarray:
    """|map| summed over channels (4-D), flattened and divided by its sum: (m, pixels); NaN rows
    for all-zero maps."""
    s = np.abs(maps.astype(np.float64))
    if s.ndim == 4:
        s = s.sum(axis=-1)
    s = s.reshape(len(s), -1)
    total = s.sum(axis=1, keepdims=True)
    return np.divide(s, total, out=np.full_like(s, np.nan), where=total > 0)


def saliency_divergence(maps_before: np.ndarray, maps_after: np.ndarray) -> np.ndarray:
    """D_sal: JSD between saliency maps seen as distributions over pixels, per image.

    As in the DIAL-RPI code: |map|, summed over channels for (n, H, W, C) maps, flattened and
    divided by its sum, then :func:`jensen_shannon` with the 1e-7 clamp on the mixture.

    Args:
        maps_before, maps_after: (n, H, W) or (n, H, W, C) raw saliency maps, same shape.

    Returns:
        (n,) nats in [~0, ln 2]. NaN where either map is all zero (no distribution); :func:`psc`
        replaces those by the mean, as the authors' code does. Note the DIAL clamp: with
        H x W pixels the average pixel holds 1 / (H W) of the mass, so for large maps many
        mixture values fall below 1e-7 and D_sal is biased down.
    """
    b, a = _saliency_pair(maps_before, maps_after, ("maps_before", "maps_after"))
    out = np.empty(len(b))
    for sl in _image_chunks(len(b), b[0].size):
        out[sl] = jensen_shannon(_pixel_distribution(b[sl]), _pixel_distribution(a[sl]), axis=-1)
    return out


@dataclass(frozen=True)
class PSCResult:
    """Prediction-saliency correlation (Zhang et al., Radiology: AI 2024) with a bootstrap CI.

    Attributes:
        r: PSC, the Pearson correlation across images between ``d_pred`` and ``d_sal``, in
            [-1, 1]; high = the saliency map changes when (and only when) the prediction does.
        ci_low, ci_high: percentile-bootstrap interval over images at ``confidence``.
        p_value: two-sided p-value of :func:`scipy.stats.pearsonr` (H0: r = 0).
        d_pred: (n,) prediction divergences, nats. d_sal: (n,) saliency divergences, nats
            (NaNs already replaced by their mean).
        n: number of images. n_boot: resamples drawn. n_boot_valid: resamples where r was
            defined (neither side constant); the interval uses only these.
        n_filled: images whose NaN D_sal (an all-zero map) was replaced by the mean.
        confidence: the interval's confidence level.
    """

    r: float
    ci_low: float
    ci_high: float
    p_value: float
    d_pred: np.ndarray
    d_sal: np.ndarray
    n: int
    n_boot: int
    n_boot_valid: int
    n_filled: int
    confidence: float

    def __str__(self) -> str:
        return (f"PSC = {self.r:.2f} ({self.confidence:.0%} CI {self.ci_low:.2f}\u2013{self.ci_high:.2f}, "
                f"n = {self.n})")


def psc(p_before: np.ndarray, p_after: np.ndarray, maps_before: np.ndarray, maps_after: np.ndarray,
        n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> PSCResult:
    """Prediction-saliency correlation (PSC) of one model, saliency method and class.

    For each image i, ``D_pred_i = JSD([p_i, 1 - p_i] || [p'_i, 1 - p'_i])`` and
    ``D_sal_i = JSD(S_i || S'_i)`` with S the map as a distribution over pixels (see
    :func:`prediction_divergence`, :func:`saliency_divergence`); NaNs in D_sal (all-zero maps)
    are replaced by the mean of D_sal, and ``PSC = pearsonr(D_pred, D_sal)`` across images --
    as in the authors' public code (DIAL-RPI "Compute PSC"). The paper then averages over classes;
    a binary classifier has one (and D_pred is the same whichever class's p is passed).

    Args:
        p_before, p_after: (n,) probability of the positive class before/after the perturbation,
            in [0, 1] (an (n, 1) model output is accepted).
        maps_before, maps_after: (n, H, W) or (n, H, W, C) raw saliency maps for that class.
        n_boot: bootstrap resamples of the images (each recomputes r); resamples where either
            side is constant are skipped. seed: for the resampling. confidence: of the interval.

    Returns:
        :class:`PSCResult`; ``str(result)`` reads "PSC = 0.21 (95% CI 0.08–0.34, n = 200)".

    Raises:
        ValueError: mismatched shapes, n < 3, probabilities not finite or outside [0, 1], all
        saliency maps zero, or D_pred or D_sal constant over images (PSC undefined, e.g. the
        maps or the predictions did not change at all).
    """
    pb, pa = _probabilities(p_before, "p_before"), _probabilities(p_after, "p_after")
    if pb.shape != pa.shape:
        raise ValueError(f"p_before and p_after must have the same shape, got {pb.shape} and {pa.shape}")
    mb, ma = _saliency_pair(maps_before, maps_after, ("maps_before", "maps_after"))
    n = len(pb)
    if len(mb) != n:
        raise ValueError(f"p_before has {n} images but maps_before has {len(mb)} images")
    if n < 3:
        raise ValueError(f"PSC needs at least 3 images, got {n}")
    _check_boot_args(n_boot, confidence)
    d_pred = prediction_divergence(pb, pa)
    d_sal = saliency_divergence(mb, ma)
    missing = np.isnan(d_sal)
    if missing.all():
        raise ValueError("every image has an all-zero saliency map (before or after); D_sal is undefined")
    d_sal[missing] = d_sal[~missing].mean()
    for name, d, what in (("D_pred", d_pred, "predicted probabilities"), ("D_sal", d_sal, "saliency maps")):
        if (d == d[0]).all():
            raise ValueError(f"{name} is constant ({d[0]:.3g} nats for all {n} images): the {what} changed "
                             f"by the same amount for every image (e.g. not at all), so their correlation "
                             f"with the other side (PSC) is undefined")
    res = stats.pearsonr(d_pred, d_sal)
    boot = _bootstrap(n, n_boot, seed, 2, lambda idx: _pearson_last_axis(d_pred[idx], d_sal[idx]))
    lo, hi = _percentile_ci(boot, confidence)
    return PSCResult(r=float(res.statistic), ci_low=float(lo), ci_high=float(hi), p_value=float(res.pvalue),
                     d_pred=d_pred, d_sal=d_sal, n=n, n_boot=int(n_boot),
                     n_boot_valid=int(np.isfinite(boot).sum()), n_filled=int(missing.sum()),
                     confidence=float(confidence))
