"""Measurements on saliency maps and classifiers: similarity, regions, localisation, evaluation.

* **Similarity** of paired maps: :func:`spearman_maps`, :func:`spearman_abs`, :func:`ssim_maps`,
  :func:`top_fraction_overlap`, all three measures at once (:func:`similarities`, named in
  :data:`MEASURES`) and Arun et al.'s random-pair baseline (:func:`random_pair_baseline`);
  :func:`class_contrast_verdict` reads out maps for a near and a distant class.
* **Regions**: :func:`region_attribution` (saliency mass per region against its area) and
  :func:`region_edit` (what a counterfactual edit of one region did to p and to the maps).
* **Localisation**: :func:`pointing_game`, :func:`binarise`, :func:`iou`, :func:`saliency_iou`.
* **Robustness** of an explainer under noise: :func:`max_sensitivity`.
* **Divergence**: :func:`jensen_shannon` (as Zhang et al.'s code computes it; used by
  :mod:`course_utils.psc`).
* **Classifier evaluation**: :func:`binary_report`, a :class:`BinaryReport` with intervals.

Conventions: maps (n, H, W) arrays, masks (n, H, W) bool, per-image results (n,) float64. Work
over images is vectorised, in chunks of about 4 M values, so that a few thousand 128 x 128 maps
never need more than a few hundred MB. Intervals come from :mod:`course_utils.stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import _checks, stats

if TYPE_CHECKING:
    import pandas as pd

#: Name of the region :func:`region_attribution` adds as the complement of ``"body"``.
OUTSIDE_BODY = "outside body"

#: The similarity measures of :func:`similarities` (ids) with their display names.
MEASURES: dict[str, str] = {"spearman": "Spearman", "spearman_abs": "Spearman (abs)",
                            "ssim": "SSIM"}


def minmax(x: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Per-image min-max scaling of (n, H, W) maps to [0, 1]; constant maps become 0.

    ``dtype``: the precision of the arithmetic and of the result (float64 by default; the
    saliency maps' own float32 for :attr:`course_utils.saliency.SaliencyResult.normalised`).
    """
    x = np.asarray(x, dtype)
    lo = x.min(axis=(1, 2), keepdims=True)
    span = x.max(axis=(1, 2), keepdims=True) - lo
    return np.divide(x - lo, span, out=np.zeros_like(x), where=span > 0)


# ------------------------------------------------------------------ similarity
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
    return stats.spearman(*_flat_pair(a, b))


def spearman_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of |a| and |b| per pair: (n, H, W) x (n, H, W) -> (n,).

    Adebayo et al.'s sanity checks report Spearman both with absolute values (this; a sign flip
    of the map does not count as a change) and without (:func:`spearman_maps`).
    """
    return spearman_maps(np.abs(np.asarray(a, np.float64)), np.abs(np.asarray(b, np.float64)))


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


def ssim_maps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Structural similarity of paired maps: (n, H, W) x (n, H, W) -> (n,), 1 = identical.

    Each map is min-max scaled to [0, 1] (a constant map becomes all zeros) and compared with
    :func:`skimage.metrics.structural_similarity` (defaults: 7 x 7 uniform window) with
    ``data_range=1``. DIAL-RPI (Zhang et al.) scale to 0-255 and use ``data_range=255``, which
    gives the same value. Maps must be at least 7 x 7 pixels.
    """
    from skimage.metrics import structural_similarity

    x, y = _checks.maps(a, "a"), _checks.maps(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"expected two batches of maps with the same shape (n, H, W), got {x.shape} "
                         f"and {y.shape}")
    if min(x.shape[1:]) < 7:
        raise ValueError(f"SSIM needs maps of at least 7 x 7 pixels, got {x.shape[1:]}")
    x, y = minmax(x), minmax(y)
    return np.array([structural_similarity(u, v, data_range=1.0) for u, v in zip(x, y)])


