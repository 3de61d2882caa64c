"""Faithfulness of saliency maps without ground truth: does removing what a map points at matter?

A map claims that some pixels matter more to the model than others. These tests take the claim
at its word and perturb the image in the map's order, watching the class probability:

* :func:`deletion_insertion` -- Petsiuk et al. 2018 (RISE): remove the most salient pixels
  first (deletion: the probability should fall fast, a *low* area under the curve is good), or
  start from an image without them and put them back (insertion: a *high* area is good).
* :func:`road` -- Rong et al. 2022 (ROAD, "remove and debias"): removed pixels are not set to
  black but filled in from their neighbours by noisy linear imputation (:func:`impute`), so the
  removal itself leaves no sharp-edged holes the model could react to (and, with the noise,
  little trace of the removed pixels' shape). MoRF (most relevant first) should fall fast,
  LeRF (least relevant first) should stay high.
* :func:`random_maps` and :func:`summarise` -- the same tests on random maps, and a table of
  mean areas with bootstrap intervals (:func:`course_utils.stats.bootstrap_ci`) per method,
  each beside the random baseline: a map is only evidence if it beats random ordering.

The score is the model's **probability** of the explained class (not the logit the maps
explain): p for a one-output sigmoid model (1 - p for target 0), the target's softmax entry
otherwise. Maps are ranked by value, largest first: a signed map (gradient x input, IG,
occlusion, SHAP) puts its positive evidence first; pass ``np.abs(maps)`` to rank by magnitude.
Maps with channels (n, H, W, C) are reduced to (n, H, W) by the sum of absolute values over the
channels. Ties are broken by a seeded random order, so a constant map behaves like a random one.
All perturbed copies are built and predicted ``batch_size`` at a time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd
from scipy import ndimage, sparse
from scipy.sparse import linalg as sparse_linalg

from . import _checks, stats
from .saliency import predict_built, target_probability

#: A baseline: "zero", "mean" (each image's channel means), "blur" (Gaussian, RISE's), a number,
#: or an image (H, W, C) or one per image (n, H, W, C).
Baseline = str | float | np.ndarray

#: Deletion's and insertion's default baselines, as in RISE (Petsiuk et al. 2018).
DEFAULT_BASELINE: tuple[str, str] = ("zero", "blur")

#: RISE's Gaussian blur for insertion: sigma 5 px on an 11 px kernel (radius = sigma) at 224 px,
#: scaled to the image's longer side.
BLUR_SIGMA_PER_PX = 5 / 224

#: Threads imputing ROAD's copies (results never depend on it).
_WORKERS = min(4, os.cpu_count() or 1)

#: ROAD's neighbour weights (row offset, column offset, weight): edge neighbours count twice as
#: much as diagonal ones; over the full 3 x 3 neighbourhood they add up to 1.
ROAD_NEIGHBOURS: tuple[tuple[int, int, float], ...] = (
    (-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
    (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12))

#: Salts of the module's random streams: ``default_rng((salt, seed))`` never repeats the draws of
#: ``default_rng(seed)``, which a learner may have used to make the very images being tested
#: (tie-breaks in the order of the images' own noise would be no random order at all).
_TIES, _RANDOM_MAPS, _NOISE = 1, 2, 3

#: The measures of :func:`summarise`, and which way is better.
BETTER: Mapping[str, str] = {"deletion": "lower", "insertion": "higher",
                             "road_morf": "lower", "road_lerf": "higher"}


@dataclass(frozen=True, eq=False)
class DeletionInsertion:
    """Deletion and insertion curves of a batch of maps (:func:`deletion_insertion`).

    Attributes:
        fractions: (steps + 1,) share of the pixels removed (deletion) or put back
            (insertion), from 0 to 1.
        deletion_curve: (n, steps + 1) class probability as the most salient pixels are
            replaced by the deletion baseline; starts at p(image), ends at p(baseline).
        insertion_curve: (n, steps + 1) class probability as the most salient pixels are put
            back into the insertion baseline; starts at p(baseline), ends at p(image).
        deletion_auc: (n,) trapezoid area under ``deletion_curve`` over ``fractions``, in
            [0, 1]; lower is better (the evidence goes first).
        insertion_auc: (n,) the same for ``insertion_curve``; higher is better.
        settings: steps, baselines, seed and targets used.
    """

    fractions: np.ndarray
    deletion_curve: np.ndarray
    insertion_curve: np.ndarray
    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    settings: dict = field(default_factory=dict)

    def aucs(self) -> dict[str, np.ndarray]:
        """Per-image areas by measure id (keys of :data:`BETTER`)."""
        return {"deletion": self.deletion_auc, "insertion": self.insertion_auc}


@dataclass(frozen=True, eq=False)
class ROADResult:
    """ROAD curves of a batch of maps in one removal order (:func:`road`).

    Attributes:
        order: "morf" (most relevant removed first) or "lerf" (least relevant first).
        fractions: (F,) shares of the pixels removed and imputed.
        curve: (n, F) class probability of each image at each fraction.
        auc: (n,) area under ``curve`` by the trapezoid rule divided by the span of
            ``fractions``: the mean probability over the removal range, in [0, 1] (the curve
            itself for one fraction). MoRF: lower is better; LeRF: higher is better.
        settings: fractions, noise, seed and targets used.
    """

    order: str
    fractions: np.ndarray
    curve: np.ndarray
    auc: np.ndarray
    settings: dict = field(default_factory=dict)

    def aucs(self) -> dict[str, np.ndarray]:
        """Per-image areas by measure id: ``{"road_morf": auc}`` or ``{"road_lerf": auc}``."""
        return {f"road_{self.order}": self.auc}


# --------------------------------------------------------------------------- shared pieces
def _inputs(images: object, maps: object) -> tuple[np.ndarray, np.ndarray]:
    """Validated images (n, H, W, C) float32 and maps (n, H, W) float32 (channels: sum of |.|)."""
    images = _checks.images(images)
    maps = _checks.maps(maps, ndims=(3, 4))
    if maps.ndim == 4:
        _checks.same_shape(maps, images, ("maps with channels", "images"))
        maps = np.abs(maps).sum(axis=-1)
    return images, _checks.maps_of(maps, images, "maps")


def _ranks(maps: np.ndarray, seed: int) -> np.ndarray:
    """(n, H*W) int32 rank of each pixel, 0 = most salient; ties in a seeded random order."""
    n = len(maps)
    values = maps.reshape(n, -1)
    tie_break = np.random.default_rng((_TIES, seed)).random(values.shape)
    order = np.lexsort((tie_break, -values.astype(np.float64)), axis=-1)
    ranks = np.empty(values.shape, np.int32)
    np.put_along_axis(ranks, order, np.arange(values.shape[1], dtype=np.int32)[None], axis=1)
    return ranks


def _targets(model: keras.Model, images: np.ndarray, targets: object) -> np.ndarray:
    """(n,) class explained per image; None means the positive class of a one-output model.

    Also checks, on the first image, that the model outputs probabilities (before any of the
    many perturbed copies is predicted).
    """
    n = len(images)
    classes = model.outputs[0].shape[-1]
    if targets is None:
        if classes != 1:
            raise ValueError(f"a model with {classes} outputs needs targets: the class index "
                             "each map explains (the same targets as the maps')")
        targets = 1
    t = np.broadcast_to(_checks.targets(targets, n), (n,)).copy()
    valid = (0, 1) if classes == 1 else (0, classes - 1)
    if t.min() < valid[0] or t.max() > valid[1]:
        raise ValueError(f"targets must be class indices in [{valid[0]}, {valid[1]}] for this "
                         f"model ({classes} output{'s' if classes > 1 else ''}), got {np.unique(t)}")
    _probability(np.asarray(model.predict_on_batch(images[:1])), t[:1])
    return t


def _probability(outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(b,) probability of each target from model outputs (b, k); refuses logits."""
    if outputs.min() < -1e-6 or outputs.max() > 1 + 1e-6:
        raise ValueError("the model's outputs are not probabilities (values outside [0, 1]): "
                         "faithfulness curves need a sigmoid or softmax output layer")
    return target_probability(outputs, targets)


