"""Sanity checks of saliency maps: do they depend on the model, the image and nothing else?

* **Repeatability and reproducibility** (Arun et al. 2021) -- :func:`map_agreement`: the maps of
  other models (another seed, another architecture) against a reference model's, beside the
  random-pair baseline (:func:`course_utils.metrics.random_pair_baseline`).
* **Noise** -- :func:`noise_stability` (how far each method's map moves under imperceptible noise)
  and :func:`smoothgrad_curve` (SmoothGrad's stability against its sample count and cost).
* **Model randomisation** (Adebayo et al. 2018) -- :func:`randomised_layers` (a context manager
  that re-initialises layers and always restores the trained weights) and
  :func:`cascading_randomisation`.

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

from . import metrics, models, saliency, stats

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
        seconds: method -> wall time.
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
    examples = {m: np.empty((len(steps), k_show, *images.shape[1:3]), np.float32)
                for m in explain}
    seconds = dict.fromkeys(explain, 0.0)
    rows, outputs = [], []
    for k, step in enumerate(steps):
        with randomised_layers(model, layer_names[:k], seed=seed):
            outputs.append(models.predict_p(model, images))
            for method, f in explain.items():
                start = time.perf_counter()
                maps = f(images, targets)
                seconds[method] += time.perf_counter() - start
                if k == 0:
                    originals[method] = maps
                examples[method][k] = maps[:k_show]
                for measure, values in metrics.similarities(originals[method], maps).items():
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
        ("time", "seconds per image") of the noisy maps.
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
        start = time.perf_counter()
        noisy = f(noisy_images, targets)
        per_image = (time.perf_counter() - start) / len(noisy_images)
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
                     max_batch_images: int = 256, seed: int = 0) -> pd.DataFrame:
    """SmoothGrad's stability as a function of its sample count n, with its cost.

    For each n in ``samples``: two independent SmoothGrad runs (different noise seeds) on
    ``images`` and their mean Spearman correlation ("run to run"); with ``noisy_images``
    (same shape) also the mean Spearman between SmoothGrad maps of the clean and the noisy
    images ("clean vs noisy"); and the wall time per image of one run (seconds). Batches are
    sized so that at most ``max_batch_images`` noisy copies are in memory at once.
    Returns a DataFrame indexed by n.
    """
    rows = []
    for n in samples:
        if n < 1:
            raise ValueError(f"sample counts must be >= 1, got {n}")
        kw = {"smooth_samples": int(n), "smooth_noise": smooth_noise,
              "batch_size": max(1, max_batch_images // int(n))}
        first = saliency.compute(model, images, "smoothgrad", targets, seed=seed, **kw)
        second = saliency.compute(model, images, "smoothgrad", targets, seed=seed + 1, **kw)
        row = {"n_samples": int(n),
               "run to run": float(stats.nanmean(metrics.spearman_maps(first.raw, second.raw))),
               "seconds per image": first.seconds / len(images)}
        if noisy_images is not None:
            noisy = saliency.compute(model, noisy_images, "smoothgrad", targets, seed=seed + 2, **kw)
            row["clean vs noisy"] = float(stats.nanmean(metrics.spearman_maps(first.raw, noisy.raw)))
        rows.append(row)
    return pd.DataFrame(rows).set_index("n_samples")
