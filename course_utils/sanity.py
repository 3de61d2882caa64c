"""Sanity checks of saliency maps: do they depend on the model, the image and nothing else?

* **Repeatability and reproducibility** (Arun et al. 2021) -- :func:`map_agreement`: the maps of
  other models (another seed, another architecture) against a reference model's, beside the
  random-pair baseline (:func:`course_utils.metrics.random_pair_baseline`).
* **Noise** -- :func:`noise_stability` (how far each method's map moves under imperceptible noise)
  and :func:`smoothgrad_curve` (SmoothGrad's stability against its sample count and cost).
* **Model randomisation** (Adebayo et al. 2018) -- :func:`randomised_layers` (a context manager
  that re-initialises layers and always restores the trained weights) and
  :func:`cascading_randomisation`.
* **Data randomisation** (Adebayo et al. 2018) -- :func:`data_randomisation`: the maps of a model
  trained on permuted labels against the real model's.
* **Shifts and rotations** (Yang & Berdine's limitation 4.3; in the spirit of Kindermans et al.'s
  input invariance) -- :func:`shift_rotation_stability` (with :func:`move`, :func:`move_margin`): does
  the map move with the image, and does the prediction change?

Methods are passed as explainers (``{method id: saliency.explainer(model, method, ...)}``), so
each check runs every method with the settings the notebook chose. Tables are keyed by method and
measure ids; display names (:data:`course_utils.saliency.NAMES`,
:data:`course_utils.metrics.MEASURES`) are applied where they are shown
(:func:`course_utils.plots.named`).

Conventions: images (n, H, W, C) float32 in [0, 1]; maps (n, H, W) float32; per-image results
(n,) float64; ``targets`` as in :func:`course_utils.saliency.compute` (0/1 for a sigmoid model).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd

from . import _checks, memo, metrics, models, saliency, stats

#: The course CNN's weighted layers from the top (output) down: the cascading randomisation order.
CASCADE_LAYERS: tuple[str, ...] = ("p_covid", "dense", "last_conv", "conv3", "conv2", "conv1")

#: An explainer: ``explain(images, targets) -> raw maps (n, H, W)``.
Explain = Callable[[np.ndarray, object], np.ndarray]


def map_agreement(reference: Mapping[str, np.ndarray],
                  others: Mapping[str, Mapping[str, np.ndarray]], *,
                  measures: Sequence[str] = ("spearman_abs", "ssim"), n_pairs: int = 50,
                  n_boot: int = 1000, seed: int = 0,
                  baseline: str = "random pairs") -> pd.DataFrame:
    """Agreement of other models' maps with a reference model's, beside the random-pair baseline.

    ``reference``: method -> (n, H, W) raw maps of the reference model; ``others``: comparison
    name (e.g. "other seed") -> method -> maps of the *same* n images. For every method,
    comparison and measure: the mean of :func:`metrics.similarities` over images with a bootstrap
    95 % CI, plus the ``baseline`` rows (:func:`metrics.random_pair_baseline` of the reference
    maps). Returns a long DataFrame with columns method (id), comparison, measure (id of
    :data:`metrics.MEASURES`), mean, lo, hi.
    """
    rows = []
    for method, ref in reference.items():
        comparisons = {name: metrics.similarities(ref, maps[method])
                       for name, maps in others.items()}
        comparisons[baseline] = metrics.random_pair_baseline(ref, n_pairs, seed)
        for name, sims in comparisons.items():
            for m in measures:
                est, lo, hi = stats.bootstrap_ci(sims[m], n_boot=n_boot, seed=seed)
                rows.append({"method": method, "comparison": name, "measure": m,
                             "mean": est, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def data_randomisation(reference: Mapping[str, np.ndarray], permuted: Mapping[str, np.ndarray], *,
                       measures: Sequence[str] = ("spearman_abs", "ssim"), n_pairs: int = 50,
                       n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Adebayo et al.'s data-randomisation test: real-label model vs permuted-label model.

    ``reference``: method -> (n, H, W) raw maps of the model trained on the true labels;
    ``permuted``: method -> maps of the *same* images (same targets) from a model trained on the
    same images with shuffled labels (:func:`course_utils.data.with_permuted_labels`), which
    knows nothing about the label. A method passes when the two models' maps of the same image
    are less alike than the real model's maps of two different images (the random-pair
    baseline, as in :meth:`CascadeResult.verdict`); maps that look the same for both models show
    the image, not what the model learned about the label.

    Returns:
        DataFrame indexed by method id with columns (measure id, quantity): "permuted labels"
        (mean similarity over images), "lo" and "hi" (its bootstrap 95 % CI), "random pairs"
        (the baseline) and "passes"; and ("maps", "constant") -- permuted-label maps with one
        value everywhere (e.g. an all-zero Grad-CAM), whose Spearman correlation is undefined
        and left out of the mean, while SSIM compares them as blank pictures.
    """
    missing = sorted(set(reference) - set(permuted))
    if missing:
        raise ValueError(f"no permuted-label maps for {missing}")
    long = map_agreement(reference, {"permuted labels": {m: permuted[m] for m in reference}},
                         measures=measures, n_pairs=n_pairs, n_boot=n_boot, seed=seed)
    rows: dict[str, dict[tuple[str, str], object]] = {}
    for (method, measure), g in long.groupby(["method", "measure"], sort=False):
        g = g.set_index("comparison")
        ours, base = g.loc["permuted labels"], float(g.loc["random pairs", "mean"])
        rows.setdefault(method, {}).update({
            (measure, "permuted labels"): float(ours["mean"]), (measure, "lo"): float(ours["lo"]),
            (measure, "hi"): float(ours["hi"]), (measure, "random pairs"): base,
            (measure, "passes"): bool(ours["mean"] < base)})
    for method, row in rows.items():
        flat = np.asarray(permuted[method]).reshape(len(permuted[method]), -1)
        row[("maps", "constant")] = int((flat == flat[:, :1]).all(axis=1).sum())
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["measure", None])
    return table.rename_axis("method")


