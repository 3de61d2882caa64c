"""One entry point over the saliency methods the course uses: :func:`compute`.

Gradient methods (vanilla, SmoothGrad) and the CAM family (Grad-CAM, Grad-CAM++, Score-CAM)
come from tf-keras-vis; gradient x input and Integrated Gradients are short batched
``tf.GradientTape`` code (tf-keras-vis does not have them). Every method returns *raw* maps
(what the metrics need) and min-max *normalised* maps (what the eye needs).

Pitfalls handled here, so learners meet them as lessons rather than bugs:

* Maps are taken of the **pre-activation score** (logit): a softmax/sigmoid output layer is
  swapped for a linear twin that shares every other layer (no 500 MB model clone).
* tf-keras-vis' ``ReplaceToLinear`` fails on a Keras 3 ``Sequential`` model; we never use it.
* Score-CAM applies a softmax over the model outputs; with one sigmoid unit that softmax is
  always 1 and every channel gets the same weight. For single-output models we score the
  two-class softmax ``[0, z]``, whose second entry is exactly ``sigmoid(z)``.
* tf-keras-vis min-max normalises by default; we ask it not to and normalise ourselves.
"""
from __future__ import annotations

import time
import warnings
import weakref
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf
from scipy import ndimage

#: Names accepted by :func:`compute`, in the order the course introduces them.
METHODS: tuple[str, ...] = ("vanilla", "smoothgrad", "gradxinput", "integrated_gradients",
                            "gradcam", "gradcam++", "scorecam")

#: Human-readable names for plots and tables.
LABELS: dict[str, str] = {
    "vanilla": "Vanilla gradient", "smoothgrad": "SmoothGrad", "gradxinput": "Gradient × input",
    "integrated_gradients": "Integrated Gradients", "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM",
}

warnings.filterwarnings("ignore", message=r"The structure of `inputs`", category=UserWarning)


@dataclass
class SaliencyResult:
    """Maps for a batch of images.

    ``raw``: (n, H, W) float32, the method's own units (|gradient| for vanilla and SmoothGrad,
    signed relevance for gradient x input and IG, ReLU'd class activation for the CAMs).
    ``normalised``: (n, H, W) float32 in [0, 1], per-image min-max of ``raw`` (of ``|raw|``
    for the signed methods). ``seconds``: wall time of the call.
    """

    method: str
    raw: np.ndarray
    normalised: np.ndarray
    seconds: float
    params: dict = field(default_factory=dict)


def normalise(maps: np.ndarray) -> np.ndarray:
    """Per-map min-max scaling of (n, H, W) maps to [0, 1]; a constant map becomes all zeros."""
    maps = np.asarray(maps, dtype=np.float32)
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1), 0).astype(np.float32)


