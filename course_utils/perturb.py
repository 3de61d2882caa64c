"""Perturbations of chest X-rays: noise, FGSM/PGD and the Dombrowski attacks, and how visible they are.

Every attack takes a batch of images ``x`` of shape (n, H, W, C), float32 intensities in
[0, 1], and a binary classifier with one sigmoid output unit (p(COVID)), and returns an
:class:`AttackResult`. Budgets ``eps`` are L-infinity radii in the same intensity
units: every result satisfies ``|x_adv - x| <= eps`` pixel-wise and ``0 <= x_adv <= 1``.

* :func:`random_noise` — the baseline: random ±eps (or uniform) noise, no model gradient.
* :func:`fgsm`, :func:`pgd` — the classic untargeted attacks on the prediction
  (Goodfellow et al. 2015; Madry et al. 2018).
* :func:`prediction_attack`, :func:`explanation_attack` — the two attacks Zhang et al. 2024
  used to measure PSC, after Dombrowski et al. 2019: Adam on the image inside the eps-ball,
  with a loss that moves one thing (the prediction, or the saliency map) while holding the
  other still. The loss contains the saliency map, so its gradient needs *second* derivatives
  of the network; a ReLU network has none (its input gradient is piecewise constant), so the
  attacks optimise a :func:`softplus_twin` of the model (same weights, every ReLU replaced by
  softplus(beta z)/beta, beta growing 10 -> 100) and report probabilities of the *original* model.

The saliency map inside the attacks is the vanilla gradient of the logit w.r.t. the input,
|grad| summed over channels and divided by its sum (a distribution over pixels, as Zhang et
al.'s PSC code uses it); :func:`gradient_distribution` computes the same map for inspection.
:func:`imperceptibility` reports L-inf, PSNR and SSIM of the perturbed images (one table for
several perturbations: :func:`imperceptibility_table`), and :func:`make_quiz` builds a "spot the
perturbed image" reader quiz.
"""
from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from tqdm.auto import tqdm

from . import _checks, models
from .saliency import DenseLogits, logit_model, per_model

__all__ = [
    "AttackResult", "Imperceptibility", "SoftplusTwin",
    "random_noise", "fgsm", "pgd", "softplus_twin", "map_and_logit", "gradient_distribution",
    "patch_target",
    "prediction_attack", "explanation_attack", "imperceptibility", "imperceptibility_table",
    "Quiz", "make_quiz",
]

#: Adam's moment decay rates and denominator guard (the values of the reference code).
ADAM_BETAS: tuple[float, float] = (0.9, 0.999)
_ADAM_EPSILON = 1e-8
#: Softplus beta schedule of the Dombrowski attacks: geometric from 10 to 100.
DEFAULT_BETA: tuple[float, float] = (10.0, 100.0)


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class AttackResult:
    """Perturbed images and what they did to the (original, ReLU) model.

    ``x_adv``: (n, H, W, C) float32 in [0, 1]; ``p_before``/``p_after``: (n,) float32
    p(positive class) of the original model on ``x`` and ``x_adv``; ``linf``: (n,) float32
    max |x_adv - x| per image (<= ``eps``); ``loss_history``: (steps, n) float32, the attack's
    per-image objective at the start of each step (empty for noise; for FGSM/PGD the
    cross-entropy being *increased*, for the Dombrowski attacks the loss being *decreased*);
    ``seconds``: wall time; ``params``: the settings used.
    """

    method: str
    eps: float
    x_adv: np.ndarray
    p_before: np.ndarray
    p_after: np.ndarray
    linf: np.ndarray
    loss_history: np.ndarray
    seconds: float
    params: dict = field(default_factory=dict)

    @property
    def flipped(self) -> np.ndarray:
        """(n,) bool: the predicted class (p >= 0.5) changed."""
        return (self.p_before >= 0.5) != (self.p_after >= 0.5)


@dataclass(frozen=True)
class Imperceptibility:
    """How visible a perturbation is, per image, each an (n,) float64 array.

    ``linf``: max |x_adv - x| (intensity units); ``psnr``: peak signal-to-noise ratio in dB
    with data range 1 (``inf`` for identical images); ``ssim``: structural similarity in
    [-1, 1] with data range 1 (1 for identical images).
    """

    linf: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray


@dataclass(frozen=True)
class SoftplusTwin:
    """A copy of a model with every ReLU replaced by softplus(beta z) / beta.

    ``model``: the twin, outputting the *logit* (the original's last sigmoid is dropped);
    ``beta``: the scalar ``tf.Variable`` all its activations read, so beta can change between
    steps (even inside a traced ``tf.function``) without rebuilding anything. As beta grows
    the twin approaches the ReLU model (the gap per unit is at most log(2) / beta).
    """

    model: keras.Model
    beta: tf.Variable

    def set_beta(self, value: float) -> None:
        """Set the softplus sharpness (> 0) used by every activation of the twin."""
        if not value > 0:
            raise ValueError(f"beta must be > 0, got {value!r}")
        self.beta.assign(float(value))

    def probs(self, x: np.ndarray) -> np.ndarray:
        """(n,) sigmoid of the twin's logit for images (n, H, W, C)."""
        return tf.sigmoid(self.model(np.asarray(x, np.float32), training=False)[:, 0]).numpy()


# --------------------------------------------------------------------------- validation
def _eps(eps: float) -> float:
    """``eps`` as a float in [0, 1]: an L-inf budget in intensity units, or ValueError."""
    return _checks.in_unit_interval(eps, "eps", "an L-inf budget in intensity units")


def _binary_logits(model: keras.Model) -> keras.Model:
    """The logit twin of a one-output model (see :func:`saliency.logit_model`), else ValueError."""
    if model.outputs[0].shape[-1] != 1:
        raise ValueError("perturb works with binary classifiers with one output unit (p of the "
                         f"positive class); this model's output has shape {model.outputs[0].shape}")
    return logit_model(model)


# --------------------------------------------------------------------------- building blocks
def _project(x_adv: tf.Tensor, x: tf.Tensor, eps: float | tf.Tensor) -> tf.Tensor:
    """Clip ``x_adv`` into the L-inf ball of radius ``eps`` around ``x`` and into [0, 1]."""
    return tf.clip_by_value(tf.clip_by_value(x_adv, x - eps, x + eps), 0.0, 1.0)