def _fresh(layer: keras.layers.Layer, attr: str, seed: int) -> np.ndarray | None:
    """New values for ``layer.<attr>`` (kernel or bias) from the layer's own initializer."""
    var = getattr(layer, attr, None)
    init = getattr(layer, f"{attr}_initializer", None)
    if var is None or init is None:
        return None
    cfg = init.get_config()
    if "seed" in cfg:
        cfg["seed"] = seed
    fresh = init.__class__.from_config(cfg)
    return np.asarray(fresh(tuple(var.shape), dtype=var.dtype))


@contextlib.contextmanager
def randomised_layers(model: keras.Model, layer_names: Sequence[str], seed: int = 0
                      ) -> Iterator[keras.Model]:
    """Re-initialise the kernels and biases of ``layer_names`` in place; restore them on exit.

    Each layer gets fresh values from its own initializers (Glorot-uniform kernels and zero
    biases for the course CNN) seeded by ``seed`` and the layer's name, so the same layer gets
    the same random weights in every step of a cascade. Everything that shares the model's
    variables (e.g. the logit twin of :func:`saliency.logit_model`) sees the change. The trained
    weights are put back when the block ends, also if it raises.

    >>> with randomised_layers(model, ["p_covid", "dense"]):  # doctest: +SKIP
    ...     maps = saliency.compute(model, x, "gradcam", 1).raw
    """
    chosen = [model.get_layer(name) for name in layer_names]
    for layer in chosen:
        if not layer.weights:
            raise ValueError(f"layer {layer.name!r} has no weights to randomise")
    saved = [[np.array(v.numpy(), copy=True) for v in layer.weights] for layer in chosen]
    try:
        for layer in chosen:
            layer_seed = seed + int(hashlib.sha256(layer.name.encode()).hexdigest()[:6], 16)
            for attr in ("kernel", "bias"):
                values = _fresh(layer, attr, layer_seed)
                if values is not None:
                    getattr(layer, attr).assign(values)
        yield model
    finally:
        for layer, values in zip(chosen, saved):
            for v, val in zip(layer.weights, values):
                v.assign(val)