def _curves(model: keras.Model, starts: np.ndarray, ends: np.ndarray, ranks: np.ndarray,
            counts: np.ndarray, targets: np.ndarray, batch_size: int) -> np.ndarray:
    """(n, len(counts)) probabilities of images mixed from ``starts`` and ``ends``.

    Copy (i, k) takes its ``counts[k]`` best-ranked pixels from ``ends[i]`` and the rest from
    ``starts[i]``; the copies are built ``batch_size`` at a time.
    """
    n, (h, w) = len(starts), starts.shape[1:3]
    points = len(counts)

    def build(idx: np.ndarray) -> np.ndarray:
        image, step = np.divmod(idx, points)
        switched = (ranks[image] < counts[step][:, None]).reshape(-1, h, w, 1)
        return np.where(switched, ends[image], starts[image])

    outputs = predict_built(model, n * points, build, batch_size)
    return _probability(outputs, np.repeat(targets, points)).reshape(n, points)


def _baseline(images: np.ndarray, spec: Baseline, name: str) -> np.ndarray:
    """The baseline images (n, H, W, C) float32 for ``spec`` (see :data:`Baseline`)."""
    if isinstance(spec, str):
        if spec == "zero":
            return np.zeros_like(images)
        if spec == "mean":
            return np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape)
        if spec == "blur":
            sigma = BLUR_SIGMA_PER_PX * max(images.shape[1:3])
            return ndimage.gaussian_filter(images, sigma=(0, sigma, sigma, 0), truncate=1.0)
        raise ValueError(f'{name} must be "zero", "mean", "blur", a number or an image, got {spec!r}')
    arr = np.asarray(spec, np.float32)
    if arr.shape not in ((), images.shape[1:], images.shape) or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite: a number, one image {images.shape[1:]} or one "
                         f"per image {images.shape}, got shape {arr.shape}")
    return np.broadcast_to(arr, images.shape)