def _ranks(maps: np.ndarray) -> np.ndarray:
    """(n, H·W) float64 average ranks of each map's pixels (ties share their mean rank), 1-based.

    The numbers of ``scipy.stats.rankdata(..., axis=-1)`` (a test checks it), 1.7x faster on
    saliency maps: one unstable sort per row (the order inside a tie does not matter for
    average ranks; rankdata's stable sort was two thirds of its time), in the maps' own float
    type (float32 sorts faster; converting to float64 changes no order). A map with a NaN
    pixel gets NaN ranks (as rankdata's default ``nan_policy="propagate"``).
    """
    m = np.asarray(maps)
    if m.dtype.kind != "f":
        m = m.astype(np.float64)
    m = m.reshape(len(m), -1)
    n, d = m.shape
    order = np.argsort(m, axis=1)
    ordered = np.take_along_axis(m, order, axis=1)
    starts = np.ones((n, d), bool)  # True where a run of equal values begins
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones((n, d), bool)  # ... and where one ends
    ends[:, :-1] = starts[:, 1:]
    position = np.arange(d)
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, position, d - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((n, d))
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    ranks[np.isnan(m).any(axis=1)] = np.nan
    return ranks


@dataclass(frozen=True, eq=False)
class MapReference:
    """Raw maps (n, H, W) float64 prepared once for :func:`similarities` against many others.

    Made by :func:`map_reference`; holds each map's pixel ranks and the ranks of |map|
    ((n, H·W) float64), so a sanity check that compares the trained model's maps with those
    of every randomisation step ranks them once, not once per step.
    """

    maps: np.ndarray
    ranks: np.ndarray
    abs_ranks: np.ndarray


def map_reference(maps: np.ndarray) -> MapReference:
    """``maps`` (n, H, W) with their ranks, to compare with many batches (:func:`similarities`)."""
    raw = np.asarray(maps)
    if raw.ndim < 2:
        raise ValueError(f"expected a batch of maps (n, H, W), got shape {raw.shape}")
    return MapReference(raw.astype(np.float64), _ranks(raw), _ranks(np.abs(raw)))


def similarities(a: np.ndarray | MapReference, b: np.ndarray) -> dict[str, np.ndarray]:
    """The three :data:`MEASURES` of paired raw maps (n, H, W) x (n, H, W), each an (n,) array.

    ``spearman``: rank correlation of the maps as they are, in [-1, 1] (a sign flip counts);
    ``spearman_abs``: of |maps| (Adebayo et al. report both); ``ssim``: structural similarity of
    the min-max scaled |maps| (what the eye sees; Arun et al.'s measure), at most 1.
    Identical maps give 1 everywhere. A constant map gives NaN Spearman (no ranking).
    ``a`` may be a :class:`MapReference` of the maps (ranked once, for many ``b``).
    """
    ref = a if isinstance(a, MapReference) else map_reference(a)
    raw = np.asarray(b)
    if ref.maps.shape != raw.shape:
        raise ValueError(f"expected two batches of maps with the same shape (n, H, W), got "
                         f"{ref.maps.shape} and {raw.shape}")
    return {"spearman": stats.pearson(ref.ranks, _ranks(raw)),
            "spearman_abs": stats.pearson(ref.abs_ranks, _ranks(np.abs(raw))),
            "ssim": ssim_maps(np.abs(ref.maps), np.abs(raw.astype(np.float64)))}