def _logits(logits: keras.Model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(n,) float32 logits of a one-output model, in batches."""
    return np.concatenate([logits(x[sl], training=False).numpy()[:, 0]
                           for sl in _checks.batches(len(x), batch_size)]).astype(np.float32)


def _result(method: str, eps: float, model: keras.Model, x: np.ndarray, x_adv: np.ndarray,
            history: np.ndarray, start: float, p_before: np.ndarray | None = None,
            **params) -> AttackResult:
    """Bundle an attack's output; probabilities come from ``model`` (the original model).

    ``history``: (steps, n) per-image objective at the start of each step.
    """
    x_adv = np.asarray(x_adv, np.float32)
    return AttackResult(
        method=method, eps=eps, x_adv=x_adv,
        p_before=models.predict_p(model, x) if p_before is None else p_before,
        p_after=models.predict_p(model, x_adv),
        linf=np.abs(x_adv - x).reshape(len(x), -1).max(axis=1),
        loss_history=np.asarray(history, np.float32).reshape(-1, len(x)),
        seconds=time.perf_counter() - start, params=params)


def _labels_or_predicted(logits: keras.Model, x: np.ndarray, labels) -> np.ndarray:
    """(n,) float32 in {0, 1}: ``labels`` if given, else the model's predicted classes."""
    if labels is None:
        return (_logits(logits, x) >= 0).astype(np.float32)
    labels = np.broadcast_to(np.asarray(labels), (len(x),)).astype(np.float32)
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1, got {np.unique(labels)}")
    return labels


def _cross_entropy(z: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """(n,) binary cross-entropy of logits ``z`` against ``labels``: softplus(-(2y-1) z)."""
    return tf.nn.softplus(-(2.0 * labels - 1.0) * z)


# --------------------------------------------------------------------------- noise, FGSM, PGD
def random_noise(model: keras.Model, x: np.ndarray, eps: float, *, kind: str = "sign",
                 seed: int = 0) -> AttackResult:
    """Random perturbation at budget ``eps`` (the baseline an attack must beat).

    ``kind``: "sign" adds ±eps per pixel with equal odds (same L-inf and L2 size as FGSM, so
    the fair comparison); "uniform" adds U(-eps, eps). Clipped to [0, 1]. Seeded.
    """
    x, eps = _checks.images(x, unit_range=True), _eps(eps)
    if kind not in ("sign", "uniform"):
        raise ValueError(f"kind must be 'sign' or 'uniform', got {kind!r}")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    noise = (rng.choice([-1.0, 1.0], size=x.shape) if kind == "sign"
             else rng.uniform(-1.0, 1.0, size=x.shape)) * eps
    x_adv = np.clip(x + noise.astype(np.float32), 0.0, 1.0)
    _binary_logits(model)  # a one-output model, else ValueError
    return _result("noise", eps, model, x, x_adv, np.empty((0, len(x))),
                   start, kind=kind, seed=seed)


def _cross_entropy_gradient(logits: keras.Model) -> Callable:
    """Compiled ``fn(x, labels) -> (loss (n,), d loss / dx)`` of the per-image cross-entropy.

    Made once per model (cached with :func:`course_utils.saliency.per_model`, which holds the
    model weakly); the graph reads the current weights when it runs.
    """
    ref = weakref.ref(logits)

    def build() -> Callable:
        @tf.function(reduce_retracing=True)
        def loss_and_gradient(x: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = _cross_entropy(ref()(x, training=False)[:, 0], labels)
                total = tf.reduce_sum(loss)
            return loss, tape.gradient(total, x)
        return loss_and_gradient

    return per_model(logits, "cross_entropy_gradient", build)


def _sign_ascent(logits: keras.Model, x: np.ndarray, labels: np.ndarray, x_start: np.ndarray,
                 eps: float, steps: int, step_size: float, batch_size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` projected sign-gradient steps up the cross-entropy, ``batch_size`` images at a
    time (one traced call per step per batch); returns x_adv and the loss history (steps, n).
    """
    x_adv = np.empty_like(x)
    history = np.empty((steps, len(x)), np.float32)
    gradient = _cross_entropy_gradient(logits)
    for sl in _checks.batches(len(x), batch_size):
        xb, yb, xa = tf.constant(x[sl]), tf.constant(labels[sl]), tf.constant(x_start[sl])
        for t in range(steps):
            loss, g = gradient(xa, yb)
            history[t, sl] = loss.numpy()
            xa = _project(xa + step_size * tf.sign(g), xb, eps)
        x_adv[sl] = xa.numpy()
    return x_adv, history


def fgsm(model: keras.Model, x: np.ndarray, eps: float, *, labels=None,
         batch_size: int = 64) -> AttackResult:
    """Fast gradient sign method: one step of size ``eps`` up the cross-entropy's gradient sign.

    ``labels``: the class (0/1, one per image or one for all) whose cross-entropy is increased;
    default the model's own prediction (untargeted: push p away from the predicted class).
    """
    x, eps = _checks.images(x, unit_range=True), _eps(eps)
    _checks.positive_int(batch_size, "batch_size")
    logits = _binary_logits(model)
    start = time.perf_counter()
    y = _labels_or_predicted(logits, x, labels)
    x_adv, history = _sign_ascent(logits, x, y, x, eps, 1, eps, batch_size)
    return _result("fgsm", eps, model, x, x_adv, history, start)


def pgd(model: keras.Model, x: np.ndarray, eps: float, *, steps: int = 10,
        step_size: float | None = None, random_start: bool = True, labels=None,
        seed: int = 0, batch_size: int = 64) -> AttackResult:
    """Projected gradient descent (Madry et al. 2018): iterated FGSM, projected after each step.

    ``steps`` sign steps of ``step_size`` (default 2.5 * eps / steps, Madry's choice, so any
    start can reach the ball's far side) from ``x`` plus U(-eps, eps) noise if ``random_start``
    (seeded). ``labels`` as in :func:`fgsm`.
    """
    x, eps, steps = _checks.images(x, unit_range=True), _eps(eps), _checks.positive_int(steps, "steps")
    _checks.positive_int(batch_size, "batch_size")
    if step_size is not None and not float(step_size) > 0:
        raise ValueError(f"step_size must be > 0 (intensity units per step), got {step_size!r}")
    alpha = 2.5 * eps / steps if step_size is None else float(step_size)
    logits = _binary_logits(model)
    start = time.perf_counter()
    y = _labels_or_predicted(logits, x, labels)
    x_start = x
    if random_start:
        noise = np.random.default_rng(seed).uniform(-eps, eps, x.shape).astype(np.float32)
        x_start = np.clip(x + noise, 0.0, 1.0)
    x_adv, history = _sign_ascent(logits, x, y, x_start, eps, steps, alpha, batch_size)
    return _result("pgd", eps, model, x, x_adv, history, start, steps=steps,
                   step_size=alpha, random_start=random_start, seed=seed)


# --------------------------------------------------------------------------- softplus twin
def _softplus_activation(beta: tf.Variable) -> Callable[[tf.Tensor], tf.Tensor]:
    """softplus(beta z) / beta, reading ``beta`` at call time (smooth; ReLU as beta -> inf)."""

    def softplus_beta(z: tf.Tensor) -> tf.Tensor:
        return tf.nn.softplus(beta * z) / beta

    return softplus_beta


def _swap_relu(beta: tf.Variable) -> Callable[[keras.layers.Layer], keras.layers.Layer]:
    """A ``clone_model`` clone function: layers re-created from their config, ReLUs -> softplus."""
    activation = _softplus_activation(beta)

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, DenseLogits):  # the logit head of saliency.logit_model
            return keras.layers.Dense.from_config(
                layer.dense.get_config() | {"activation": "linear", "name": layer.name})
        config = layer.get_config()
        if isinstance(layer, keras.layers.ReLU):
            capped = config.get("max_value") is not None
            if capped or config.get("negative_slope") or config.get("threshold"):
                raise ValueError(f"layer {layer.name!r} is a capped/leaky ReLU; only plain ReLU "
                                 "can be swapped for softplus")
            return keras.layers.Activation(activation, name=layer.name)
        if config.get("activation") == "relu":
            config["activation"] = activation
        return layer.__class__.from_config(config)

    return clone


def softplus_twin(model: keras.Model, beta: float = DEFAULT_BETA[0]) -> SoftplusTwin:
    """A twin of ``model`` with ReLU -> softplus(beta z)/beta and logit output, same weights.

    Built with ``keras.models.clone_model`` (layers re-created from their configs, every
    ``activation="relu"`` and every plain ``ReLU`` layer swapped), then the weights of
    ``model``'s logit twin are copied in. Other activations are kept. The twin's weights are a
    copy: build a new twin after training ``model`` further.
    """
    beta_var = tf.Variable(float(beta), trainable=False, dtype=tf.float32, name="softplus_beta")
    logits = _binary_logits(model)
    twin = keras.models.clone_model(logits, clone_function=_swap_relu(beta_var), recursive=True)
    twin.set_weights(logits.get_weights())
    result = SoftplusTwin(twin, beta_var)
    result.set_beta(beta)
    return result


# --------------------------------------------------------------------------- saliency maps
def _map_and_logit(logits: keras.Model, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Normalised vanilla-gradient maps (n, H, W) and logits (n,), differentiable w.r.t. ``x``.

    Call inside an outer ``tf.GradientTape`` to differentiate the map (needs a smooth model).
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = logits(x, training=False)[:, 0]
    grad = tape.gradient(z, x)
    mass = tf.reduce_sum(tf.abs(grad), axis=-1)
    total = tf.reduce_sum(mass, axis=(1, 2), keepdims=True)
    return mass / tf.maximum(total, 1e-30), z


def map_and_logit(model: keras.Model, x: tf.Tensor | np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
    """The attacks' saliency map, as tensors: maps (n, H, W) summing to 1 and logits (n,).

    Differentiable w.r.t. ``x`` (n, H, W, C) when called inside an outer ``tf.GradientTape``
    that watches ``x``: for a ReLU model that derivative is zero (the input gradient is
    piecewise constant), for a :func:`softplus_twin` it is not.
    """
    return _map_and_logit(_binary_logits(model), tf.convert_to_tensor(x, tf.float32))


def gradient_distribution(model: keras.Model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(n, H, W) float32 vanilla-gradient maps of the logit, |grad| summed over channels, each
    divided by its sum (a probability distribution over pixels; what the attacks move).
    """
    x, logits = _checks.images(x, unit_range=True), _binary_logits(model)
    return np.concatenate([_map_and_logit(logits, tf.constant(x[sl]))[0].numpy()
                           for sl in _checks.batches(len(x), batch_size)])


def patch_target(image_shape: tuple[int, int], top_left: tuple[int, int] | None = None,
                 side: int | None = None) -> np.ndarray:
    """(H, W) float32 map that is uniform on a square patch and 0 elsewhere, summing to 1.

    ``side`` defaults to H // 4 and ``top_left`` (row, col) to (H // 8, W // 8): a patch in the
    upper-left region, away from where a chest X-ray's evidence is. The patch must fit.
    """
    h, w = (int(s) for s in image_shape)
    side = max(1, h // 4) if side is None else int(side)
    r, c = (h // 8, w // 8) if top_left is None else (int(v) for v in top_left)
    if side < 1 or r < 0 or c < 0 or r + side > h or c + side > w:
        raise ValueError(f"a {side}-pixel patch at (row {r}, col {c}) does not fit a {h}x{w} image")
    target = np.zeros((h, w), np.float32)
    target[r:r + side, c:c + side] = 1.0 / side**2
    return target


def _check_target(target: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(n, H, W) float32 target distributions (each summing to 1) for the images ``x``."""
    target = np.asarray(target, np.float32)
    n, h, w = x.shape[:3]
    if target.shape not in ((h, w), (n, h, w)):
        raise ValueError(f"target_map must have shape ({h}, {w}) or ({n}, {h}, {w}), "
                         f"got {target.shape}")
    sums = target.reshape(-1, h * w).sum(axis=1)
    if not np.isfinite(target).all() or target.min() < 0 or not (sums > 0).all():
        raise ValueError("target_map must be non-negative with a positive sum")
    target = np.broadcast_to(target, (n, h, w))
    return (target / target.sum(axis=(1, 2), keepdims=True)).astype(np.float32)


def _map_mse(maps: tf.Tensor, reference: tf.Tensor) -> tf.Tensor:
    """(n,) mean squared difference of two pixel distributions, in units of the uniform density.

    Maps summing to 1 have pixels of size 1/(H W); scaling by H W makes the term (and so the
    loss weights) independent of the image size: a uniform map has density 1 everywhere.
    """
    area = tf.cast(tf.shape(maps)[1] * tf.shape(maps)[2], maps.dtype)
    return tf.reduce_mean(tf.square((maps - reference) * area), axis=(1, 2))


# --------------------------------------------------------------------------- Dombrowski attacks
def _attack_twin(model: keras.Model) -> SoftplusTwin:
    """The cached softplus twin of ``model`` with its weights refreshed from ``model``.

    Caching keeps the traced attack step (keyed on the twin) across calls; refreshing the
    weights keeps the twin right if ``model`` was trained in between.
    """
    twin = per_model(model, "softplus_twin", lambda: softplus_twin(model))
    twin.model.set_weights(_binary_logits(model).get_weights())
    return twin


def _prediction_loss(maps, z, ref_map, sign, weights):
    """(n,) w_map * map MSE to the original map + w_pred * cross-entropy toward the other class."""
    return weights[0] * _map_mse(maps, ref_map) + weights[1] * tf.nn.softplus(sign * z)


def _explanation_loss(maps, z, target, p_ref, weights):
    """(n,) w_map * map MSE to the target map + w_pred * squared change of p."""
    return weights[0] * _map_mse(maps, target) + weights[1] * tf.square(tf.sigmoid(z) - p_ref)


@tf.function(reduce_retracing=True)
def _adam_step(twin: keras.Model, loss_fn: Callable, x_adv, m, v, t, x, ref_map, ref_out,
               weights, eps, lr):
    """One Adam step on the images, then the projection; traced once per (twin, loss_fn).

    ``loss_fn(maps, z, ref_map, ref_out, weights) -> (n,)``. Adam is written out on tensors
    (moments ``m``, ``v``; step count ``t`` from 1) rather than a Keras optimizer with
    variables, so one trace serves batches of any size. Per-image losses are summed, so each
    image's update is independent of the rest of the batch.
    """
    b1, b2 = ADAM_BETAS
    with tf.GradientTape() as tape:
        tape.watch(x_adv)
        maps, z = _map_and_logit(twin, x_adv)
        loss = loss_fn(maps, z, ref_map, ref_out, weights)
        total = tf.reduce_sum(loss)
    g = tape.gradient(total, x_adv)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * tf.square(g)
    update = (m / (1 - b1**t)) / (tf.sqrt(v / (1 - b2**t)) + _ADAM_EPSILON)
    return _project(x_adv - lr * update, x, eps), m, v, loss


def _beta_schedule(beta: float | tuple[float, float], steps: int) -> np.ndarray:
    """(steps,) softplus betas: constant, or geometric from ``beta[0]`` to ``beta[1]``."""
    lo, hi = (beta, beta) if np.isscalar(beta) else beta
    if not (lo > 0 and hi > 0):
        raise ValueError(f"softplus beta must be > 0, got {beta!r}")
    return np.geomspace(lo, hi, steps)


def _adam_attack(model: keras.Model, loss_fn: Callable, x: np.ndarray, ref_map: np.ndarray,
                 ref_out: np.ndarray, *, eps: float, steps: int, lr: float,
                 weights: tuple[float, float], beta: float | tuple[float, float],
                 batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``loss_fn`` over x_adv in the eps-ball with Adam on the softplus twin, beta
    following its schedule, ``batch_size`` images at a time (one traced call per step per
    batch); returns x_adv (n, H, W, C) and the loss history (steps, n).
    """
    betas = _beta_schedule(beta, steps)
    twin = _attack_twin(model)
    consts = [tf.constant(v, tf.float32) for v in (weights, eps, lr)]
    x_adv = np.empty_like(x)
    history = np.empty((steps, len(x)), np.float32)
    with tqdm(total=len(x), desc="attack", unit="image", leave=False,
              disable=len(x) <= batch_size and steps < 20) as bar:  # minutes-long: show progress
        for sl in _checks.batches(len(x), batch_size):
            xb = tf.constant(x[sl])
            xa, m, v = xb, tf.zeros_like(xb), tf.zeros_like(xb)
            refs = tf.constant(ref_map[sl]), tf.constant(ref_out[sl])
            for t, b in enumerate(betas, start=1):
                twin.set_beta(b)
                xa, m, v, loss = _adam_step(twin.model, loss_fn, xa, m, v,
                                            tf.constant(t, tf.float32), xb, *refs, *consts)
                history[t - 1, sl] = loss.numpy()
            x_adv[sl] = xa.numpy()
            bar.update(sl.stop - sl.start)
    return x_adv, history


def _check_attack_args(x, eps, steps, lr, batch_size) -> tuple[np.ndarray, float, int, float]:
    x, eps, steps = _checks.images(x, unit_range=True), _eps(eps), _checks.positive_int(steps, "steps")
    _checks.positive_int(batch_size, "batch_size")
    lr = eps / 10 if lr is None else float(lr)
    if not lr >= 0:
        raise ValueError(f"lr (Adam step, intensity units) must be >= 0, got {lr!r}")
    return x, eps, steps, lr


def prediction_attack(model: keras.Model, x: np.ndarray, *, eps: float = 0.03, steps: int = 30,
                      lr: float | None = None, w_map: float = 3.0, w_pred: float = 1.0,
                      beta: float | tuple[float, float] = DEFAULT_BETA,
                      batch_size: int = 32) -> AttackResult:
    """Flip the prediction while holding the saliency map still (Zhang et al.'s "sensitivity").

    Minimises, per image, with Adam over x_adv in the eps-ball (projected after each step)::

        w_map * MSE(map(x_adv), map(x)) + w_pred * softplus(s * logit(x_adv))

    where map is :func:`gradient_distribution` (map(x) of the original model, map(x_adv) of
    the softplus twin at the step's beta; MSE in uniform-density units, see ``_map_mse``) and
    s = +1 if the original model predicts the positive class (p >= 0.5), else -1. The second
    term is the binary cross-entropy toward the *opposite* class: it pushes the logit across 0.
    ``w_map`` trades flip rate for a still map (0 gives a plain Adam attack on p).

    Defaults are sized for 128 px images on 2 CPU cores: 30 steps, eps = 0.03 intensity units
    (the authors' code also says 0.03, but in its own normalised units, so the two are not
    comparable), Adam lr = eps / 10 intensity units, beta geometric 10 -> 100.
    ``batch_size`` images are attacked together (one traced call per step per batch).
    """
    x, eps, steps, lr = _check_attack_args(x, eps, steps, lr, batch_size)
    logits = _binary_logits(model)
    start = time.perf_counter()
    z = _logits(logits, x)
    sign = np.where(z >= 0, 1.0, -1.0).astype(np.float32)
    x_adv, history = _adam_attack(
        model, _prediction_loss, x, gradient_distribution(model, x), sign, eps=eps, steps=steps,
        lr=lr, weights=(w_map, w_pred), beta=beta, batch_size=batch_size)
    return _result("prediction_attack", eps, model, x, x_adv, history, start,
                   steps=steps, lr=lr, w_map=w_map,
                   w_pred=w_pred, beta=beta)


def explanation_attack(model: keras.Model, x: np.ndarray, target_map: np.ndarray | None = None,
                       *, eps: float = 0.06, steps: int = 60, lr: float | None = None,
                       w_map: float = 1.0, w_pred: float = 1e3,
                       beta: float | tuple[float, float] = DEFAULT_BETA,
                       batch_size: int = 32) -> AttackResult:
    """Drag the saliency map onto ``target_map`` while holding p still ("robustness").

    Minimises, per image, with Adam over x_adv in the eps-ball (projected after each step)::

        w_map * MSE(map(x_adv), target_map) + w_pred * (p(x_adv) - p(x))^2

    with map(x_adv) and p(x_adv) from the softplus twin at the step's beta and p(x) from the
    original model. ``target_map``: (H, W) or (n, H, W), non-negative, normalised here to sum
    1; default :func:`patch_target` (a uniform H/4 square in the upper-left region).

    Defaults (128 px, 2 CPU cores): 60 steps, eps = 0.06 intensity units (twice the prediction
    attack's, the ratio of the authors' code, whose units differ), Adam lr = eps / 10, beta
    geometric 10 -> 100.
    """
    x, eps, steps, lr = _check_attack_args(x, eps, steps, lr, batch_size)
    target = _check_target(patch_target(x.shape[1:3]) if target_map is None else target_map, x)
    logits = _binary_logits(model)
    start = time.perf_counter()
    # The loss holds sigmoid(logit) still: its reference is the sigmoid of the same logits the
    # attack differentiates (it agrees with models.predict_p, which the result reports, to
    # float32 rounding; the optimiser is sensitive to that last bit, so the reference stays here).
    p_ref = tf.sigmoid(_logits(logits, x)).numpy()
    x_adv, history = _adam_attack(
        model, _explanation_loss, x, target, p_ref, eps=eps, steps=steps, lr=lr,
        weights=(w_map, w_pred), beta=beta, batch_size=batch_size)
    return _result("explanation_attack", eps, model, x, x_adv, history, start,
                   steps=steps, lr=lr, w_map=w_map, w_pred=w_pred, beta=beta)


# --------------------------------------------------------------------------- visibility
def imperceptibility(x: np.ndarray, x_adv: np.ndarray) -> Imperceptibility:
    """L-inf, PSNR (dB) and SSIM of each perturbed image against its original (data range 1).

    ``x``, ``x_adv``: (n, H, W, C) in [0, 1], same shape, H and W >= 7 (SSIM's window).
    Identical images give linf 0, PSNR ``inf`` and SSIM 1.
    """
    x, x_adv = _checks.images(x, "x", unit_range=True), _checks.images(x_adv, "x_adv", unit_range=True)
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must have the same shape, got {x.shape} and {x_adv.shape}")
    linf = np.abs(x_adv - x).reshape(len(x), -1).max(axis=1).astype(np.float64)
    with np.errstate(divide="ignore"):  # identical images: PSNR = 10 log10(1 / 0) = inf
        psnr = np.array([peak_signal_noise_ratio(a, b, data_range=1.0)
                         for a, b in zip(x, x_adv)], np.float64)
    ssim = np.array([structural_similarity(a, b, data_range=1.0, channel_axis=-1)
                     for a, b in zip(x, x_adv)], np.float64)
    return Imperceptibility(linf, psnr, ssim)


def imperceptibility_table(perturbations: Mapping[str, tuple[np.ndarray, AttackResult]]
                           ) -> pd.DataFrame:
    """How visible each perturbation is (:func:`perturb.imperceptibility`), one row each.

    ``perturbations``: {name: (clean images (n, H, W, C), the AttackResult made from them)}; for
    studies, ``{s.name: (s.x, s.attack) for s in studies}``. Columns: eps (the budget), max L∞
    (intensity units, <= eps), mean and minimum PSNR (dB, data range 1; higher = less visible),
    mean and minimum SSIM (1 = identical); index: the names.
    """
    rows = {}
    for name, (x, attack) in perturbations.items():
        imp = imperceptibility(x, attack.x_adv)
        rows[name] = {"eps": attack.eps, "max L∞": imp.linf.max(),
                      "mean PSNR (dB)": imp.psnr.mean(), "min PSNR (dB)": imp.psnr.min(),
                      "mean SSIM": imp.ssim.mean(), "min SSIM": imp.ssim.min()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("perturbation")


# --------------------------------------------------------------------------- the reader quiz
@dataclass(frozen=True)
class Quiz:
    """"Spot the perturbed image": pairs of one clean and one perturbed image, sides at random.

    ``left`` / ``right``: (k, H, W, C) images shown side by side; ``perturbed_right``: (k,) bool,
    True where the perturbed image is on the right; ``source``: (k,) index of each pair's image
    in the batches given to :func:`make_quiz`; ``kinds``: (k,) label per pair (e.g. the attack);
    ``seed``: the seed that drew the pairs and the sides.
    """

    left: np.ndarray
    right: np.ndarray
    perturbed_right: np.ndarray
    source: np.ndarray
    kinds: tuple[str, ...]
    seed: int

    def __len__(self) -> int:
        return len(self.perturbed_right)

    @property
    def answers(self) -> str:
        """The key, one letter per pair: "L" or "R" = the side of the perturbed image."""
        return "".join("R" if r else "L" for r in self.perturbed_right)

    def score(self, guesses: str | Sequence[str]) -> float:
        """Share of pairs where ``guesses`` ("LRRL..." or ["L", "R", ...]) names the perturbed side."""
        g = [c.strip().upper() for c in guesses if c.strip()]
        if len(g) != len(self) or not set(g) <= {"L", "R"}:
            raise ValueError(f"give one answer per pair, L or R ({len(self)} in all), got {guesses!r}")
        return float(np.mean([a == b for a, b in zip(g, self.answers)]))


def make_quiz(clean: np.ndarray, perturbed: np.ndarray, n_pairs: int, *,
              kinds: Sequence[str] | None = None, seed: int = 0) -> Quiz:
    """Draw ``n_pairs`` distinct images and put each beside its perturbed twin, sides at random.

    The sides are balanced, as in a reader study: half of the perturbed images are on the left and
    half on the right, in a random order (for an odd ``n_pairs`` one side is a coin flip), so
    "always say left" scores 50 %. ``clean``, ``perturbed``: (n, H, W, C) twins in the same
    order; ``kinds``: optional (n,) label per image (which perturbation made it). Seeded: the same
    call gives the same quiz.
    """
    clean, perturbed = np.asarray(clean), np.asarray(perturbed)
    if clean.shape != perturbed.shape or clean.ndim != 4:
        raise ValueError(f"clean and perturbed must be twin batches (n, H, W, C), got "
                         f"{clean.shape} and {perturbed.shape}")
    n = len(clean)
    if not 1 <= n_pairs <= n:
        raise ValueError(f"n_pairs must be between 1 and the {n} images given, got {n_pairs}")
    kinds = ("",) * n if kinds is None else tuple(str(k) for k in kinds)
    if len(kinds) != n:
        raise ValueError(f"kinds must have one label per image ({n}), got {len(kinds)}")
    rng = np.random.default_rng(seed)
    source = rng.choice(n, n_pairs, replace=False)
    half = np.arange(n_pairs // 2 * 2) % 2 == 1  # half R, half L; odd: one coin flip
    right = rng.permutation(np.r_[half, rng.integers(0, 2, n_pairs % 2).astype(bool)])
    side = right[:, None, None, None]
    return Quiz(np.where(side, clean[source], perturbed[source]),
                np.where(side, perturbed[source], clean[source]), right, source,
                tuple(kinds[i] for i in source), seed)