def _area(curves: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    return np.trapezoid(curves, fractions, axis=1)


# --------------------------------------------------------------------------- deletion / insertion
def deletion_insertion(model: keras.Model, images: np.ndarray, maps: np.ndarray, targets=None, *,
                       steps: int = 32, baseline: Baseline | tuple[Baseline, Baseline] = DEFAULT_BASELINE,
                       batch_size: int = 64, seed: int = 0) -> DeletionInsertion:
    """Deletion and insertion curves (Petsiuk et al. 2018) of saliency maps, and their areas.

    At step k of ``steps``, the round(k / steps * H * W) most salient pixels (all channels of a
    pixel together) are replaced by the deletion baseline (deletion) or copied from the image
    into the insertion baseline (insertion), and the model's class probability is recorded.

    Args:
        model: Keras classifier with one sigmoid output or a softmax head, taking ``images``.
        images: (n, H, W, C), preprocessed as the model expects.
        maps: (n, H, W) saliency, ranked by value (largest first), or (n, H, W, C) (reduced by
            the sum of absolute values over the channels). Finite.
        targets: the class each map explains: one int or (n,) ints; for a softmax head the
            class index (required); for one sigmoid output 1 (p, the default when None) or 0
            (1 - p).
        steps: points of each curve after the start (``steps + 1`` points in all).
        baseline: what removed pixels become: "zero", "mean" (each image's channel means),
            "blur" (RISE's Gaussian blur: sigma 5 px, kernel radius 5 px, per 224 px of image
            side; about 3 px at 128 px), a number, or an image (H, W, C) or (n, H, W, C); or
            a tuple of two (deletion's, insertion's). The default
            ("zero", "blur") is RISE's: deletion erases to black, and insertion starts from a
            blurred image, which keeps the image's coarse layout but not the details a class
            depends on -- inserting sharp pixels into a black image instead would add edges
            the model reacts to. For images in [0, 1], zero is black; for mean-centred inputs
            (VGG16) it is the mean colour.
        batch_size: perturbed copies per model call (memory holds one batch of copies).
        seed: order of tied pixels (e.g. a constant map's) -- a different seed, another order.

    Returns:
        :class:`DeletionInsertion` with (n, steps + 1) curves and (n,) areas in [0, 1].
    """
    images, maps = _inputs(images, maps)
    steps = _checks.positive_int(steps, "steps")
    batch_size = _checks.positive_int(batch_size, "batch_size")
    t = _targets(model, images, targets)
    pair = baseline if isinstance(baseline, tuple) else (baseline, baseline)
    if len(pair) != 2:
        raise ValueError(f"baseline must be one baseline or a pair (deletion, insertion), got {baseline!r}")
    removed = _baseline(images, pair[0], "the deletion baseline")
    canvas = _baseline(images, pair[1], "the insertion baseline")
    ranks = _ranks(maps, seed)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * ranks.shape[1]).astype(np.int64)
    deletion = _curves(model, images, removed, ranks, counts, t, batch_size)
    insertion = _curves(model, canvas, images, ranks, counts, t, batch_size)
    settings = {"steps": steps, "baseline": tuple(p if isinstance(p, str | float | int) else "array"
                                                  for p in pair),
                "seed": seed, "targets": t.tolist()}
    return DeletionInsertion(fractions, deletion, insertion, _area(deletion, fractions),
                             _area(insertion, fractions), settings)


