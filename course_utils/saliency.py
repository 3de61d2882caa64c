"""One registry of saliency methods, one way to call them: :func:`compute` and :func:`explainer`.

:data:`METHODS` maps each method's id to a :class:`Method`: its display name and *its own*
settings with their defaults. The gradient methods are short batched TensorFlow code run as
compiled graphs (on a CPU about 3x faster than the same code run eagerly, as tf-keras-vis runs
it): vanilla gradients and SmoothGrad reproduce tf-keras-vis' ``Saliency`` (same noise draws),
Grad-CAM and Grad-CAM++ its ``Gradcam`` and ``GradcamPlusPlus`` (the tests check all four give
tf-keras-vis' maps), guided backprop uses tf-keras-vis' guided ReLUs, Score-CAM computes what
tf-keras-vis' ``Scorecam`` does but picks its channels per image (see :func:`_scorecam`), and
gradient x input and Integrated Gradients are not in tf-keras-vis. Two perturbation methods need
no gradient at all: occlusion sensitivity (Zeiler & Fergus 2014) and SHAP's Partition explainer
(Lundberg & Lee 2017; the ``shap`` package) -- they only query the model.

* :func:`compute` -- maps of a batch of images for one method: a :class:`SaliencyResult` with
  *raw* maps (what the metrics need) and min-max *normalised* maps (what the eye needs).
* :func:`explainer` -- a method with its settings fixed, as a callable
  ``explain(images, targets) -> raw maps`` that other code passes around (the sanity checks,
  the PSC study, Max-Sensitivity), like captum's ``Saliency(net).attribute`` or Quantus'
  ``explain_func``.

Pitfalls handled here, so learners meet them as lessons rather than bugs:

* Maps are taken of the **pre-activation score** (logit): a softmax/sigmoid output layer is
  swapped for a linear twin that shares every other layer (no 500 MB model clone).
* tf-keras-vis' ``ReplaceToLinear`` fails on a Keras 3 ``Sequential`` model; we never use it.
* Score-CAM weighs each channel by a softmax over the model outputs; with one sigmoid unit that
  softmax is always 1 and every channel gets the same weight (tf-keras-vis does this). For
  single-output models we score the two-class softmax ``[0, z]``, whose second entry is exactly
  ``sigmoid(z)``.
* tf-keras-vis min-max normalises by default; we ask it not to and normalise ourselves.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType

import keras
import numpy as np
import tensorflow as tf
from scipy import ndimage
from tqdm.auto import tqdm

from . import _checks, config, memo, metrics, models

warnings.filterwarnings("ignore", message=r"The structure of `inputs`", category=UserWarning)


@dataclass
class SaliencyResult:
    """Maps of one method for a batch of images.

    Attributes:
        method: the method's id (a key of :data:`METHODS`).
        raw: (n, H, W) float32 in the method's own units (|gradient| for vanilla, SmoothGrad and
            guided backprop, signed relevance for gradient x input and IG, ReLU'd class
            activation for the CAMs, signed logit drop for occlusion, signed Owen values in
            logit units for SHAP).
        seconds: wall time of the call.
        settings: the method's settings used, and the targets.
        signed: ``raw`` has both signs (:attr:`normalised` then shows ``|raw|``).
    """

    method: str
    raw: np.ndarray
    seconds: float
    settings: dict = field(default_factory=dict)
    signed: bool = False

    @functools.cached_property
    def normalised(self) -> np.ndarray:
        """(n, H, W) float32 in [0, 1]: per-image min-max of ``raw`` (of ``|raw|`` if signed).

        Made on first use and then kept: results used only for their numbers (e.g. the maps of
        a whole test split, which the metrics take raw) do not pay for a second copy.
        """
        return metrics.minmax(np.abs(self.raw) if self.signed else self.raw, np.float32)


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


_PER_MODEL: weakref.WeakKeyDictionary[keras.Model, dict] = weakref.WeakKeyDictionary()


def per_model(model: keras.Model, key: object, build: Callable[[], object]) -> object:
    """``build()``'s result, made once per ``(model, key)`` and cached on ``model``.

    The one cache of things derived from a model (its logit twin, compiled gradient graphs,
    the guided-backprop clone). It holds the model weakly: when the model is gone, so is the
    entry. What ``build`` returns must not hold a strong reference to ``model`` itself (use
    ``weakref.ref(model)`` inside closures), or the model would never be freed.
    """
    cache = _PER_MODEL.setdefault(model, {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def logit_model(model: keras.Model) -> keras.Model:
    """A twin of ``model`` whose output is the pre-activation score of its last Dense layer.

    Every layer but the last is shared (same weights, no copy); the last Dense layer is
    re-created with a linear activation and the same kernel and bias. Models whose last
    layer is already linear are returned unchanged. The twin is cached on the model.
    """
    return per_model(model, "logits", lambda: _logit_twin(model))


def _logit_twin(model: keras.Model) -> keras.Model:
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if activation is None or activation is keras.activations.linear:
        return model
    if not isinstance(last, keras.layers.Dense):
        raise ValueError(f"cannot strip the output activation of a {type(last).__name__} layer; "
                         "end the model with a Dense layer or pass a model with linear outputs")
    outputs = DenseLogits(last, name=f"{last.name}_logits")(last.input)
    return keras.Model(model.inputs, outputs, name=f"{model.name}_logits")


def _valid_targets(model: keras.Model, targets) -> np.ndarray:
    """``targets`` (one int or a class index per image) as an int array, checked against
    ``model``'s outputs: 0 or 1 for one output unit (1 = its positive class), else [0, k).
    """
    targets = _checks.targets(targets)
    if model.outputs[0].shape[-1] == 1:
        if not np.isin(targets, (0, 1)).all():
            raise ValueError(f"a single-output model takes targets 0 or 1, got {targets}")
        return targets
    n_classes = model.outputs[0].shape[-1]
    if targets.min() < 0 or targets.max() >= n_classes:
        raise ValueError(f"targets must be class indices in [0, {n_classes}), got {targets}")
    return targets


def _target_score(outputs: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """(n,) score of each image's target: the logit, or for one output +z (target 1) / -z (0)."""
    if outputs.shape[-1] == 1:
        return outputs[:, 0] * (2.0 * tf.cast(targets, outputs.dtype) - 1.0)
    return tf.gather(outputs, targets, axis=1, batch_dims=1)