@dataclass
class CascadeResult:
    """Cascading randomisation (Adebayo et al. 2018) of one model, several methods.

    Attributes:
        steps: "original" then the cumulatively randomised layers, top first ("p_covid",
            "+dense", ...).
        scores: long DataFrame with columns method, step, step_index, measure, mean, lo, hi
            (bootstrap 95 % CI over images) of the similarity of each step's map to the original
            map of the same image, and undefined (images whose similarity is NaN).
        baseline: method -> measure -> mean similarity of random pairs of original maps of
            different images (:func:`metrics.random_pair_baseline`).
        examples: method -> (n_steps, k, H, W) raw maps of the first k images, for display.
        p: (n_steps, n) model outputs at each step.
        seconds: method -> seconds computing its maps over all steps (a cached map counts what
            computing it took, not its load).
    """

    steps: list[str]
    scores: pd.DataFrame
    baseline: dict[str, dict[str, float]]
    examples: dict[str, np.ndarray]
    p: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)

    def verdict(self, by_step: str | None = None,
                measures: Sequence[str] = ("ssim", "spearman_abs")) -> pd.DataFrame:
        """Which methods pass: one row per method id, for each measure id in ``measures``.

        Columns are (measure, quantity) pairs, the quantities being

        * "at step" -- mean similarity to the original maps at step ``by_step`` (default: the
          last step, every listed layer random);
        * "random pairs" -- the random-pair baseline of the original maps;
        * "first step below" -- the first step whose similarity is below the baseline ("never"
          if none): how early the map noticed that the model was destroyed;
        * "passes" -- the similarity at ``by_step`` is below the baseline (Arun et al.'s
          criterion, with SSIM): the randomised model's maps are less alike the originals than
          the original maps of two different images are.
        """
        step = self.steps[-1] if by_step is None else by_step
        if step not in self.steps[1:]:
            raise ValueError(f"by_step must be one of the randomised steps {self.steps[1:]}, "
                             f"got {step!r}")
        rows = {}
        for method, group in self.scores.groupby("method", sort=False):
            row: dict[tuple[str, str], object] = {}
            for m in measures:
                g = group[group["measure"] == m].sort_values("step_index")
                base = self.baseline[method][m]
                below = g[(g["mean"] < base) & (g["step"] != "original")]
                at = float(g.loc[g["step"] == step, "mean"].iloc[0])
                row |= {(m, "at step"): at, (m, "random pairs"): base,
                        (m, "first step below"): below["step"].iloc[0] if len(below) else "never",
                        (m, "passes"): bool(at < base)}
            rows[method] = row
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.columns = pd.MultiIndex.from_tuples(table.columns, names=["measure", None])
        return table.rename_axis("method")


def _step_names(layer_names: Sequence[str]) -> list[str]:
    return ["original", *[("" if k == 0 else "+") + n for k, n in enumerate(layer_names)]]


def _timed_maps(explain: Callable, images: np.ndarray, targets) -> tuple[np.ndarray, float]:
    """Raw maps of ``images`` and the seconds computing them took.

    For a :class:`course_utils.saliency.Explainer` the seconds are its result's own (kept with
    a cached result, so a map loaded from the data folder reports what computing it cost, not
    the load); for any other callable, the wall time of the call.
    """
    if isinstance(explain, saliency.Explainer):
        result = explain.explain(images, targets)
        return result.raw, float(result.seconds)
    start = time.perf_counter()
    maps = explain(images, targets)
    return maps, time.perf_counter() - start