# --------------------------------------------------------------------------- ROAD
def _imputation_system(removed: np.ndarray, image: np.ndarray
                       ) -> tuple[sparse.csc_matrix, np.ndarray, np.ndarray]:
    """Sparse system A v = b for the removed pixels' values v (m, C) and their flat indices.

    Row i says: removed pixel i equals the weighted mean of its in-image neighbours
    (:data:`ROAD_NEIGHBOURS`), known neighbours entering ``b`` and removed ones ``A``.
    """
    h, w = removed.shape
    flat = np.flatnonzero(removed)
    unknown = np.full(h * w, -1)
    unknown[flat] = np.arange(len(flat))
    r, c = np.divmod(flat, w)
    values = image.reshape(h * w, -1).astype(np.float64)
    diag = np.zeros(len(flat))
    b = np.zeros((len(flat), values.shape[1]))
    rows, cols, weights = [], [], []
    for dr, dc, weight in ROAD_NEIGHBOURS:
        inside = (r + dr >= 0) & (r + dr < h) & (c + dc >= 0) & (c + dc < w)
        me, other = np.flatnonzero(inside), (r + dr)[inside] * w + (c + dc)[inside]
        diag[me] += weight
        free = unknown[other] >= 0
        rows.append(me[free])
        cols.append(unknown[other[free]])
        weights.append(np.full(free.sum(), -weight))
        b[me[~free]] += weight * values[other[~free]]  # one neighbour per offset: no repeats
    m = len(flat)
    a = sparse.coo_matrix((np.concatenate([diag, *weights]),
                           (np.concatenate([np.arange(m), *rows]),
                            np.concatenate([np.arange(m), *cols]))), shape=(m, m)).tocsc()
    return a, b, flat