def _gradient_fn(model: keras.Model) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """``grad(x, targets)``: d(score)/dx of ``model`` as a compiled graph, cached on the model.

    A ``tf.function`` runs the forward and backward pass as one graph: on a CPU about 3x faster
    than the same ``GradientTape`` code run eagerly (as tf-keras-vis runs it) for the course's
    chest X-ray CNN, and the same numbers. The graph reads the model's variables when it runs, so
    changed weights (e.g. :func:`course_utils.sanity.randomised_layers`) are seen.
    """
    ref = weakref.ref(model)  # the cache must not keep the model alive

    def build() -> Callable:
        @tf.function(reduce_retracing=True)
        def gradient(x: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(x)
                score = _target_score(ref()(x, training=False), targets)
            return tape.gradient(score, x)
        return gradient

    return per_model(model, "gradient", build)


def _gradients(model: keras.Model, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """d(score of target)/d(input), (n, H, W, C) float32; ``model`` outputs logits, targets valid."""
    x = tf.convert_to_tensor(images, tf.float32)
    t = tf.convert_to_tensor(np.broadcast_to(targets, (len(images),)), tf.int32)
    return _gradient_fn(model)(x, t).numpy()


def input_gradients(model: keras.Model, images: np.ndarray, targets) -> np.ndarray:
    """d(score of target)/d(input) for a batch: (n, H, W, C) float32 (logit scores)."""
    logits = logit_model(model)
    targets = _valid_targets(logits, targets)
    return _gradients(logits, np.asarray(images, np.float32), targets)


# --------------------------------------------------------------------------- the methods
# Each takes the model prepared by its Method (the logit twin, or a guided clone), one chunk of
# images (b, H, W, C) and their validated targets (b,), and returns raw maps (b, H, W).
def _vanilla(logits: keras.Model, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """|gradient|, max over channels: tf-keras-vis' ``Saliency`` (tests check it is equal)."""
    return np.abs(_gradients(logits, images, targets)).max(axis=-1)


def _smoothgrad(logits: keras.Model, images: np.ndarray, targets: np.ndarray, *,
                smooth_samples: int = 20, smooth_noise: float = 0.20) -> np.ndarray:
    """SmoothGrad (Smilkov et al. 2017) exactly as tf-keras-vis' ``Saliency`` computes it.

    The same noise, drawn from NumPy's global generator in the same order (one float64 draw of
    shape (samples, n, H, W, C), s.d. ``smooth_noise`` x each image's value range), the same
    mean of |gradient| over the samples and max over channels -- tests check the maps are equal
    -- but each sample's gradients come from the compiled graph of :func:`_gradient_fn`.
    """
    smooth_samples = _checks.positive_int(smooth_samples, "smooth_samples")
    x = np.asarray(images, np.float32)
    axes = tuple(range(1, x.ndim))
    sigma = smooth_noise * (x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True))
    noise = np.random.normal(0.0, sigma[None], (smooth_samples, *x.shape))
    total = np.zeros_like(x)
    for i in range(smooth_samples):
        total += np.abs(_gradients(logits, x + noise[i].astype(np.float32), targets))
    return (total / smooth_samples).max(axis=-1)


def _gradxinput(logits: keras.Model, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return (_gradients(logits, images, targets) * images).sum(-1)


def _integrated_gradients(logits: keras.Model, images: np.ndarray, targets: np.ndarray, *,
                          ig_steps: int = 32, baseline: np.ndarray | None = None) -> np.ndarray:
    """Sum over channels of IG attributions (Sundararajan et al. 2017), midpoint Riemann sum."""
    ig_steps = _checks.positive_int(ig_steps, "ig_steps")  # 0 steps would give NaN maps
    if baseline is None:
        baseline = np.zeros_like(images)
    else:
        baseline = np.asarray(baseline, np.float32)
        if baseline.shape not in (images.shape, images.shape[1:]):
            raise ValueError(f"baseline must be one image {images.shape[1:]} or one per image "
                             f"(n, H, W, C), got shape {baseline.shape}")
        baseline = np.broadcast_to(baseline, images.shape)
    alphas = (np.arange(ig_steps, dtype=np.float32) + 0.5) / ig_steps
    total = np.zeros_like(images, dtype=np.float32)
    for a in alphas:  # each step is one batched forward/backward pass over the chunk
        total += _gradients(logits, baseline + a * (images - baseline), targets)
    return ((images - baseline) * total / ig_steps).sum(axis=-1)


def _cam_layer(model: keras.Model, layer: str | None) -> keras.layers.Layer:
    """The CAM layer: ``layer`` by name, else the last convolution layer (tf-keras-vis' rule)."""
    from tf_keras_vis.utils import find_layer
    from tf_keras_vis.utils.model_modifiers import Conv

    if layer is not None:
        return model.get_layer(layer)
    found = find_layer(model, lambda candidate: isinstance(candidate, Conv))
    if found is None:
        raise ValueError("the model has no convolution layer for a CAM method")
    return found


def _with_layer_output(logits: keras.Model, layer: keras.layers.Layer) -> keras.Model:
    """A model of ``logits``' input with two outputs, ``[logits, layer's activations]``, made once
    per model and layer (shared layers, no weight copy).
    """
    return per_model(logits, ("with_output", layer.name),
                     lambda: keras.Model(logits.inputs, [logits.outputs[0], layer.output]))


def _cam_gradient_fn(logits: keras.Model, layer: keras.layers.Layer) -> Callable:
    """``cam_inputs(x, targets)``: ``layer``'s activations A (b, h, w, K), d(score)/dA and the
    scores (b,), as one compiled graph, cached per model and layer (reads current weights).

    The forward and backward pass tf-keras-vis' ``Gradcam`` and ``GradcamPlusPlus`` run
    eagerly, after building a two-output model on every call.
    """
    def build() -> Callable:
        both = _with_layer_output(logits, layer)

        @tf.function(reduce_retracing=True)
        def cam_inputs(x: tf.Tensor, targets: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                tape.watch(x)
                outputs, acts = both(x, training=False)
                score = _target_score(outputs, targets)
            return acts, tape.gradient(score, acts), score
        return cam_inputs

    return per_model(logits, ("cam_inputs", layer.name), build)


def _cam_parts(logits: keras.Model, images: np.ndarray, targets: np.ndarray,
               layer: str | None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    x = tf.convert_to_tensor(images, tf.float32)
    t = tf.convert_to_tensor(np.broadcast_to(targets, (len(images),)), tf.int32)
    return _cam_gradient_fn(logits, _cam_layer(logits, layer))(x, t)


def _upsample(cams: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(b, h, w) maps -> (b, H, W) by ``scipy.ndimage.zoom(order=1)``'s corner-aligned linear
    interpolation (what tf-keras-vis does to a CAM), as two small matrix products.
    """
    zy, zx = _linear_zoom(cams.shape[1], size[0]), _linear_zoom(cams.shape[2], size[1])
    return np.einsum("oh,bhw,pw->bop", zy, cams, zx, optimize=True)


def _gradcam(logits: keras.Model, images: np.ndarray, targets: np.ndarray, *,
             layer: str | None = None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) as tf-keras-vis' ``Gradcam`` computes it (tests check
    the maps are equal): channel weights = spatial mean of d(score)/dA, ReLU of the weighted sum
    of the channels, upsampled to the image -- from one compiled pass (:func:`_cam_gradient_fn`).
    """
    acts, grads, _ = _cam_parts(logits, images, targets, layer)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(acts * weights, axis=-1)).numpy()
    return _upsample(cam, images.shape[1:3])


def _gradcam_plus_plus(logits: keras.Model, images: np.ndarray, targets: np.ndarray, *,
                       layer: str | None = None) -> np.ndarray:
    """Grad-CAM++ (Chattopadhay et al. 2018) as tf-keras-vis' ``GradcamPlusPlus`` computes it
    (tests check the maps are equal): with S = exp(score) and g = d(score)/dA, pixel weights
    alpha = S g^2 / (2 S g^2 + S g^3 sum(A)), normalised over the map, channel weights =
    sum(alpha relu(S g)), ReLU of the weighted sum, upsampled -- from one compiled pass.
    """
    acts, grads, score = _cam_parts(logits, images, targets, layer)
    first = tf.exp(score)[:, None, None, None] * grads
    second = first * grads
    third = second * grads
    global_sum = tf.reduce_sum(acts, axis=(1, 2), keepdims=True)
    denom = second * 2.0 + third * global_sum
    alphas = second / (denom + tf.cast(second == 0.0, second.dtype))
    norm = tf.reduce_sum(alphas, axis=(1, 2), keepdims=True)
    alphas = alphas / (norm + tf.cast(norm == 0.0, norm.dtype))
    weights = tf.reduce_sum(tf.nn.relu(first) * alphas, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * acts, axis=-1)).numpy()
    return _upsample(cam, images.shape[1:3])


#: Score-CAM's masked copies go through the model this many images at a time (as tf-keras-vis).
SCORECAM_BATCH = 32

def _activations_fn(logits: keras.Model, layer: keras.layers.Layer) -> Callable:
    """Compiled ``activations(x)`` of ``layer``, cached per model and layer (reads current weights)."""
    def build() -> Callable:
        both = _with_layer_output(logits, layer)
        return tf.function(lambda x: both(x, training=False)[1], reduce_retracing=True)

    return per_model(logits, ("activations", layer.name), build)


def target_probability(outputs: np.ndarray, targets: np.ndarray, *,
                       from_logits: bool = False) -> np.ndarray:
    """(b,) float32 probability of each row's target class, from model outputs (b, k).

    ``from_logits=False``: ``outputs`` are probabilities (a softmax head; one sigmoid unit gives
    p for target 1 and 1 - p for target 0). ``from_logits=True``: pre-activation scores, turned
    into probabilities by a softmax over the k classes -- for one logit z, the two-class softmax
    of ``[0, z]``: ``sigmoid(z)`` for target 1, ``sigmoid(-z)`` for 0 (a softmax over the single
    output would always be 1).
    """
    z = tf.convert_to_tensor(outputs, tf.float32)
    t = tf.convert_to_tensor(np.asarray(targets), tf.int32)
    if z.shape[-1] == 1:
        p = (tf.sigmoid(_target_score(z, t)) if from_logits
             else tf.where(t == 1, z[:, 0], 1.0 - z[:, 0]))
    else:
        p = tf.gather(tf.nn.softmax(z) if from_logits else z, t, axis=1, batch_dims=1)
    return p.numpy()


@functools.lru_cache(maxsize=16)
def _linear_zoom(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) float32 matrix of ``scipy.ndimage.zoom(order=1)`` along one axis.

    Corner-aligned linear interpolation: output pixel o samples the input at
    o * (size_in - 1) / (size_out - 1), as zoom does (``grid_mode=False``). Cached and
    read-only: the same few sizes recur on every CAM call.
    """
    pos = np.arange(size_out) * ((size_in - 1) / max(size_out - 1, 1))
    lo = np.minimum(np.floor(pos).astype(int), size_in - 1)
    hi = np.minimum(lo + 1, size_in - 1)
    frac = pos - lo
    m = np.zeros((size_out, size_in))
    np.add.at(m, (np.arange(size_out), lo), 1 - frac)
    np.add.at(m, (np.arange(size_out), hi), frac)
    m = m.astype(np.float32)
    m.flags.writeable = False
    return m


def _scorecam(logits: keras.Model, images: np.ndarray, targets: np.ndarray, *,
              layer: str | None = None, score_max_n: int | None = 32) -> np.ndarray:
    """Score-CAM (Wang et al. 2020), its faster variant, batched over images.

    The computation of tf-keras-vis' ``Scorecam`` (corner-aligned linear upsampling of each
    channel, min-max normalised as a mask, the masked image's softmax probability of the target
    as the channel's weight, ReLU of the weighted sum, upsampled) with one difference: the
    ``score_max_n`` channels of highest spatial s.d. are chosen *per image* (Faster-Score-CAM),
    whereas tf-keras-vis takes the union over the whole batch -- so a map no longer depends on
    which other images share its batch, and a batch of 64 images needs 64 x ``score_max_n``
    masked forward passes, not up to 64 x (all channels). For one image the two agree (tests).
    """
    conv = _cam_layer(logits, layer)
    acts = _activations_fn(logits, conv)(tf.convert_to_tensor(images, tf.float32))  # (b,h,w,K)
    n_channels = acts.shape[-1]
    n = n_channels if score_max_n is None else min(
        _checks.positive_int(score_max_n, "score_max_n"), n_channels)
    if n < n_channels:  # per image: the n channels of largest spatial s.d.
        top = tf.math.top_k(tf.math.reduce_std(acts, axis=(1, 2)), n).indices
        acts = tf.gather(acts, top, axis=-1, batch_dims=1)
    acts = acts.numpy()
    zy = _linear_zoom(acts.shape[1], images.shape[1])
    zx = _linear_zoom(acts.shape[2], images.shape[2])
    masks = np.einsum("oh,bhwn,pw->bopn", zy, acts, zx, optimize=True)  # (b, H, W, n)
    lo, hi = masks.min(axis=(1, 2), keepdims=True), masks.max(axis=(1, 2), keepdims=True)
    masks -= lo
    masks /= hi - lo + keras.config.epsilon()

    def masked(idx: np.ndarray) -> np.ndarray:  # copy (i, j): image i times its channel-j mask
        image, channel = np.divmod(idx, n)
        return images[image] * masks[image, :, :, channel][..., None]

    scores = predict_built(logits, len(images) * n, masked, SCORECAM_BATCH)
    weights = target_probability(scores, np.repeat(targets, n), from_logits=True).reshape(-1, n)
    return _upsample(np.maximum(np.einsum("bhwn,bn->bhw", acts, weights), 0), images.shape[1:3])


def _guided_clone(model: keras.Model) -> keras.Model:
    """A clone of ``model`` with tf-keras-vis' guided-backprop ReLUs and its current weights.

    The clone (and its compiled gradient graph) is made once per model and cached; each call
    copies the model's weights into it, so changed weights (the sanity checks' cascade) are seen.
    """
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import GuidedBackpropagation

    guided = per_model(model, "guided", lambda: Saliency(
        model, model_modifier=GuidedBackpropagation(), clone=True).model)
    for mine, theirs in zip(guided.weights, model.weights, strict=True):
        mine.assign(theirs)
    return guided


def _guided_backprop(guided: keras.Model, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return np.abs(input_gradients(guided, images, targets)).max(axis=-1)


#: A model call of :func:`predict_built` gets at most this many input values (copies x H x W x C):
#: all 64 copies of a 128 x 128 x 1 X-ray, but 13 of a 224 x 224 x 3 photo. VGG16 keeps the
#: activations of its largest batch: 64 photos at once cost 2.1 GB more memory, 13 about 0.4 GB.
MODEL_CALL_VALUES = 2 * 2**20


def copies_per_call(model: keras.Model, batch_size: int) -> int:
    """``batch_size``, lowered so that one call's inputs hold at most :data:`MODEL_CALL_VALUES`
    values (for a model whose input shape is known; otherwise ``batch_size``).
    """
    shape = model.inputs[0].shape[1:] if getattr(model, "inputs", None) else ()
    if not shape or any(d is None for d in shape):
        return batch_size
    return max(1, min(batch_size, MODEL_CALL_VALUES // int(np.prod(shape))))


# Perturbation methods query the model with many altered copies of each image; they get the
# call's ``batch_size`` too and build and predict the copies that many at a time.
def predict_built(model: keras.Model, n: int, build: Callable[[np.ndarray], np.ndarray],
                  batch_size: int) -> np.ndarray:
    """Outputs (n, k) float32 of ``model`` for ``n`` inputs built ``batch_size`` at a time.

    ``build(indices)`` returns the inputs with those indices, (b, H, W, C). Only one batch of
    inputs exists at once, never all ``n`` (e.g. every occluded copy of every image), and a
    batch of large images is smaller (:func:`copies_per_call`). Outputs do not depend on it.
    """
    size = copies_per_call(model, _checks.positive_int(batch_size, "batch_size"))
    return models.predict_batches(model, _Built(n, build), size)


@dataclass(frozen=True)
class _Built:
    """``n`` inputs made on demand: ``built[a:b]`` is ``build(np.arange(a, b))`` (for
    :func:`course_utils.models.predict_batches`, which reads its inputs a slice at a time).
    """

    n: int
    build: Callable[[np.ndarray], np.ndarray]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, rows: slice) -> np.ndarray:
        return self.build(np.arange(rows.start, rows.stop))


def _target_scores(outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """:func:`_target_score` of NumPy outputs (b, k): (b,) float32."""
    return np.asarray(_target_score(tf.convert_to_tensor(outputs), targets))


def _patch_starts(size: int, patch: int, stride: int) -> np.ndarray:
    """Start of each patch along one axis: every ``stride`` px, the last one flush with the edge."""
    starts = np.arange(0, size - patch + 1, stride)
    return starts if starts[-1] == size - patch else np.append(starts, size - patch)


def _patch_cover(size: int, patch: int, stride: int) -> np.ndarray:
    """(patches, size) bool: which pixels of one axis each patch covers."""
    offset = np.arange(size)[None, :] - _patch_starts(size, patch, stride)[:, None]
    return (offset >= 0) & (offset < patch)


def _fill_values(images: np.ndarray, fill: str | float) -> np.ndarray:
    """(n, 1, 1, C) value that hides a pixel: each image's channel means ("mean") or a number."""
    if isinstance(fill, str):
        if fill != "mean":
            raise ValueError(f'fill must be "mean" or a number, got {fill!r}')
        return images.mean(axis=(1, 2), keepdims=True)
    if isinstance(fill, bool) or not isinstance(fill, (int, float, np.number)) or not np.isfinite(fill):
        raise ValueError(f'fill must be "mean" or a finite number, got {fill!r}')
    return np.full((len(images), 1, 1, images.shape[-1]), fill, np.float32)


def _occlusion(logits: keras.Model, images: np.ndarray, targets: np.ndarray, *,
               patch: int | None = None, stride: int | None = None, fill: str | float = "mean",
               batch_size: int = 64) -> np.ndarray:
    """Occlusion sensitivity (Zeiler & Fergus 2014): score drop when a square patch is hidden.

    Patches of ``patch`` px (default 1/8 of the shorter side; at most the side) slide by
    ``stride`` px (default half a patch) so that every pixel is covered; each hidden patch is
    set to ``fill``. A pixel's value is the mean drop of the target's logit over the patches
    that cover it (positive: hiding it lowers the score).
    """
    n, h, w, _ = images.shape
    side = min(h, w)
    patch = max(1, side // 8) if patch is None else min(_checks.positive_int(patch, "patch"), side)
    stride = max(1, patch // 2) if stride is None else _checks.positive_int(stride, "stride")
    rows, cols = _patch_cover(h, patch, stride), _patch_cover(w, patch, stride)
    fills = _fill_values(images, fill)
    per_image = len(rows) * len(cols)

    def occluded(idx: np.ndarray) -> np.ndarray:
        image, k = np.divmod(idx, per_image)
        row, col = np.divmod(k, len(cols))
        hidden = rows[row][:, :, None] & cols[col][:, None, :]
        return np.where(hidden[..., None], fills[image], images[image])

    clean = _target_scores(predict_built(logits, n, lambda idx: images[idx], batch_size), targets)
    scores = _target_scores(predict_built(logits, n * per_image, occluded, batch_size),
                            np.repeat(targets, per_image))
    drop = (clean[:, None] - scores.reshape(n, per_image)).reshape(n, len(rows), len(cols))
    rows, cols = rows.astype(np.float32), cols.astype(np.float32)
    total = np.einsum("yh,nyx,xw->nhw", rows, drop, cols)  # sum over the patches covering a pixel
    return total / np.outer(rows.sum(0), cols.sum(0))


#: Masked copies shap's Partition explainer asks for at once (predicted in calls of at most
#: :func:`copies_per_call` copies). Fixed, not the call's
#: ``batch_size``: the explainer expands that many partition cells per round, so its values
#: depend on it (at a given ``max_evals``).
SHAP_BATCH = 64


@contextlib.contextmanager
def _numba_jit_off(off: bool):
    """Switch numba's ``DISABLE_JIT`` on inside the block when ``off`` (else change nothing).

    ``@njit`` reads it when a module decorates its functions, and numba's typed lists when one
    is made (a plain list then): shap's plain-Python helpers need both. Without numba (shap 0.52+,
    e.g. on Python 3.12+, no longer uses it) there is nothing to switch.
    """
    if off:
        try:
            import numba
        except ImportError:
            off = False
    if not off:
        yield
        return
    before = numba.config.DISABLE_JIT
    numba.config.DISABLE_JIT = True
    try:
        yield
    finally:
        numba.config.DISABLE_JIT = before


@functools.cache
def _import_shap() -> tuple[ModuleType, bool]:
    """``(shap, plain)``: the ``shap`` module, and whether its numba helpers are plain Python.

    shap compiles its helpers (partition tree, masked-model bookkeeping) with numba the first
    time a process explains an image (shap 0.51, which Python 3.11 gets; 0.52+ dropped numba):
    about 7 s on 2 cores (measured 2026-12-04), paid again by
    every notebook kernel. Fast mode explains a few images with a few model calls each, for
    which the plain-Python helpers are quicker (a 128 px image with 16 calls: 0.15 s; a 224 px
    RGB image with 8 calls: 1.5 s). Full mode explains enough images (notebook 03: 96 with 400
    calls) that compiling pays. The helpers are the same Python code either way and give the
    same values (``tests/test_saliency.py`` checks both paths). numba is switched only while
    shap is imported and while :func:`compute` runs it; a shap imported before (by the learner)
    stays as it was. Decided once per process (cached), as an imported module cannot change.
    """
    plain = "shap" not in sys.modules and config.fast_mode()
    with _numba_jit_off(plain), warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # shap warns about matplotlib
        import shap
    return shap, plain


def _shap_partition(logits: keras.Model, images: np.ndarray, targets: np.ndarray, *,
                    max_evals: int = 400, blur: int | None = None) -> np.ndarray:
    """SHAP values of the target's logit from ``shap``'s Partition explainer, summed over channels.

    Hidden pixels take the values of the image box-blurred with a ``blur`` px kernel (default
    half the shorter side), like shap's ``"blur(k, k)"`` image masker but with SciPy instead of
    OpenCV: shap's masker gets NaN as its mask value and the model function replaces every NaN
    by the blurred image. ``max_evals`` model calls per image, :data:`SHAP_BATCH` at a time;
    shap's random tie-breaks draw from NumPy's global generator, which :func:`compute` seeds.
    """
    shap, plain = _import_shap()
    _, h, w, c = images.shape
    max_evals = _checks.positive_int(max_evals, "max_evals")
    size = max(1, min(h, w) // 2) if blur is None else _checks.positive_int(blur, "blur")
    blurred = ndimage.uniform_filter(images, size=(1, size, size, 1), mode="mirror")
    current: dict[str, object] = {}

    def score(x: np.ndarray) -> np.ndarray:
        x = np.where(np.isnan(x), current["hidden"], x)
        outputs = predict_built(logits, len(x), lambda idx: x[idx], SHAP_BATCH)
        return _target_scores(outputs, np.full(len(x), current["target"]))

    maps = []
    with _numba_jit_off(plain):  # shap's plain helpers (fast mode) want plain lists
        masker = shap.maskers.Image(np.full((h, w, c), np.nan, np.float32), (h, w, c))
        for image, target, hidden in zip(images, targets, blurred):  # one image per shap call
            current.update(target=target, hidden=hidden)
            # a new explainer per image: one caches the all-hidden score across images
            explain = shap.explainers.Partition(score, masker)
            values = explain(image[None], max_evals=max_evals, batch_size=SHAP_BATCH, silent=True).values
            maps.append(np.asarray(values, np.float32)[0].sum(-1))
    return np.stack(maps)


#: SmoothGrad chunks hold at most this many noisy input values at once (float64: 256 MB).
SMOOTHGRAD_MAX_VALUES = 32 * 2**20


def _smoothgrad_batch(settings: Mapping, image_shape: tuple[int, ...]) -> int:
    """SmoothGrad draws all noisy copies of a chunk at once, as float64: cap the chunk."""
    per_image = max(1, settings["smooth_samples"] * int(np.prod(image_shape)))
    return max(1, SMOOTHGRAD_MAX_VALUES // per_image)


# --------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Method:
    """A saliency method: its display name, its own settings and how to run it on a chunk.

    Attributes:
        name: display name for plots and tables.
        run: ``run(prepared_model, images, targets, **settings) -> raw maps`` for one chunk.
        settings: the method's settings and their defaults (read-only).
        prepare: builds the model ``run`` gets, once per call (default: :func:`logit_model`).
        signed: raw maps have both signs (normalised maps then show ``|raw|``).
        global_rng: draws from NumPy's global generator (seeded for the call by :func:`compute`).
        max_batch: ``max_batch(settings, image_shape) -> int`` caps the chunk size, or None.
        per_image: settings that may hold one value per image (sliced with each chunk).
        model_batch: ``run`` also gets ``batch_size``, the copies it predicts per model call
            (perturbation methods, which query the model with many altered copies per image).
        slow: tens to hundreds of model passes per image (noise samples, path steps, masked
            or occluded copies, coalitions): worth keeping its maps (``explainer(cache="slow")``).
    """

    name: str
    run: Callable[..., np.ndarray]
    settings: Mapping[str, object] = field(default_factory=dict)
    prepare: Callable[[keras.Model], keras.Model] | None = None
    signed: bool = False
    global_rng: bool = False
    max_batch: Callable[[Mapping, tuple[int, ...]], int] | None = None
    per_image: tuple[str, ...] = ()
    model_batch: bool = False
    slow: bool = False


def _settings(**defaults: object) -> Mapping[str, object]:
    return MappingProxyType(defaults)


#: The methods, by id, in the order the course introduces them.
METHODS: Mapping[str, Method] = MappingProxyType({
    "vanilla": Method("Vanilla gradient", _vanilla),
    "smoothgrad": Method("SmoothGrad", _smoothgrad,
                         _settings(smooth_samples=20, smooth_noise=0.20), global_rng=True,
                         max_batch=_smoothgrad_batch, slow=True),
    "gradxinput": Method("Gradient × input", _gradxinput, signed=True),
    "integrated_gradients": Method("Integrated Gradients", _integrated_gradients,
                                   _settings(ig_steps=32, baseline=None), signed=True,
                                   per_image=("baseline",), slow=True),
    "gradcam": Method("Grad-CAM", _gradcam, _settings(layer=None)),
    "gradcam++": Method("Grad-CAM++", _gradcam_plus_plus, _settings(layer=None)),
    "scorecam": Method("Score-CAM", _scorecam, _settings(layer=None, score_max_n=32), slow=True),
    "guided_backprop": Method("Guided backprop", _guided_backprop, prepare=_guided_clone),
    "occlusion": Method("Occlusion", _occlusion, _settings(patch=None, stride=None, fill="mean"),
                        signed=True, model_batch=True, slow=True),
    "shap": Method("SHAP (Partition)", _shap_partition, _settings(max_evals=400, blur=None),
                   signed=True, global_rng=True, slow=True),
})

#: The methods that query the model tens to hundreds of times per image (:attr:`Method.slow`):
#: SmoothGrad, Integrated Gradients, Score-CAM, occlusion and SHAP. ``explainer(cache="slow")``
#: keeps exactly their maps in the data folder.
SLOW_METHODS: frozenset[str] = frozenset(k for k, m in METHODS.items() if m.slow)

#: Display names by method id (apply them last, where a table or plot is shown).
NAMES: Mapping[str, str] = MappingProxyType({k: m.name for k, m in METHODS.items()})


def _method(method: str, settings: Mapping[str, object]) -> tuple[Method, dict]:
    """The registry entry of ``method`` and its full settings (defaults + ``settings``)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    entry = METHODS[method]
    unknown = sorted(set(settings) - set(entry.settings))
    if unknown:
        takes = ", ".join(entry.settings) or "no settings"
        raise ValueError(f"{method} takes {takes}; got unknown settings {unknown}")
    return entry, {**entry.settings, **settings}


def compute(model: keras.Model, images: np.ndarray, method: str, targets, *,
            batch_size: int = 64, seed: int | None = 0, **settings: object) -> SaliencyResult:
    """Saliency maps of ``model`` for a batch of images, computed ``batch_size`` images at a time.

    Args:
        model: a Keras classifier; maps explain its pre-activation scores (logits).
        images: (n, H, W, C) array, already preprocessed the way ``model`` expects.
        method: a key of :data:`METHODS`.
        targets: class index per image (or one int for all). For a one-output sigmoid model,
            1 explains the positive class (p) and 0 the negative one.
        batch_size: images per gradient call (bounds memory; results do not depend on it
            except for SmoothGrad's random noise). SmoothGrad lowers it so that a chunk's
            noisy copies stay under :data:`SMOOTHGRAD_MAX_VALUES` values (about 256 MB).
            Occlusion also builds and predicts its occluded copies this many at a time (SHAP
            evaluates :data:`SHAP_BATCH` masked copies per call, whatever ``batch_size``).
        seed: makes SmoothGrad's noise and SHAP's tie-breaks reproducible. NumPy's global
            generator (which tf-keras-vis and shap draw from) is seeded for this call only and
            restored afterwards; None leaves it alone.
        **settings: the method's own settings (see ``METHODS[method].settings``):
            ``smooth_samples``, ``smooth_noise`` (SmoothGrad: sample count and noise s.d. as a
            fraction of each image's value range; Smilkov et al. 2017 suggest 10-20 %);
            ``ig_steps``, ``baseline`` (Integrated Gradients: path steps and a baseline image
            (H, W, C) or one per image (n, H, W, C), default all zeros); ``layer`` (the CAMs'
            convolution layer, default the last one); ``score_max_n`` (Score-CAM uses the
            ``score_max_n`` most variable channels, Faster-Score-CAM; None uses all, slow);
            ``patch``, ``stride``, ``fill`` (occlusion: square side and step in px, default
            1/8 of the shorter side and half a patch; hidden pixels take ``fill``, default
            ``"mean"``, each image's channel means, so a patch removes detail but adds no dark
            square the model could react to; or a number, e.g. 0.0);
            ``max_evals``, ``blur`` (SHAP Partition: model calls per image, and the box-blur
            kernel in px whose output replaces hidden pixels, default half the shorter side).
            Occlusion and SHAP maps are in logit units: the drop of the target's score when a
            patch is hidden, and Owen values that add up to score(image) - score(blurred image).

    Returns:
        :class:`SaliencyResult` with raw and normalised (n, H, W) maps.
    """
    images = _checks.images(images)
    entry, full = _method(method, settings)
    _checks.targets(targets, len(images))
    _checks.positive_int(batch_size, "batch_size")
    target_arr = _valid_targets(logit_model(model), targets)
    target_arr = np.broadcast_to(target_arr, (len(images),)).copy()
    if entry.max_batch is not None:
        batch_size = min(batch_size, entry.max_batch(full, images.shape[1:]))
    per_image = {k for k in entry.per_image if np.ndim(full[k]) == images.ndim}
    saved_rng = None
    if entry.global_rng and seed is not None:
        saved_rng = np.random.get_state()  # seed NumPy's global generator for this call only
        np.random.seed(seed)
    start = time.perf_counter()
    try:
        prepared = (entry.prepare or logit_model)(model)
        chunks = []
        slices = _checks.batches(len(images), batch_size)
        # many chunks (e.g. SmoothGrad on a whole test split) take minutes: show progress
        for sl in tqdm(slices, desc=entry.name, unit="batch", leave=False, disable=len(slices) < 4):
            chunk_settings = {k: (v[sl] if k in per_image else v) for k, v in full.items()}
            if entry.model_batch:
                chunk_settings["batch_size"] = batch_size
            raw = entry.run(prepared, images[sl], target_arr[sl], **chunk_settings)
            chunks.append(np.asarray(raw, np.float32).reshape(-1, *images.shape[1:3]))
    finally:
        if saved_rng is not None:
            np.random.set_state(saved_rng)
    seconds = time.perf_counter() - start
    raw = np.concatenate(chunks)
    used = {k: v for k, v in full.items() if k not in entry.per_image}
    return SaliencyResult(method, raw, seconds, {"targets": target_arr.tolist(), **used},
                          signed=entry.signed)


@dataclass(frozen=True, eq=False)
class Explainer:
    """A saliency method with its settings fixed: ``explain(images, targets) -> raw maps``.

    Made by :func:`explainer`. Calling it returns the raw (n, H, W) maps of :func:`compute`;
    :meth:`explain` returns the whole :class:`SaliencyResult`. The model is used as it is at
    call time (e.g. inside :func:`course_utils.sanity.randomised_layers`). With ``cache`` the
    maps go through :func:`course_utils.memo.cached`: computed once per model weights, images,
    targets and settings, then loaded from the data folder's ``results/``.
    """

    model: keras.Model
    method: str
    settings: Mapping[str, object]
    batch_size: int = 64
    seed: int | None = 0
    cache: bool = False

    @property
    def name(self) -> str:
        """The method's display name."""
        return NAMES[self.method]

    def explain(self, images: np.ndarray, targets) -> SaliencyResult:
        """:func:`compute` with this explainer's method and settings (loaded if ``cache`` and
        computed before).
        """
        if self.cache:
            return memo.cached(compute, self.model, images, self.method, targets,
                               batch_size=self.batch_size, seed=self.seed, **self.settings)
        return compute(self.model, images, self.method, targets, batch_size=self.batch_size,
                       seed=self.seed, **self.settings)

    def __call__(self, images: np.ndarray, targets) -> np.ndarray:
        """Raw (n, H, W) maps of ``images`` (n, H, W, C) for ``targets``."""
        return self.explain(images, targets).raw


def explainer(model: keras.Model, method: str, *, batch_size: int = 64, seed: int | None = 0,
              cache: bool | str = False, **settings: object) -> Explainer:
    """``method`` with its ``settings`` fixed, as a callable ``explain(images, targets)``.

    Unknown methods and settings fail here, not at the first call. SmoothGrad is re-seeded with
    ``seed`` on every call, so two batches of the same size and order (e.g. clean and perturbed
    images) get the same noise draws: the difference between their maps is the images', not
    SmoothGrad's sampling noise. ``cache``: keep the maps in the data folder
    (:mod:`course_utils.memo`; worth it for the slow methods on many images, e.g. SmoothGrad
    or Integrated Gradients on a test split: each call of n images at H x W px stores
    4·n·H·W bytes); ``cache="slow"`` keeps them only if ``method`` is in :data:`SLOW_METHODS`
    (one setting for a dict of explainers of several methods).
    """
    _method(method, settings)
    if cache == "slow":
        cache = method in SLOW_METHODS
    elif not isinstance(cache, bool):
        raise ValueError(f'cache must be True, False or "slow", got {cache!r}')
    return Explainer(model, method, MappingProxyType(dict(settings)), batch_size, seed, cache)