def cascading_randomisation(model: keras.Model, explain: Mapping[str, Explain],
                            images: np.ndarray, targets, *,
                            layer_names: Sequence[str] = CASCADE_LAYERS, seed: int = 0,
                            n_examples: int = 2, n_pairs: int = 50, n_boot: int = 200
                            ) -> CascadeResult:
    """Adebayo et al.'s cascading model-parameter randomisation test, batched over images.

    Step 0 is the trained model; step k re-initialises the top k layers of ``layer_names``
    (cumulatively, from the output down) inside :func:`randomised_layers`, so the trained
    weights are restored afterwards. At each step every explainer's maps of ``images``
    (n, H, W, C) for ``targets`` are compared with the step-0 maps by
    :func:`metrics.similarities`. ``explain``: method id -> explainer of ``model`` (e.g.
    :func:`saliency.explainer`), which sees the randomised weights.
    """
    images = np.asarray(images, np.float32)
    steps = _step_names(layer_names)
    k_show = min(n_examples, len(images))
    originals: dict[str, np.ndarray] = {}
    reference: dict[str, metrics.MapReference] = {}
    examples = {m: np.empty((len(steps), k_show, *images.shape[1:3]), np.float32)
                for m in explain}
    seconds = dict.fromkeys(explain, 0.0)
    rows, outputs = [], []
    for k, step in enumerate(steps):
        with randomised_layers(model, layer_names[:k], seed=seed):
            outputs.append(models.predict_p(model, images))
            for method, f in explain.items():
                maps, took = _timed_maps(f, images, targets)
                seconds[method] += took
                if k == 0:
                    originals[method] = maps
                    reference[method] = metrics.map_reference(maps)  # ranked once, for every step
                examples[method][k] = maps[:k_show]
                for measure, values in metrics.similarities(reference[method], maps).items():
                    est, lo, hi = (stats.bootstrap_ci(values, n_boot=n_boot, seed=seed)
                                   if np.isfinite(values).any() else (np.nan,) * 3)
                    rows.append({"method": method, "step": step, "step_index": k,
                                 "measure": measure, "mean": est, "lo": lo, "hi": hi,
                                 "undefined": int(np.isnan(values).sum())})
    baseline = {m: {k: float(stats.nanmean(v))
                    for k, v in metrics.random_pair_baseline(originals[m], n_pairs, seed).items()}
                for m in explain}
    return CascadeResult(steps, pd.DataFrame(rows), baseline, examples, np.stack(outputs), seconds)


def noise_stability(explain: Mapping[str, Explain], images: np.ndarray,
                    noisy_images: np.ndarray, targets, *, n_pairs: int = 50, seed: int = 0,
                    clean_maps: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """How far each method's map moves when the image gets a (small) perturbation.

    Args:
        explain: method id -> explainer.
        images: (n, H, W, C) clean images.
        noisy_images: (n, H, W, C) their perturbed twins.
        targets: the class each map explains.
        n_pairs: random pairs for the baseline.
        seed: for the pairs.
        clean_maps: method -> (n, H, W) raw maps of ``images`` already computed with the same
            settings (reused instead of recomputed).

    Returns:
        DataFrame indexed by method id with columns (measure id, "clean vs noisy") -- the mean
        :func:`metrics.similarities` between the maps of the clean and the noisy images -- and
        (measure id, "random pairs") -- the random-pair baseline of the clean maps -- plus
        ("time", "seconds per image") of the noisy maps (a cached map's own, as computed).
    """
    clean_maps = dict(clean_maps or {})
    rows = {}
    for method, f in explain.items():
        clean = clean_maps.get(method)
        if clean is None:
            clean = f(images, targets)
        if np.shape(clean) != np.shape(noisy_images)[:3]:
            raise ValueError(f"clean maps of {method} have shape {np.shape(clean)}, expected "
                             f"{np.shape(noisy_images)[:3]}")
        noisy, took = _timed_maps(f, noisy_images, targets)
        per_image = took / len(noisy_images)
        moved = metrics.similarities(clean, noisy)
        base = metrics.random_pair_baseline(clean, n_pairs, seed)
        row = {}
        for m in metrics.MEASURES:
            row[(m, "clean vs noisy")] = float(stats.nanmean(moved[m]))
            row[(m, "random pairs")] = float(stats.nanmean(base[m]))
        rows[method] = row | {("time", "seconds per image"): per_image}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["measure", None])
    return table.rename_axis("method")