def impute(images: np.ndarray, removed: np.ndarray, *, noise: float = 0.01,
           seed: int | Sequence[int] | np.random.Generator = 0) -> np.ndarray:
    """ROAD's noisy linear imputation: removed pixels from their neighbours, plus noise.

    Every removed pixel becomes the weighted mean of its 8 neighbours inside the image (edge
    neighbours 1/6, diagonal ones 1/12, as in Rong et al.'s code), known pixels fixed: one
    sparse linear system per image, solved exactly (SciPy's sparse LU), all channels at once.
    Linear intensity ramps are reproduced exactly where a removed pixel has all 8 neighbours
    inside the image (at the border the mean is one-sided). Then Gaussian noise of s.d.
    ``noise`` (image units) is added to the imputed pixels only.

    Args:
        images: (n, H, W, C).
        removed: (n, H, W) bool, True where a pixel is removed; not all pixels of an image.
        noise: s.d. of the added noise (0.01 in ROAD, for images in [0, 1]); 0 for none.
        seed: seed (an int, a sequence of ints, or a generator) of the noise.

    Returns:
        (n, H, W, C) float32: the images with the removed pixels imputed.
    """
    images = _checks.images(images)
    removed = _checks.masks(removed, "removed", images.shape[:3])
    if removed.reshape(len(removed), -1).all(axis=1).any():
        raise ValueError("removed covers every pixel of an image: nothing is left to impute from")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite s.d. >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    out = images.copy()
    for image, gone, filled in zip(images, removed, out):
        if gone.any():
            a, b, flat = _imputation_system(gone, image)
            solved = np.asarray(sparse_linalg.spsolve(a, b)).reshape(len(flat), -1)
            solved = solved + noise * rng.standard_normal(solved.shape)
            filled.reshape(-1, image.shape[-1])[flat] = solved
    return out


def road(model: keras.Model, images: np.ndarray, maps: np.ndarray, targets=None, *,
         fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
         order: str = "morf", noise: float = 0.01, seed: int = 0,
         batch_size: int = 64) -> ROADResult:
    """ROAD (Rong et al. 2022): class probability after removing pixels in the map's order.

    For each fraction f, the round(f * H * W) most relevant pixels (``order="morf"``) or least
    relevant ones (``"lerf"``) are removed and filled in by :func:`impute` (noisy linear
    imputation), without retraining the model. A faithful map makes MoRF fall fast and LeRF
    stay high; the imputation keeps the removal from being a signal in itself (the mask
    shape leaks far less than with black pixels).

    Args:
        model: as in :func:`deletion_insertion`.
        images: (n, H, W, C), as in :func:`deletion_insertion`.
        maps: (n, H, W) or (n, H, W, C), as in :func:`deletion_insertion`.
        targets: as in :func:`deletion_insertion`.
        fractions: increasing shares of the pixels removed, each in [0, 1).
        order: "morf" or "lerf".
        noise: s.d. of the imputation noise, in image units (ROAD's 0.01 for images in [0, 1]).
        seed: order of tied pixels and the imputation noise (each image and fraction has its
            own noise stream, so results do not depend on ``batch_size``).
        batch_size: imputed copies per model call.

    Returns:
        :class:`ROADResult` with (n, F) curves and (n,) mean probabilities over the fractions.
    """
    images, maps = _inputs(images, maps)
    if order not in ("morf", "lerf"):
        raise ValueError(f'order must be "morf" (most relevant first) or "lerf", got {order!r}')
    f = np.asarray(fractions, np.float64)
    if f.ndim != 1 or f.size == 0 or not ((f >= 0) & (f < 1)).all() or (np.diff(f) <= 0).any():
        raise ValueError(f"fractions must be increasing shares in [0, 1), got {fractions!r}")
    batch_size = _checks.positive_int(batch_size, "batch_size")
    t = _targets(model, images, targets)
    ranks = _ranks(maps if order == "morf" else -maps, seed)
    counts = np.round(f * ranks.shape[1]).astype(np.int64)
    h, w = images.shape[1:3]

    def one(i: int, k: int, gone: np.ndarray) -> np.ndarray:
        return impute(images[i:i + 1], gone[None], noise=noise, seed=(_NOISE, seed, i, k))

    # SciPy's sparse solver releases the GIL: threads impute the copies of a batch in parallel
    # (each copy has its own noise stream, so the result does not depend on the threads)
    with ThreadPoolExecutor(_WORKERS) as pool:
        def build(idx: np.ndarray) -> np.ndarray:
            image, step = np.divmod(idx, len(f))
            removed = (ranks[image] < counts[step][:, None]).reshape(-1, h, w)
            return np.concatenate(list(pool.map(one, image, step, removed)))

        outputs = predict_built(model, len(images) * len(f), build, batch_size)
    curve = _probability(outputs, np.repeat(t, len(f))).reshape(len(images), len(f))
    auc = _area(curve, f) / (f[-1] - f[0]) if len(f) > 1 and f[-1] > f[0] else curve.mean(axis=1)
    settings = {"fractions": f.tolist(), "noise": noise, "seed": seed, "targets": t.tolist()}
    return ROADResult(order, f, curve, auc, settings)