def random_pairs(n: int, n_pairs: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` random pairs of *different* images out of ``n``: two (n_pairs,) index arrays.

    Pairs are drawn independently with replacement (as Arun et al.'s "50 randomly chosen
    pairs"); within a pair the two indices always differ.
    """
    if n < 2:
        raise ValueError(f"random pairs need at least 2 images, got {n}")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, n_pairs)
    j = (i + rng.integers(1, n, n_pairs)) % n  # any other image, uniformly
    return i, j


def random_pair_baseline(maps: np.ndarray, n_pairs: int = 50, seed: int = 0
                         ) -> dict[str, np.ndarray]:
    """Arun et al.'s baseline: :func:`similarities` of maps of different images, same model.

    ``maps``: (n, H, W) raw maps of one model and method. Returns each measure as an
    (n_pairs,) array; its mean is the bar a comparison must clear: two maps of the *same*
    image (other seed, other model) that are no more alike than maps of two different images
    carry no image-specific agreement.
    """
    maps = np.asarray(maps)
    i, j = random_pairs(len(maps), n_pairs, seed)
    return similarities(maps[i], maps[j])



def class_contrast_verdict(method: str, near: float, far: float, *, far_empty: int = 0,
                           n: int = 0, same: float = 0.8, margin: float = 0.1) -> str:
    """One sentence, from the numbers, on whether a method's map depends on the class asked.

    Args:
        method: the method's display name.
        near: similarity (e.g. mean Spearman, in [-1, 1]) of the top-1 class's map with the
            map for a *near* class (the 2nd-ranked, often a near-synonym); NaN if undefined.
        far: the same for a *distant* class (e.g. the lowest-ranked of the 1,000), over the
            images whose distant map is not empty; NaN when all are empty.
        far_empty: number of images whose distant-class map is empty (all zero: e.g. Grad-CAM,
            a ReLU of a weighted sum, when no region supports the class).
        n: number of images (needed with ``far_empty``).
        same: a similarity at or above which two maps count as nearly the same.
        margin: a difference in similarity smaller than this counts as "about as similar".

    Returns:
        The sentence. The distant class decides: a map that stays the same for a class the
        model rates least likely shows the image, not the class; for the 2nd-ranked class a
        similar map is expected (the evidence lies in the same pixels). An empty distant map is
        as different from the top-1 map as a map can be.
    """
    if far_empty and not np.isfinite(far):
        return (f"{method}: the map for the distant class is empty (all zero) for all {n} images "
                f"-- nothing in the image supports that class -- against Spearman {near:.2f} with "
                f"the 2nd-ranked class: the map depends on the class asked.")
    empty = f"; {far_empty} of {n} distant maps empty, left out" if far_empty else ""
    nums = f"Spearman {near:.2f} with the 2nd-ranked class, {far:.2f} with the distant one{empty}"
    if not (np.isfinite(near) and np.isfinite(far)):
        return f"{method}: undefined ({nums}; a constant map has no ranking)."
    if far >= same:
        return (f"{method}: even a distant class gets nearly the same map ({nums}): the map shows "
                f"what is salient in the image, not the class.")
    if near - far >= margin:
        return (f"{method}: the map moves further for a distant class than for the 2nd-ranked one "
                f"({nums}): it depends on the class asked.")
    if far - near >= margin:
        return (f"{method}: the distant class's map is closer to the top-1 map than the "
                f"2nd-ranked one's ({nums}): the map changes with the class, but not in step with "
                f"how related the classes are.")
    return (f"{method}: the distant and the 2nd-ranked class change the map about equally ({nums}): "
            f"it depends on the class, no more for a far-away class than for a near one.")


# ------------------------------------------------------------------ regions
@dataclass(frozen=True)
class RegionAttribution:
    """Where the saliency mass lies, per region and per image (see :func:`region_attribution`).

    Attributes:
        mass_share: region -> (n,) share of the map's total |saliency| inside the region, in
            [0, 1]; NaN for an all-zero map and where the region is empty in that image (no
            lesion in a normal film, no lung mask for a film of a partly masked data set), so
            means over images count only images that have the region. Overlapping regions each
            count the shared pixels.
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
            n_boot: bootstrap resamples for the enrichment interval (0: none).
            seed: for the resampling.

        Returns:
            DataFrame indexed by region (or by (region, class) with ``labels``) with columns
            ``mass_share``, ``area_share``, ``enrichment`` (means of the per-image values over
            the images that have the region, NaNs ignored; enrichment is the mean of per-image
            ratios, not a ratio of means) and
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
                    "mass_share": stats.nanmean(self.mass_share[region][sel]),
                    "area_share": stats.nanmean(np.where(self.area_share[region][sel] > 0,
                                                         self.area_share[region][sel], np.nan)),
                    "enrichment": stats.nanmean(self.enrichment[region][sel]),
                    "n_images": int(np.isfinite(self.enrichment[region][sel]).sum()),
                }
                if n_boot:
                    values = self.enrichment[region][sel]
                    values = values[np.isfinite(values)]
                    _, row["enrichment_lo"], row["enrichment_hi"] = (
                        stats.bootstrap_ci(values, n_boot=n_boot, seed=seed) if len(values)
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
    x = _checks.maps(maps)
    if not masks:
        raise ValueError("masks is empty: give at least one region, e.g. {'lungs': ...}")
    regions = {str(k): _checks.masks(v, f"masks[{k!r}]", x.shape) for k, v in masks.items()}
    if "body" in regions and OUTSIDE_BODY not in regions:
        regions[OUTSIDE_BODY] = ~regions["body"]
    if not absolute and (x < 0).any():
        raise ValueError("maps have negative values; use absolute=True (mass of |map|)")
    n, hw = len(x), x.shape[1] * x.shape[2]
    total = np.empty(n)
    mass = {k: np.empty(n) for k in regions}
    for sl in _checks.chunks(n, hw):
        a = np.abs(x[sl].astype(np.float64))
        total[sl] = a.sum(axis=(1, 2))
        for k, m in regions.items():
            mass[k][sl] = (a * m[sl]).sum(axis=(1, 2))
    mass_share, area_share, enrichment = {}, {}, {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for k, m in regions.items():
            area_share[k] = m.sum(axis=(1, 2)) / hw
            mass_share[k] = np.where((total > 0) & (area_share[k] > 0), mass[k] / total, np.nan)
            enrichment[k] = np.where(area_share[k] > 0, mass_share[k] / area_share[k], np.nan)
    return RegionAttribution(mass_share, area_share, enrichment)



@dataclass(frozen=True)
class RegionEdit:
    """What an edit of one anatomical region did to a binary model (see :func:`region_edit`).

    Attributes:
        mean_abs_dp: mean over images of |p after - p before|, in [0, 1] (p = the model's
            probability of the positive class).
        flipped: share of images whose prediction crossed the threshold, in [0, 1].
        mass_before, mass_after: mean share of the maps' |saliency| mass inside the region
            (before: the region before the edit, in the original maps; after: the edited region,
            in the edited images' maps), in [0, 1].
        area_before, area_after: mean share of the image the region covers, in [0, 1].
        n: number of images.
    """

    mean_abs_dp: float
    flipped: float
    mass_before: float
    mass_after: float
    area_before: float
    area_after: float
    n: int

    def ignored(self, tolerance: float = 0.02) -> bool:
        """True when the prediction barely moved: mean |Δp| and the flipped share both below
        ``tolerance`` (probability units; 0.02 = two percentage points).
        """
        return self.mean_abs_dp < tolerance and self.flipped < tolerance

    def verdict(self, region: str, finding: str, tolerance: float = 0.02) -> str:
        """Two sentences, from the numbers: did the prediction notice the edit of ``region`` (e.g.
        ``"the spine"``) that a reader would call ``finding`` (e.g. ``"scoliosis"``), and does the
        map give the edited region more or less than its area's share of the mass?
        """
        moved = f"mean |Δp| = {self.mean_abs_dp:.4f}, {self.flipped:.1%} of the predictions flipped"
        if self.ignored(tolerance):
            said = (f"The prediction barely moves ({moved}): the model is blind to this change of "
                    f"{region}, so it cannot flag {finding}.")
        else:
            said = (f"The prediction moves ({moved}), but its only output is p(COVID): the change is "
                    f"a side effect of editing {region}, not a report of {finding}.")
        ratio = self.mass_after / self.area_after if self.area_after > 0 else float("nan")
        share = (f"{self.mass_after:.1%} of Grad-CAM's mass on {region} after the edit for "
                 f"{self.area_after:.1%} of the image ({ratio:.2f}x its area's share)")
        if ratio < 1:
            return f"{said} The map does not point at it either: {share}."
        return f"{said} The map does weight it: {share} -- a map of the COVID score, not of {finding}."


def region_edit(p_before: np.ndarray, p_after: np.ndarray, maps_before: np.ndarray,
                maps_after: np.ndarray, region_before: np.ndarray, region_after: np.ndarray, *,
                threshold: float = 0.5) -> RegionEdit:
    """Summarise a counterfactual edit of one region (e.g. the phantom re-rendered with a bent
    spine or an enlarged heart): how far the predictions moved and where the maps went.

    Args:
        p_before: (n,) probabilities of the positive class of the original images, in [0, 1].
        p_after: (n,) the same for the edited images, same order.
        maps_before: (n, H, W) raw saliency maps of the original images.
        maps_after: (n, H, W) raw saliency maps of the edited images.
        region_before: (n, H, W) bool mask of the region before the edit.
        region_after: (n, H, W) bool mask of the region after the edit.
        threshold: decision threshold on p for counting flipped predictions.

    Returns:
        :class:`RegionEdit` (means over images; images with an empty region or an all-zero map
        are left out of the mass means).
    """
    a, b = np.asarray(p_before, np.float64), np.asarray(p_after, np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(f"p_before and p_after must be paired non-empty (n,) arrays, got shapes "
                         f"{a.shape} and {b.shape}")
    if len(_checks.maps(maps_before)) != len(a):
        raise ValueError(f"expected {len(a)} maps (one per probability), got {len(maps_before)}")
    before = region_attribution(maps_before, {"region": region_before})
    after = region_attribution(maps_after, {"region": region_after})
    return RegionEdit(
        mean_abs_dp=float(np.abs(b - a).mean()), flipped=float(np.mean((b > threshold) != (a > threshold))),
        mass_before=float(stats.nanmean(before.mass_share["region"])),
        mass_after=float(stats.nanmean(after.mass_share["region"])),
        area_before=float(before.area_share["region"].mean()),
        area_after=float(after.area_share["region"].mean()), n=len(a))


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
    x = _checks.maps(maps)
    m = _checks.masks(masks, "masks", x.shape).reshape(len(x), -1)
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
    x = _checks.maps(maps)
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
            raise ValueError(f"method='threshold' needs value in [0, 1] (on min-max normalised maps), "
                             f"got {value}")
        return minmax(x) > value
    raise ValueError(f"method must be 'otsu', 'quantile' or 'threshold', got {method!r}")


def iou(pred_masks: np.ndarray, true_masks: np.ndarray) -> np.ndarray:
    """Intersection over union per image: (n, H, W) x (n, H, W) bool -> (n,) in [0, 1].

    NaN where both masks are empty (IoU undefined); 0 where only one is.
    """
    t = np.asarray(true_masks)
    if t.ndim != 3:
        raise ValueError(f"masks must be (n, H, W), got shape {t.shape}")
    t = _checks.masks(t, "true_masks", t.shape)
    p = _checks.masks(pred_masks, "pred_masks", t.shape)
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


# ------------------------------------------------------------------ robustness under noise
@dataclass(frozen=True)
class Sensitivity:
    """Max- and Avg-Sensitivity per image (Yeh et al. 2019; lower = a steadier explanation).

    ``max`` / ``mean``: (n,) float64, the largest and the mean over noise samples of
    ``||a(x) - a(x')||_F / ||a(x)||_F`` (NaN for an all-zero map a(x)); ``radius``: the noise
    U(-radius, radius) per pixel, intensity units; ``n_samples``: noise draws per image.
    """

    max: np.ndarray
    mean: np.ndarray
    radius: float
    n_samples: int


def max_sensitivity(explain: Callable[[np.ndarray, object], np.ndarray], x: np.ndarray,
                    targets: object, *, radius: float = 0.2, n_samples: int = 10, seed: int = 0,
                    clip: bool = True) -> Sensitivity:
    """Max-Sensitivity of an explanation under uniform noise, batched over images.

    For each of ``n_samples`` draws, every image gets its own noise U(-radius, radius) per pixel
    (clipped to [0, 1] when ``clip``); the whole batch is explained in one ``explain`` call. The
    ratio ``||a(x) - a(x')||_F / ||a(x)||_F`` is Quantus' ``MaxSensitivity`` with its defaults
    (radius 0.2, no normalisation, no absolute value; Quantus draws 200 samples). Yeh et al.
    (2019) define Max-Sensitivity without the division, ``max ||a(x') - a(x)||`` in the map's own
    units; dividing by ``||a(x)||`` (Quantus) makes methods with differently scaled maps
    comparable. The maximum over a few random draws is a lower estimate of the maximum over the
    ball. It ignores the
    prediction: a map that moves because the prediction moved counts as much as one that moves
    for nothing -- the opposite of what PSC rewards.

    Args:
        explain: ``explain(images, targets) -> maps (n, H, W)``, e.g. a
            :class:`course_utils.saliency.Explainer`.
        x: (n, H, W, C) images in [0, 1].
        targets: the class each map explains (one per image, or one for all).
        radius: noise half-width, intensity units, > 0.
        n_samples: noise draws (>= 1).
        seed: for the noise.
        clip: keep x' inside [0, 1].
    """
    x = _checks.images(x, "x")
    if not radius > 0:
        raise ValueError(f"radius must be > 0 (intensity units), got {radius!r}")
    n_samples = _checks.positive_int(n_samples, "n_samples")
    rng = np.random.default_rng(seed)
    base = np.asarray(explain(x, targets), np.float64).reshape(len(x), -1)
    norm = np.linalg.norm(base, axis=1)
    ratios = np.empty((int(n_samples), len(x)))
    for k in range(int(n_samples)):
        noisy = x + rng.uniform(-radius, radius, x.shape).astype(np.float32)
        noisy = np.clip(noisy, 0.0, 1.0) if clip else noisy
        moved = np.asarray(explain(noisy, targets), np.float64).reshape(len(x), -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[k] = np.where(norm > 0, np.linalg.norm(moved - base, axis=1) / norm, np.nan)
    return Sensitivity(ratios.max(axis=0), ratios.mean(axis=0), float(radius), int(n_samples))


# ------------------------------------------------------------------ divergence
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
        p: non-negative array, summing to 1 along ``axis`` (not checked or renormalised, as in
            the original); NaNs propagate to the result.
        q: the same, same shape as ``p``.
        axis: the axis holding the outcomes.
        clamp: lower bound for M, in [0, 1).

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


# ------------------------------------------------------------------ classifier evaluation
@dataclass(frozen=True)
class BinaryReport:
    """A binary classifier's test results, as a paper reports them (see :func:`binary_report`).

    Attributes:
        n: cases. tp, fp, tn, fn: the confusion matrix counts at ``threshold``.
        accuracy, sensitivity, specificity: :class:`stats.Estimate` with Wilson 95% intervals.
        auc: ROC AUC with a percentile-bootstrap 95% interval over cases.
        threshold: a case is called positive when p > threshold.
    """

    n: int
    tp: int
    fp: int
    tn: int
    fn: int
    accuracy: stats.Estimate
    sensitivity: stats.Estimate
    specificity: stats.Estimate
    auc: stats.Estimate
    threshold: float

    @property
    def majority_rate(self) -> float:
        """Accuracy of always answering the commoner class of these cases, in [0.5, 1]: the
        floor a classifier must beat before its accuracy means anything.
        """
        return max(self.tp + self.fn, self.tn + self.fp) / self.n

    def skill(self, names: tuple[str, str] = ("normal", "COVID")) -> str:
        """One sentence: the accuracy beside :attr:`majority_rate`, and whether the classifier
        calls every case one class (``names``: the negative and the positive class).
        """
        pos, neg = self.tp + self.fn, self.tn + self.fp
        common = names[1] if pos >= neg else names[0]
        text = (f"Always answering '{common}' would score {self.majority_rate:.1%} on these "
                f"{self.n} cases; the classifier scores {self.accuracy.value:.1%}")
        if self.tp + self.fp == self.n or self.tn + self.fn == self.n:
            called = names[1] if self.tp + self.fp == self.n else names[0]
            return (text + f" and calls every case '{called}': it has learned the class balance, "
                    "not the disease (too few or too lopsided training images; more data, class "
                    "weights or balanced sampling help). Its sensitivity and specificity mean nothing.")
        if self.accuracy.lo <= self.majority_rate:
            return text + ": within its 95 % interval of that floor, so no better than the floor yet."
        return text + ": clearly above that floor."


def binary_report(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5,
                  n_boot: int = 1000, seed: int = 0) -> BinaryReport:
    """Evaluate a binary classifier as a paper would, with 95% confidence intervals.

    Args:
        labels: (n,) class labels, 1 = positive (COVID), 0 = negative.
        probs: (n,) predicted p(positive).
        threshold: a case is called positive when p > ``threshold`` (the article used 50%).
        n_boot: bootstrap resamples of the cases for the AUC interval (resamples with a single
            class are skipped).
        seed: for the resampling.

    Returns:
        :class:`BinaryReport`: counts, accuracy, sensitivity and specificity with Wilson
        intervals, ROC AUC with a bootstrap interval.
    """
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(int).ravel()
    probs = _checks.probabilities(np.asarray(probs, dtype=np.float64).ravel(), "probs")
    if labels.shape != probs.shape:
        raise ValueError(f"labels {labels.shape} and probs {probs.shape} differ in shape")
    if not set(np.unique(labels)) <= {0, 1} or len(np.unique(labels)) < 2:
        raise ValueError("labels must contain both classes, coded 0 and 1")
    pred = probs > threshold
    tp, fn = int((pred & (labels == 1)).sum()), int((~pred & (labels == 1)).sum())
    tn, fp = int((~pred & (labels == 0)).sum()), int((pred & (labels == 0)).sum())

    boot = stats.bootstrap(len(labels), n_boot, seed, 2,  # chunked (and so drawn) as before
                           lambda idx: stats.resampled_auc(labels, probs, idx))
    lo, hi = stats.percentile_ci(boot, 0.95)
    return BinaryReport(
        n=len(labels), tp=tp, fp=fp, tn=tn, fn=fn,
        accuracy=stats.proportion(tp + tn, len(labels)),
        sensitivity=stats.proportion(tp, tp + fn), specificity=stats.proportion(tn, tn + fp),
        auc=stats.Estimate(float(roc_auc_score(labels, probs)), float(lo), float(hi)),
        threshold=float(threshold))