def smoothgrad_curve(model: keras.Model, images: np.ndarray, targets,
                     samples: Sequence[int] = (1, 2, 5, 10, 20, 50), *,
                     noisy_images: np.ndarray | None = None, smooth_noise: float = 0.20,
                     max_batch_images: int = 256, seed: int = 0, cache: bool = False) -> pd.DataFrame:
    """SmoothGrad's stability as a function of its sample count n, with its cost.

    For each n in ``samples``: two independent SmoothGrad runs (different noise seeds) on
    ``images`` and their mean Spearman correlation ("run to run"); with ``noisy_images``
    (same shape) also the mean Spearman between SmoothGrad maps of the clean and the noisy
    images ("clean vs noisy"); and the wall time per image of one run (seconds). Batches are
    sized so that at most ``max_batch_images`` noisy copies are in memory at once.
    ``cache``: keep every run's maps in the data folder (:func:`course_utils.memo.cached`,
    3 x len(samples) map sets of 4·n·H·W bytes), so a staged folder loads them; the seconds
    column is then the time computing them took, not the load.
    Returns a DataFrame indexed by n.
    """
    def smoothgrad(x: np.ndarray, run_seed: int, **kw: object) -> saliency.SaliencyResult:
        if cache:
            return memo.cached(saliency.compute, model, x, "smoothgrad", targets, seed=run_seed, **kw)
        return saliency.compute(model, x, "smoothgrad", targets, seed=run_seed, **kw)

    rows = []
    for n in samples:
        if n < 1:
            raise ValueError(f"sample counts must be >= 1, got {n}")
        kw = {"smooth_samples": int(n), "smooth_noise": smooth_noise,
              "batch_size": max(1, max_batch_images // int(n))}
        first = smoothgrad(images, seed, **kw)
        second = smoothgrad(images, seed + 1, **kw)
        row = {"n_samples": int(n),
               "run to run": float(stats.nanmean(metrics.spearman_maps(first.raw, second.raw))),
               "seconds per image": first.seconds / len(images)}
        if noisy_images is not None:
            noisy = smoothgrad(noisy_images, seed + 2, **kw)
            row["clean vs noisy"] = float(stats.nanmean(metrics.spearman_maps(first.raw, noisy.raw)))
        rows.append(row)
    return pd.DataFrame(rows).set_index("n_samples")


# ------------------------------------------------------------------ shifts and rotations
def move(arrays: np.ndarray, *, shift: int = 0, angle: float = 0.0) -> np.ndarray:
    """Images or maps moved ``shift`` pixels down and ``shift`` to the right, or rotated.

    ``arrays``: (n, H, W) maps or (n, H, W, C) images; ``shift``: an integer number of pixels
    (negative moves up and left); ``angle``: degrees, counter-clockwise as displayed with the
    first row at the top, about the image centre (bilinear interpolation). Give one of the two.
    Edges: pixels that enter from outside copy the nearest edge pixel (``mode="nearest"``), so
    no black bar or sharp new edge appears that a model could react to. An integer shift is
    exact (no interpolation); a shift and its inverse give back every pixel at least ``|shift|``
    from the edge, a rotation and its inverse only approximately (interpolation smooths).
    Returns float32 of the same shape.
    """
    from scipy import ndimage

    x = np.asarray(arrays, np.float32)
    if x.ndim not in (3, 4):
        raise ValueError(f"expected (n, H, W) maps or (n, H, W, C) images, got shape {x.shape}")
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)):
        raise ValueError(f"shift must be a whole number of pixels, got {shift!r}")
    if shift and angle:
        raise ValueError("give a shift or an angle, not both")
    if shift:
        offset = (0, shift, shift) + (0,) * (x.ndim - 3)
        return ndimage.shift(x, offset, order=0, mode="nearest")
    if angle:
        return ndimage.rotate(x, angle, axes=(2, 1), reshape=False, order=1, mode="nearest")
    return x.copy()


def move_margin(image_size: int, shifts: Sequence[int] = (), angles: Sequence[float] = ()) -> int:
    """Pixels to leave out at each edge so that every move keeps the compared centre in the image.

    A shift by s (down and right) and back loses an s-pixel strip; a rotation by a and back loses
    the corners outside the largest centred square that fits inside the rotated square, of side
    S / (cos a + sin a), plus one pixel for the interpolation. Returns the largest of these.
    """
    margin = max([abs(int(s)) for s in shifts] or [0])
    for a in angles:
        r = np.deg2rad(abs(float(a)) % 90)
        inner = image_size / (np.cos(r) + np.sin(r))
        margin = max(margin, int(np.ceil((image_size - inner) / 2)) + 1)
    return margin


