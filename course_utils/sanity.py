"""The limitations of saliency maps, measured (notebook 04).

* **Rendering** — :func:`render_variants`: one map drawn several defensible ways (scalings and
  thresholds); the pixels' ranks never change, the picture does.
* **Model-specific maps** — a second architecture for reproducibility (Arun et al. 2021) comes
  from :func:`course_utils.models.load_or_train_cxr_model` (``architecture=``); :func:`similarities` and
  :func:`random_pair_baseline` compare maps and give Arun's baseline: the similarity of maps of
  *different* images from the same model; :func:`map_agreement` tabulates both.
* **Noise** — :func:`noise_stability` (how far each method's map moves under imperceptible noise)
  and :func:`smoothgrad_curve` (SmoothGrad's stability against its sample count and cost).
* **Sanity checks** (Adebayo et al. 2018) — :func:`randomised_layers` (a context manager that
  re-initialises layers and always restores the trained weights), :func:`cascading_randomisation`
  and :func:`guided_backprop` (tf-keras-vis' ``GuidedBackpropagation`` modifier on a clone).
* **Beyond images** — :func:`load_breast_cancer_split`, :func:`build_tabular_mlp`,
  :func:`tabular_attributions` (gradient x input for a table) and :func:`permutation_importance`
  (scikit-learn's, for a Keras model).

Conventions: images (n, H, W, C) float32 in [0, 1]; maps (n, H, W) float32; per-image results
(n,) float64; ``targets`` as in :func:`course_utils.saliency.compute` (0/1 for a sigmoid model).
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd
from keras import layers

from . import config, metrics, models, saliency

#: The method added to :data:`saliency.METHODS` here (Springenberg et al. 2015).
GUIDED_BACKPROP = "guided_backprop"
#: Every method :func:`raw_maps` accepts.
SANITY_METHODS: tuple[str, ...] = (*saliency.METHODS, GUIDED_BACKPROP)
#: Display names, extending :data:`saliency.LABELS`.
LABELS: dict[str, str] = {**saliency.LABELS, GUIDED_BACKPROP: "Guided backprop"}
#: The similarity measures of :func:`similarities`, with their display names.
MEASURES: dict[str, str] = {"spearman": "Spearman", "spearman_abs": "Spearman (abs)",
                            "ssim": "SSIM"}
#: The course CNN's weighted layers from the top (output) down: the cascading randomisation order.
CASCADE_LAYERS: tuple[str, ...] = ("p_covid", "dense", "last_conv", "conv3", "conv2", "conv1")


# ============================================================================ maps
def guided_backprop(model: keras.Model, images: np.ndarray, targets, *,
                    batch_size: int = 64) -> np.ndarray:
    """Guided backpropagation maps (Springenberg et al. 2015): (n, H, W, C) -> (n, H, W) >= 0.

    The gradient of the target's logit w.r.t. the input, except that every ReLU passes a
    gradient back only where both its input and the incoming gradient are positive. Uses
    tf-keras-vis' ``GuidedBackpropagation`` model modifier, which works on a Keras 3 Functional
    model; the modifier edits the activations, so tf-keras-vis first *clones* the model (with the
    current weights: a clone made before a weight change would not see it), and the clone is
    discarded afterwards. Like the vanilla gradient, the map is |guided gradient|, max over channels.
    """
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import GuidedBackpropagation

    images = np.asarray(images, np.float32)
    guided = Saliency(model, model_modifier=GuidedBackpropagation(), clone=True).model
    targets = np.broadcast_to(np.asarray(targets), (len(images),))
    out = [np.abs(saliency.input_gradients(guided, images[i:i + batch_size],
                                           targets[i:i + batch_size])).max(axis=-1)
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float32)


def raw_maps(model: keras.Model, images: np.ndarray, method: str, targets,
             **kwargs) -> np.ndarray:
    """Raw (n, H, W) maps of any method in :data:`SANITY_METHODS`.

    ``kwargs`` go to :func:`saliency.compute` (e.g. ``smooth_samples``, ``layer``,
    ``batch_size``); guided backprop takes only ``batch_size``.
    """
    if method == GUIDED_BACKPROP:
        return guided_backprop(model, images, targets,
                               **{k: v for k, v in kwargs.items() if k == "batch_size"})
    return saliency.compute(model, images, method, targets, **kwargs).raw


# ============================================================================ similarity
def similarities(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Similarity of paired raw maps (n, H, W) x (n, H, W), each measure an (n,) array.

    ``spearman``: rank correlation of the maps as they are, in [-1, 1] (a sign flip counts);
    ``spearman_abs``: of |maps| (Adebayo et al. report both); ``ssim``: structural similarity of
    the min-max scaled |maps| (what the eye sees; Arun et al.'s measure), at most 1.
    Identical maps give 1 everywhere. A constant map gives NaN Spearman (no ranking).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return {"spearman": metrics.spearman_maps(a, b), "spearman_abs": metrics.spearman_abs(a, b),
            "ssim": metrics.ssim_maps(np.abs(a), np.abs(b))}


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


def map_agreement(reference: Mapping[str, np.ndarray],
                  others: Mapping[str, Mapping[str, np.ndarray]], *,
                  measures: Sequence[str] = ("spearman_abs", "ssim"), n_pairs: int = 50,
                  n_boot: int = 1000, seed: int = 0,
                  baseline: str = "random pairs") -> pd.DataFrame:
    """Agreement of other models' maps with a reference model's, beside the random-pair baseline.

    ``reference``: method -> (n, H, W) raw maps of the reference model; ``others``: comparison
    name (e.g. "other seed") -> method -> maps of the *same* n images. For every method,
    comparison and measure: the mean of :func:`similarities` over images with a bootstrap 95 %
    CI, plus the ``baseline`` rows (:func:`random_pair_baseline` of the reference maps).
    Returns a long DataFrame with columns method (display name), comparison, measure (display
    name), mean, lo, hi.
    """
    rows = []
    for method, ref in reference.items():
        comparisons = {name: similarities(ref, maps[method]) for name, maps in others.items()}
        comparisons[baseline] = random_pair_baseline(ref, n_pairs, seed)
        for name, sims in comparisons.items():
            for m in measures:
                est, lo, hi = metrics.bootstrap_ci(sims[m], n_boot=n_boot, seed=seed)
                rows.append({"method": LABELS.get(method, method), "comparison": name,
                             "measure": MEASURES[m], "mean": est, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


# ============================================================================ rendering
def render_variants(saliency_map: np.ndarray) -> dict[str, np.ndarray]:
    """One (H, W) raw map, scaled to [0, 1] in six common ways: name -> (H, W) float32.

    ``min-max`` (the default everywhere), ``clip at 99th pct`` (the top 1 % saturate),
    ``square root`` (gamma 0.5: faint areas brighten), ``log`` (log1p of the map scaled so its
    99th percentile is 100: everything above noise looks hot), and two thresholds on the
    min-max map, ``top 5 %`` and ``Otsu`` (1 above the threshold, 0 below). Min-max, square
    root and log are strictly increasing transforms: the pixels' ranks, so every rank statistic,
    are unchanged (clipping ties the top 1 %). Signed maps are shown as |map|.
    """
    m = np.abs(np.asarray(saliency_map, np.float64))
    if m.ndim != 2:
        raise ValueError(f"expected one (H, W) map, got shape {m.shape}")
    mm = metrics.minmax(m[None])[0]
    p99 = np.percentile(m, 99)
    clipped = np.clip(m / p99, 0, 1) if p99 > 0 else mm
    logged = metrics.minmax(np.log1p(100 * m / p99)[None])[0] if p99 > 0 else mm
    out = {"min-max": mm, "clip at 99th pct": clipped, "square root": np.sqrt(mm), "log": logged,
           "top 5 %": metrics.binarise(m[None], "quantile", 0.95)[0].astype(float),
           "Otsu": metrics.binarise(m[None], "otsu")[0].astype(float)}
    return {k: v.astype(np.float32) for k, v in out.items()}


# ============================================================================ randomisation
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

    ``steps``: "original" then the cumulatively randomised layers, top first ("p_covid",
    "+dense", ...). ``scores``: long DataFrame with columns method, step, step_index, measure,
    mean, lo, hi (bootstrap 95 % CI over images) of the similarity of each step's map to the
    original map of the same image. ``baseline``: method -> measure -> mean similarity of random
    pairs of original maps of different images (:func:`random_pair_baseline`). ``examples``:
    method -> (n_steps, k, H, W) raw maps of the first k images, for display. ``p``: (n_steps,
    n) model outputs at each step. ``seconds``: method -> wall time.
    """

    steps: list[str]
    scores: pd.DataFrame
    baseline: dict[str, dict[str, float]]
    examples: dict[str, np.ndarray]
    p: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)

    def verdict(self, by_step: str | None = None,
                measures: Sequence[str] = ("ssim", "spearman_abs")) -> pd.DataFrame:
        """Which methods pass: one row per method, for each of ``measures``:

        * "<measure>: at <by_step>" — mean similarity to the original maps at step ``by_step``
          (default: the last step, every listed layer random);
        * "<measure>: random pairs" — the random-pair baseline of the original maps;
        * "<measure>: first step below" — the first step whose similarity is below the
          baseline ("never" if none): how early the map noticed that the model was destroyed;
        * "passes (<measure>)" — the similarity at ``by_step`` is below the baseline (Arun et
          al.'s criterion, with SSIM): the randomised model's maps are less alike the originals
          than the original maps of two different images are.
        """
        step = self.steps[-1] if by_step is None else by_step
        if step not in self.steps[1:]:
            raise ValueError(f"by_step must be one of the randomised steps {self.steps[1:]}, got {step!r}")
        rows = []
        for method, group in self.scores.groupby("method", sort=False):
            row: dict[str, object] = {"method": LABELS.get(method, method)}
            for m in measures:
                g = group[group["measure"] == m].sort_values("step_index")
                base = self.baseline[method][m]
                below = g[(g["mean"] < base) & (g["step"] != "original")]
                at = float(g.loc[g["step"] == step, "mean"].iloc[0])
                row |= {f"{MEASURES[m]}: at {step}": at, f"{MEASURES[m]}: random pairs": base,
                        f"{MEASURES[m]}: first step below": below["step"].iloc[0] if len(below)
                        else "never",
                        f"passes ({MEASURES[m]})": bool(at < base)}
            rows.append(row)
        return pd.DataFrame(rows).set_index("method")