def smooth(maps: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Gaussian-blur each (n, H, W) map by ``sigma`` pixels (not across the batch axis)."""
    return ndimage.gaussian_filter(np.asarray(maps, np.float32), sigma=(0, sigma, sigma))


class DenseLogits(keras.layers.Layer):
    """The pre-activation output of an existing Dense layer, using that layer's own variables."""

    def __init__(self, dense: keras.layers.Dense, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, x):
        z = keras.ops.matmul(x, self.dense.kernel)
        return z + self.dense.bias if self.dense.use_bias else z


_LOGIT_TWINS: "weakref.WeakKeyDictionary[keras.Model, keras.Model]" = weakref.WeakKeyDictionary()


def logit_model(model: keras.Model) -> keras.Model:
    """A twin of ``model`` whose output is the pre-activation score of its last Dense layer.

    Every layer but the last is shared (same weights, no copy); the last Dense layer is
    re-created with a linear activation and the same kernel and bias. Models whose last
    layer is already linear are returned unchanged. The twin is cached on the model.
    """
    cached = _LOGIT_TWINS.get(model)
    if cached is not None:
        return cached
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if activation is None or activation is keras.activations.linear:
        return model
    if not isinstance(last, keras.layers.Dense):
        raise ValueError(f"cannot strip the output activation of a {type(last).__name__} layer; "
                         "end the model with a Dense layer or pass a model with linear outputs")
    outputs = DenseLogits(last, name=f"{last.name}_logits")(last.input)
    result = keras.Model(model.inputs, outputs, name=f"{model.name}_logits")
    _LOGIT_TWINS[model] = result
    return result


def _scores(model: keras.Model, targets) -> tuple[object, np.ndarray]:
    """A tf-keras-vis score function for ``targets`` (class index per image or one int)."""
    from tf_keras_vis.utils.scores import BinaryScore, CategoricalScore

    targets = np.atleast_1d(np.asarray(targets, dtype=np.int64))
    if model.outputs[0].shape[-1] == 1:
        if not np.isin(targets, (0, 1)).all():
            raise ValueError(f"a single-output model takes targets 0 or 1, got {targets}")
        return BinaryScore(targets.astype(bool).tolist()), targets
    n_classes = model.outputs[0].shape[-1]
    if targets.min() < 0 or targets.max() >= n_classes:
        raise ValueError(f"targets must be class indices in [0, {n_classes}), got {targets}")
    return CategoricalScore(targets.tolist()), targets


def _target_score(outputs: tf.Tensor, targets: np.ndarray) -> tf.Tensor:
    """(n,) score of each image's target: the logit, or for one output +z (target 1) / -z (0)."""
    if outputs.shape[-1] == 1:
        return outputs[:, 0] * tf.constant(2.0 * targets - 1.0, outputs.dtype)
    return tf.gather(outputs, targets, axis=1, batch_dims=1)


def input_gradients(model: keras.Model, images: np.ndarray, targets) -> np.ndarray:
    """d(score of target)/d(input) for a batch: (n, H, W, C) float32 (logit scores)."""
    logits = logit_model(model)
    _, targets = _scores(logits, targets)
    targets = np.broadcast_to(targets, (len(images),))
    x = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = _target_score(logits(x, training=False), targets)
    return tape.gradient(score, x).numpy()


def _integrated_gradients(model, images, targets, steps: int, baseline) -> np.ndarray:
    """Sum over channels of IG attributions (Sundararajan et al. 2017), midpoint Riemann sum."""
    baseline = np.zeros_like(images) if baseline is None else np.broadcast_to(baseline, images.shape)
    alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps
    total = np.zeros_like(images, dtype=np.float32)
    for a in alphas:  # each step is one batched forward/backward pass over the chunk
        total += input_gradients(model, baseline + a * (images - baseline), targets)
    return ((images - baseline) * total / steps).sum(axis=-1)


def _binary_as_two_class(model: keras.Model) -> keras.Model:
    """For Score-CAM: turn a one-logit model into logits [0, z] so softmax gives sigmoid(z)."""
    z = model.outputs[0]
    two = keras.layers.Concatenate(name="two_class_logits")([keras.ops.zeros_like(z), z])
    return keras.Model(model.inputs, two, name=f"{model.name}_two_class")


def _raw_chunk(model: keras.Model, images: np.ndarray, method: str, targets: np.ndarray, *,
               layer, smooth_samples, smooth_noise, ig_steps, baseline, score_max_n
               ) -> np.ndarray:
    """Raw maps (n, H, W) of one chunk of images; ``targets`` is (n,) already validated."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.scores import CategoricalScore

    logits = logit_model(model)
    score, _ = _scores(logits, targets)
    cam_args = {"penultimate_layer": layer, "seek_penultimate_conv_layer": layer is None}
    if method in ("vanilla", "smoothgrad"):
        samples = smooth_samples if method == "smoothgrad" else 0
        return Saliency(logits, clone=False)(score, images, smooth_samples=samples,
                                             smooth_noise=smooth_noise, normalize_map=False)
    if method == "gradxinput":
        return (input_gradients(model, images, targets) * images).sum(-1)
    if method == "integrated_gradients":
        return _integrated_gradients(model, images, targets, ig_steps, baseline)
    if method == "gradcam":
        return Gradcam(logits, clone=False)(score, images, normalize_cam=False, **cam_args)
    if method == "gradcam++":
        return GradcamPlusPlus(logits, clone=False)(score, images, normalize_cam=False, **cam_args)
    scored = logits  # scorecam
    if logits.outputs[0].shape[-1] == 1:
        scored, score = _binary_as_two_class(logits), CategoricalScore(targets.tolist())
    return Scorecam(scored, clone=False)(score, images, max_N=score_max_n, batch_size=32,
                                         normalize_cam=False, **cam_args)


#: SmoothGrad chunks hold at most this many noisy input values at once (float64: 256 MB).
SMOOTHGRAD_MAX_VALUES = 32 * 2**20


def compute(model: keras.Model, images: np.ndarray, method: str, targets, *,
            layer: str | None = None, smooth_samples: int = 20, smooth_noise: float = 0.20,
            ig_steps: int = 32, baseline: np.ndarray | None = None, score_max_n: int | None = 32,
            batch_size: int = 64, seed: int | None = 0) -> SaliencyResult:
    """Saliency maps of ``model`` for a batch of images, computed ``batch_size`` images at a time.

    Parameters
    ----------
    images : (n, H, W, C) array, already preprocessed the way ``model`` expects.
    method : one of :data:`METHODS`.
    targets : class index per image (or one int for all). For a one-output sigmoid model,
        1 explains the positive class (p) and 0 the negative one.
    layer : convolution layer for the CAM methods (default: the last one, found by tf-keras-vis).
    smooth_samples, smooth_noise : SmoothGrad sample count and noise s.d. as a fraction of each
        image's value range (Smilkov et al. 2017 suggest 10-20 %).
    ig_steps, baseline : Integrated Gradients path steps and baseline (default all zeros).
    score_max_n : Score-CAM uses the ``score_max_n`` most variable channels (Faster-Score-CAM);
        None uses all channels (slow).
    batch_size : images per gradient call (bounds memory; results do not depend on it except
        for SmoothGrad's random noise). SmoothGrad lowers it so that a chunk's noisy copies
        stay under :data:`SMOOTHGRAD_MAX_VALUES` values (about 256 MB as float64).
    seed : makes SmoothGrad's noise reproducible. NumPy's global generator (which tf-keras-vis
        draws from) is seeded for this call only and restored afterwards; None leaves it alone.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch (n, H, W, C), got shape {images.shape}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    _, target_arr = _scores(logit_model(model), targets)
    target_arr = np.broadcast_to(target_arr, (len(images),)).copy()
    params: dict = {"targets": target_arr.tolist()}
    saved_rng = None
    if method == "smoothgrad":
        params |= {"smooth_samples": smooth_samples, "smooth_noise": smooth_noise}
        # tf-keras-vis holds all noisy copies of a chunk at once, as float64
        batch_size = max(1, min(batch_size, SMOOTHGRAD_MAX_VALUES // max(
            1, smooth_samples * int(np.prod(images.shape[1:])))))
        if seed is not None:  # tf-keras-vis draws its noise from NumPy's global generator:
            saved_rng = np.random.get_state()  # seed it for this call only, then put it back
            np.random.seed(seed)
    params |= {"ig_steps": ig_steps} if method == "integrated_gradients" else {}
    params |= {"max_N": score_max_n} if method == "scorecam" else {}
    start = time.perf_counter()
    try:
        chunks = [np.asarray(_raw_chunk(model, images[i:i + batch_size], method,
                                        target_arr[i:i + batch_size], layer=layer,
                                        smooth_samples=smooth_samples, smooth_noise=smooth_noise,
                                        ig_steps=ig_steps, baseline=baseline,
                                        score_max_n=score_max_n), dtype=np.float32)
                  .reshape(-1, *images.shape[1:3])
                  for i in range(0, len(images), batch_size)]
    finally:
        if saved_rng is not None:
            np.random.set_state(saved_rng)
    seconds = time.perf_counter() - start
    raw = np.concatenate(chunks)
    signed = method in ("gradxinput", "integrated_gradients")
    return SaliencyResult(method, raw, normalise(np.abs(raw) if signed else raw), seconds, params)


def compute_many(model: keras.Model, images: np.ndarray, methods, targets, **kwargs
                 ) -> dict[str, SaliencyResult]:
    """:func:`compute` for several methods on the same batch: ``{method: SaliencyResult}``."""
    return {m: compute(model, images, m, targets, **kwargs) for m in methods}