@dataclass
class MoveResult:
    """Do maps move with the image? (:func:`shift_rotation_stability`)

    Attributes:
        moves: the moves, e.g. ["shift 1 px", ..., "rotate 5°"].
        scores: long DataFrame with columns method, move, comparison, measure, mean, lo, hi
            (bootstrap 95 % CI over images). ``comparison`` is "moved back" (the map of the moved
            image, moved back by the inverse move, against the original map: 1 = the map
            followed the image exactly), "left in place" (the map of the moved image against the
            original map without moving it back: high when the map stays where it was whatever
            the image does) or "interpolation only" (the original map moved and moved back: the
            best "moved back" can be, 1 for whole-pixel shifts, below 1 for rotations).
        baseline: method -> measure -> mean similarity of random pairs of original maps of
            different images (:func:`metrics.random_pair_baseline`), on the same central crop.
        p: DataFrame indexed by move with the model's "mean |Δp|", "max |Δp|" and "flipped"
            (predictions that crossed 0.5) -- a separate question: the prediction may change
            while the map does or does not.
        margin: pixels left out at each edge in every comparison (:func:`move_margin` plus the
            extra ``border``).
        examples: method -> {"original" or move: (k, H, W) raw maps (moved back) of the first
            k images}, for display.
        seconds: method -> seconds computing the maps of the moved images (as above for cached maps).
    """

    moves: list[str]
    scores: pd.DataFrame
    baseline: dict[str, dict[str, float]]
    p: pd.DataFrame
    margin: int
    examples: dict[str, dict[str, np.ndarray]]
    seconds: dict[str, float] = field(default_factory=dict)

    def table(self, measure: str = "spearman_abs") -> pd.DataFrame:
        """Mean ``measure`` per method (rows): "moved back" per move, then "random pairs"."""
        s = self.scores[(self.scores["measure"] == measure)
                        & (self.scores["comparison"] == "moved back")]
        wide = s.pivot(index="method", columns="move", values="mean")
        wide = wide.loc[list(dict.fromkeys(s["method"])), self.moves]
        wide["random pairs"] = [self.baseline[m][measure] for m in wide.index]
        return wide.rename_axis(columns=None)

    def verdict(self, move: str, measure: str = "spearman_abs") -> pd.DataFrame:
        """One row per method for one move: does the map follow the image?

        Columns: "moved back", "left in place", "interpolation only", "random pairs" (means of
        ``measure``); "kept" = (moved back - random pairs) / (interpolation only - random
        pairs), the share of the way from "no more alike than two different images" (0) to
        "followed the image exactly" (1); "follows" = the moved-back map beats both the
        random pairs and the map left in place.
        """
        if move not in self.moves:
            raise ValueError(f"move must be one of {self.moves}, got {move!r}")
        s = self.scores[(self.scores["measure"] == measure) & (self.scores["move"] == move)]
        wide = s.pivot(index="method", columns="comparison", values="mean")
        wide = wide.loc[list(dict.fromkeys(s["method"])),
                        ["moved back", "left in place", "interpolation only"]]
        wide["random pairs"] = [self.baseline[m][measure] for m in wide.index]
        gap = wide["interpolation only"] - wide["random pairs"]
        wide["kept"] = (wide["moved back"] - wide["random pairs"]) / gap.where(gap > 0)
        wide["follows"] = ((wide["moved back"] > wide["random pairs"])
                           & (wide["moved back"] > wide["left in place"]))
        return wide.rename_axis(columns=None)