def _step_names(layer_names: Sequence[str]) -> list[str]:
    return ["original", *[("" if k == 0 else "+") + n for k, n in enumerate(layer_names)]]


def cascading_randomisation(model: keras.Model, images: np.ndarray, targets,
                            methods: Sequence[str], *, layer_names: Sequence[str] = CASCADE_LAYERS,
                            method_kwargs: Mapping[str, dict] | None = None, seed: int = 0,
                            n_examples: int = 2, n_pairs: int = 50, n_boot: int = 200
                            ) -> CascadeResult:
    """Adebayo et al.'s cascading model-parameter randomisation test, batched over images.

    Step 0 is the trained model; step k re-initialises the top k layers of ``layer_names``
    (cumulatively, from the output down) inside :func:`randomised_layers`, so the trained
    weights are restored afterwards. At each step every method's maps of ``images`` (n, H, W, C)
    for ``targets`` are compared with the step-0 maps by :func:`similarities`. ``method_kwargs``:
    method -> keyword arguments for :func:`raw_maps` (e.g. ``{"smoothgrad": {"smooth_samples":
    10}}``). Methods are any of :data:`SANITY_METHODS`.
    """
    images = np.asarray(images, np.float32)
    unknown = set(methods) - set(SANITY_METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {SANITY_METHODS}")
    method_kwargs = dict(method_kwargs or {})
    steps = _step_names(layer_names)
    k_show = min(n_examples, len(images))
    originals: dict[str, np.ndarray] = {}
    examples = {m: np.empty((len(steps), k_show, *images.shape[1:3]), np.float32) for m in methods}
    seconds = dict.fromkeys(methods, 0.0)
    rows, outputs = [], []
    for k, step in enumerate(steps):
        with randomised_layers(model, layer_names[:k], seed=seed):
            outputs.append(models.predict_p(model, images))
            for method in methods:
                start = time.perf_counter()
                maps = raw_maps(model, images, method, targets, **method_kwargs.get(method, {}))
                seconds[method] += time.perf_counter() - start
                if k == 0:
                    originals[method] = maps
                examples[method][k] = maps[:k_show]
                for measure, values in similarities(originals[method], maps).items():
                    est, lo, hi = (metrics.bootstrap_ci(values, n_boot=n_boot, seed=seed)
                                   if np.isfinite(values).any() else (np.nan,) * 3)
                    rows.append({"method": method, "step": step, "step_index": k,
                                 "measure": measure, "mean": est, "lo": lo, "hi": hi,
                                 "undefined": int(np.isnan(values).sum())})
    baseline = {m: {k: float(metrics.nanmean(v))
                    for k, v in random_pair_baseline(originals[m], n_pairs, seed).items()}
                for m in methods}
    return CascadeResult(steps, pd.DataFrame(rows), baseline, examples, np.stack(outputs), seconds)


# ============================================================================ noise
def noise_stability(model: keras.Model, images: np.ndarray, noisy_images: np.ndarray, targets,
                    methods: Sequence[str], method_kwargs: Mapping[str, dict] | None = None,
                    n_pairs: int = 50, seed: int = 0,
                    clean_maps: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """How far each method's map moves when the image gets a (small) perturbation.

    ``images``, ``noisy_images``: (n, H, W, C) pairs. For each method: the mean
    :func:`similarities` between the maps of the clean and the noisy images, and the
    random-pair baseline of the clean maps (maps of different images), per measure.
    ``clean_maps``: method -> (n, H, W) raw maps of ``images`` already computed with the same
    settings (reused instead of recomputed). Rows are methods; columns "<measure>: clean vs
    noisy" and "<measure>: random pairs", plus "seconds per image" (of the noisy maps).
    """
    method_kwargs = dict(method_kwargs or {})
    clean_maps = dict(clean_maps or {})
    rows = {}
    for method in methods:
        kwargs = method_kwargs.get(method, {})
        clean = clean_maps.get(method)
        if clean is None:
            clean = raw_maps(model, images, method, targets, **kwargs)
        if np.shape(clean) != np.shape(noisy_images)[:3]:
            raise ValueError(f"clean maps of {method} have shape {np.shape(clean)}, expected "
                             f"{np.shape(noisy_images)[:3]}")
        start = time.perf_counter()
        noisy = raw_maps(model, noisy_images, method, targets, **kwargs)
        per_image = (time.perf_counter() - start) / len(noisy_images)
        row = {}
        moved = similarities(clean, noisy)
        base = random_pair_baseline(clean, n_pairs, seed)
        for m, name in MEASURES.items():
            row[f"{name}: clean vs noisy"] = float(metrics.nanmean(moved[m]))
            row[f"{name}: random pairs"] = float(metrics.nanmean(base[m]))
        rows[LABELS[method]] = row | {"seconds per image": per_image}
    return pd.DataFrame(rows).T


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
               "run to run": float(metrics.nanmean(metrics.spearman_maps(first.raw, second.raw))),
               "seconds per image": first.seconds / len(images)}
        if noisy_images is not None:
            noisy = saliency.compute(model, noisy_images, "smoothgrad", targets, seed=seed + 2, **kw)
            row["clean vs noisy"] = float(metrics.nanmean(metrics.spearman_maps(first.raw, noisy.raw)))
        rows.append(row)
    return pd.DataFrame(rows).set_index("n_samples")


# ============================================================================ tabular data
@dataclass(frozen=True)
class TabularSplit:
    """A standardised tabular data set split into train and test.

    ``x_train``/``x_test``: (n, d) float32, each feature centred and scaled by the training
    part's mean and standard deviation (so 0 = the average training patient, 1 = one s.d.
    above); ``y_train``/``y_test``: (n,) int64 with 1 = the positive class; ``features``: the d
    feature names; ``positive``: the name of class 1.
    """

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    features: tuple[str, ...]
    positive: str


def load_breast_cancer_split(test_size: float = 0.3, seed: int = config.SEED) -> TabularSplit:
    """scikit-learn's Wisconsin breast cancer set (569 tumours, 30 features), standardised.

    Ships with scikit-learn (no download). Relabelled so that 1 = malignant (scikit-learn codes
    malignant as 0). Stratified split; the scaler is fitted on the training part only.
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    ds = load_breast_cancer()
    y = (ds.target == list(ds.target_names).index("malignant")).astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(ds.data, y, test_size=test_size, stratify=y,
                                              random_state=seed)
    scaler = StandardScaler().fit(x_tr)
    return TabularSplit(scaler.transform(x_tr).astype(np.float32),
                        scaler.transform(x_te).astype(np.float32), y_tr, y_te,
                        tuple(str(f) for f in ds.feature_names), "malignant")


def build_tabular_mlp(n_features: int, seed: int = config.SEED, hidden: int = 16) -> keras.Model:
    """A small Functional MLP for tabular data: d -> Dense(hidden, relu) -> Dense(1, sigmoid)."""
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((n_features,), name="features")
    x = layers.Dense(hidden, activation="relu", kernel_initializer=init, name="hidden")(inputs)
    outputs = layers.Dense(1, activation="sigmoid", kernel_initializer=init, name="p_positive")(x)
    return keras.Model(inputs, outputs, name="tabular_mlp")


def train_tabular_mlp(split: TabularSplit, *, epochs: int = 60, seed: int = config.SEED,
                      hidden: int = 16, learning_rate: float = 3e-3) -> keras.Model:
    """Fit :func:`build_tabular_mlp` on ``split``'s training part (Adam, binary cross-entropy,
    full batches of 64, seeded; a few seconds on a CPU)."""
    keras.utils.set_random_seed(seed)
    model = build_tabular_mlp(split.x_train.shape[1], seed=seed, hidden=hidden)
    model.compile(keras.optimizers.Adam(learning_rate), "binary_crossentropy", metrics=["accuracy"])
    model.fit(split.x_train, split.y_train.astype("float32"), epochs=epochs, batch_size=64,
              shuffle=True, verbose=0)
    return model


def predict_tabular(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """p(class 1) of a sigmoid model for a small table (n, d): (n,) float32 in [0, 1].

    One direct (eager) call instead of ``model.predict``: a table of a few hundred rows fits in
    one batch, and ``predict``'s compiled step would be re-traced for every new model or shape.
    """
    return np.asarray(model(np.asarray(x, np.float32), training=False), np.float32).reshape(-1)


def tabular_attributions(model: keras.Model, x: np.ndarray, target: int = 1) -> np.ndarray:
    """Gradient x input for rows of a table: (n, d) -> (n, d), logit units.

    The gradient of the target's logit (for a sigmoid model: +z for target 1, -z for 0) w.r.t.
    each feature, times the feature's value. Relative to the point x = 0 — with standardised
    features, the average patient. For a linear model z = x.w + b this is exactly w * x.
    """
    x = np.asarray(x, np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a table (n, d), got shape {x.shape}")
    return saliency.input_gradients(model, x, target) * x


class _KerasBinary:
    """The minimum scikit-learn's scorers need from a Keras sigmoid model."""

    def __init__(self, model: keras.Model):
        self.model = model

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags())

    def fit(self, x, y):  # pragma: no cover - never refitted; present for the estimator API
        return self


def permutation_importance(model: keras.Model, x: np.ndarray, y: np.ndarray, *,
                           n_repeats: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's permutation importance of each column for a Keras sigmoid model.

    Importance = the mean drop of the score when one column of ``x`` (n, d) is shuffled,
    ``n_repeats`` times. The score is minus the binary cross-entropy (log-loss, nats) of
    p(class 1) against ``y`` (n,) 0/1 — smoother than accuracy on a small test set.
    Returns ``(mean, std)``, each (d,) in nats.
    """
    from sklearn.inspection import permutation_importance as sk_permutation_importance
    from sklearn.metrics import log_loss

    def score(estimator, xs, ys):
        p = predict_tabular(estimator.model, xs)
        return -log_loss(ys, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])

    res = sk_permutation_importance(_KerasBinary(model), np.asarray(x, np.float32), np.asarray(y),
                                    scoring=score, n_repeats=n_repeats, random_state=seed)
    return res.importances_mean, res.importances_std