# --------------------------------------------------------------------------- baseline and table
def random_maps(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n, H, W) float32 maps of uniform noise, one per image of ``images`` (n, H, W, C).

    Fed to :func:`deletion_insertion` or :func:`road` like any method's maps, they give the
    score of ordering pixels at random: the baseline a map has to beat.
    """
    images = _checks.images(images)
    return np.random.default_rng((_RANDOM_MAPS, seed)).random(images.shape[:3], dtype=np.float32)


#: Columns of :func:`summarise`, in order.
COLUMNS: tuple[str, ...] = ("method", "measure", "better", "n", "AUC", "CI low", "CI high",
                            "minus random", "minus random CI low", "minus random CI high")

Result = DeletionInsertion | ROADResult


def summarise(results: Mapping[str, Result | Sequence[Result]],
              random: Result | Sequence[Result] | None = None, *, n_boot: int = 1000,
              confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per (method, measure): mean area with its bootstrap CI, and the gap to random.

    Args:
        results: method id -> result(s) of :func:`deletion_insertion` and/or :func:`road`
            on the same images (several results, e.g. ROAD MoRF and LeRF, as a list).
        random: the same tests run on :func:`random_maps` (same images, targets and settings);
            its rows come last with the method "random".
        n_boot: resamples of :func:`course_utils.stats.bootstrap_ci` (over images).
        confidence: of the intervals, e.g. 0.95.
        seed: of the resampling.

    Returns:
        DataFrame with :data:`COLUMNS`: ``better`` says which way is faithful ("lower" for
        deletion and ROAD MoRF, "higher" for insertion and ROAD LeRF); ``AUC`` is the mean
        per-image area; "minus random" is the mean paired difference (method - random, image
        by image) with its interval -- NaN without ``random``. Method ids, not display names.
    """
    def areas(res: Result | Sequence[Result]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for r in (res if isinstance(res, Sequence) else [res]):
            out.update(r.aucs())
        return out

    base = areas(random) if random is not None else {}
    rows = []
    everything = {**results, **({"random": random} if random is not None else {})}
    for method, res in everything.items():
        for measure, auc in areas(res).items():
            ci = stats.bootstrap_ci(auc, n_boot=n_boot, confidence=confidence, seed=seed)
            gap = stats.Estimate(np.nan, np.nan, np.nan)
            if measure in base and method != "random":
                if base[measure].shape != auc.shape:
                    raise ValueError(f"{method} ({measure}) has {len(auc)} images, the random "
                                     f"baseline {len(base[measure])}: run both on the same images")
                gap = stats.bootstrap_ci(auc - base[measure], n_boot=n_boot,
                                         confidence=confidence, seed=seed)
            rows.append((method, measure, BETTER[measure], len(auc), *ci, *gap))
    return pd.DataFrame(rows, columns=list(COLUMNS))