def shift_rotation_stability(explain: Mapping[str, Explain], model: keras.Model,
                             images: np.ndarray, targets, *, shifts: Sequence[int] = (1, 2, 4),
                             angles: Sequence[float] = (2.0, 5.0), n_pairs: int = 50,
                             seed: int = 0, border: int = 0, n_boot: int = 200,
                             n_examples: int = 2,
                             clean_maps: Mapping[str, np.ndarray] | None = None) -> MoveResult:
    """Do the maps move with the image? Yang & Berdine's limitation 4.3, for small shifts and
    rotations.

    Each image is moved by :func:`move` (``shifts``: whole pixels down and right; ``angles``:
    degrees about the centre; edges copy the nearest pixel), each method's map of the moved
    image is moved *back* by the inverse move and compared, on the central crop that every move
    keeps inside the image (``margin`` px left out at each edge, :func:`move_margin` +
    ``border``), with the map of the original image by :func:`metrics.similarities` (Spearman
    of |map|, SSIM). A map that explains the image follows it: after the move back it lies
    where it was. Beside it: the map left in place (not moved back), the interpolation-only
    ceiling, the random-pair baseline of the original maps, and the model's |Δp| per move.
    This is the spirit of Kindermans et al.'s (2019) input invariance -- an explanation should
    mirror how the model responds to a transformation of the input -- applied to positions;
    their own transformation was a constant shift of the pixel *values*.

    Args:
        explain: method id -> explainer of ``model``.
        model: the classifier (for p before and after each move).
        images: (n, H, W, C), n >= 2.
        targets: the class each map explains.
        shifts: whole-pixel shifts, each down and to the right by that many pixels.
        angles: rotations in degrees, counter-clockwise about the image centre.
        n_pairs: random pairs of original maps for the baseline.
        seed: for the pairs and the bootstrap.
        border: extra pixels to leave out at each edge (e.g. a network's edge effects).
        n_boot: bootstrap resamples for the intervals.
        n_examples: images whose maps are kept for display.
        clean_maps: method -> (n, H, W) raw maps of ``images`` already computed with the same
            settings (reused instead of recomputed).

    Returns:
        :class:`MoveResult`.
    """
    images = _checks.images(images)
    size = images.shape[1]
    if images.shape[2] != size:
        raise ValueError(f"square images expected, got {images.shape[1:3]}")
    if isinstance(border, bool) or not isinstance(border, (int, np.integer)) or border < 0:
        raise ValueError(f"border must be a whole number of pixels >= 0, got {border!r}")
    moves = {f"shift {int(s)} px": {"shift": int(s)} for s in shifts}
    moves |= {f"rotate {float(a):g}°": {"angle": float(a)} for a in angles}
    if not moves:
        raise ValueError("give at least one shift or angle")
    margin = move_margin(size, shifts, angles) + int(border)
    if 2 * margin >= size - 6:
        raise ValueError(f"a {margin}-pixel margin leaves less than 7 x 7 pixels of a "
                         f"{size}-pixel image to compare")
    inner = (slice(None), slice(margin, size - margin), slice(margin, size - margin))
    inverse = {name: {k: -v for k, v in kw.items()} for name, kw in moves.items()}
    moved = {name: move(images, **kw) for name, kw in moves.items()}
    p0 = models.predict_p(model, images)
    p_rows = {}
    for name, x in moved.items():
        p1 = models.predict_p(model, x)
        dp = np.abs(p1 - p0)
        p_rows[name] = {"mean |Δp|": float(dp.mean()), "max |Δp|": float(dp.max()),
                        "flipped": int(((p1 > 0.5) != (p0 > 0.5)).sum())}
    clean_maps = dict(clean_maps or {})
    k = min(n_examples, len(images))
    rows, baseline, examples, seconds = [], {}, {}, {}
    for method, f in explain.items():
        original = clean_maps.get(method)
        original = f(images, targets) if original is None else np.asarray(original, np.float32)
        if original.shape != images.shape[:3]:
            raise ValueError(f"clean maps of {method} have shape {original.shape}, expected "
                             f"{images.shape[:3]}")
        baseline[method] = {m: float(stats.nanmean(v)) for m, v in
                            metrics.random_pair_baseline(original[inner], n_pairs, seed).items()
                            if m in ("spearman_abs", "ssim")}
        examples[method] = {"original": original[:k]}
        seconds[method] = 0.0
        reference = metrics.map_reference(original[inner])  # ranked once, for every comparison
        for name, x in moved.items():
            maps, took = _timed_maps(f, x, targets)
            seconds[method] += took
            back = move(maps, **inverse[name])
            examples[method][name] = back[:k]
            there_and_back = move(move(original, **moves[name]), **inverse[name])
            for comparison, other in (("moved back", back), ("left in place", maps),
                                      ("interpolation only", there_and_back)):
                sims = metrics.similarities(reference, other[inner])
                for measure in ("spearman_abs", "ssim"):
                    values = sims[measure]
                    est, lo, hi = (stats.bootstrap_ci(values, n_boot=n_boot, seed=seed)
                                   if np.isfinite(values).any() else (np.nan,) * 3)
                    rows.append({"method": method, "move": name, "comparison": comparison,
                                 "measure": measure, "mean": est, "lo": lo, "hi": hi})
    p_table = pd.DataFrame.from_dict(p_rows, orient="index").rename_axis("move")
    return MoveResult(list(moves), pd.DataFrame(rows), baseline, p_table, margin, examples,
                      seconds)
