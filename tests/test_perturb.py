"""Perturbations: budgets, analytic FGSM, the softplus twin, and the two Dombrowski attacks.

The attack tests use a small CNN (the course's own architecture at 32 px) trained for a few
seconds on synthetic images whose class is the mean brightness of one square region.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import SIDE as S
from helpers import linear_model, tiny_mlp, trained_square_cnn

from course_utils import perturb, saliency
from course_utils.models import build_cxr_cnn


def _jsd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,) Jensen-Shannon divergence (natural log) between maps that each sum to 1."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    m = (a + b) / 2

    def kl(p, q):
        return np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / np.where(q > 0, q, 1)), 0).sum(1)

    return 0.5 * kl(a, m) + 0.5 * kl(b, m)


@pytest.fixture(scope="module")
def trained() -> tuple[keras.Model, np.ndarray]:
    """The course CNN at 32 px, trained for a few seconds (>= 90 % right on 16 held-out images)."""
    return trained_square_cnn()


@pytest.fixture(scope="module")
def small_batch() -> np.ndarray:
    """(4, 8, 8, 1) in [0, 1], with exact 0s and 1s so the [0, 1] clipping is exercised."""
    x = np.random.default_rng(3).uniform(0, 1, (4, 8, 8, 1)).astype(np.float32)
    x[:, 0, :4] = 0.0
    x[:, 1, :4] = 1.0
    return x


# --------------------------------------------------------------------------- budgets
ATTACKS = {
    "noise-sign": lambda m, x, e: perturb.random_noise(m, x, e, kind="sign"),
    "noise-uniform": lambda m, x, e: perturb.random_noise(m, x, e, kind="uniform"),
    "fgsm": perturb.fgsm,
    "pgd": lambda m, x, e: perturb.pgd(m, x, e, steps=3),
    # Adam steps of eps / 2: three of them would leave the ball without the projection.
    "prediction": lambda m, x, e: perturb.prediction_attack(m, x, eps=e, steps=3, lr=e / 2),
    "explanation": lambda m, x, e: perturb.explanation_attack(
        m, x, perturb.patch_target((8, 8), (0, 0), 2), eps=e, steps=3, lr=e / 2),
}


@pytest.mark.parametrize("name", ATTACKS)
def test_attacks_stay_in_the_eps_ball_and_in_0_1(name, small_batch):
    model = tiny_mlp(seed=1)
    eps = 0.1
    res = ATTACKS[name](model, small_batch, eps)
    assert res.x_adv.shape == small_batch.shape and res.x_adv.dtype == np.float32
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert np.abs(res.x_adv - small_batch).max() <= eps + 1e-6
    np.testing.assert_allclose(res.linf, np.abs(res.x_adv - small_batch).max(axis=(1, 2, 3)))
    assert res.linf.max() > eps / 2  # it did perturb
    np.testing.assert_allclose(res.p_before, model(small_batch).numpy()[:, 0], rtol=1e-5)
    np.testing.assert_allclose(res.p_after, model(res.x_adv).numpy()[:, 0], rtol=1e-5)


@pytest.mark.parametrize("name", ATTACKS)
def test_eps_zero_returns_the_input_unchanged(name, small_batch):
    res = ATTACKS[name](tiny_mlp(seed=1), small_batch, 0.0)
    np.testing.assert_array_equal(res.x_adv, small_batch)
    np.testing.assert_array_equal(res.linf, 0)
    np.testing.assert_array_equal(res.p_after, res.p_before)


def test_sign_noise_uses_the_whole_budget_inside_the_image(small_batch):
    res = perturb.random_noise(tiny_mlp(seed=1), small_batch, 0.05, seed=4)
    inside = (small_batch > 0.05) & (small_batch < 0.95)
    np.testing.assert_allclose(np.abs(res.x_adv - small_batch)[inside], 0.05, atol=1e-6)
    again = perturb.random_noise(tiny_mlp(seed=1), small_batch, 0.05, seed=4)
    np.testing.assert_array_equal(res.x_adv, again.x_adv)  # seeded


# --------------------------------------------------------------------------- FGSM / PGD
def test_fgsm_on_a_linear_model_moves_the_logit_by_eps_times_l1_norm():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 8)).astype(np.float32)
    x = rng.uniform(0.2, 0.8, (6, 8, 8, 1)).astype(np.float32)  # inside [eps, 1 - eps]
    model = linear_model(w, bias=-float((w * 0.5).sum()))
    res = perturb.fgsm(model, x, 0.1)
    logit = lambda p: np.log(p / (1 - p))
    predicted = np.where(res.p_before >= 0.5, 1.0, -1.0)
    # Untargeted: p of the predicted class falls; for a linear model by exactly eps * ||w||_1.
    np.testing.assert_allclose(logit(res.p_after) - logit(res.p_before),
                               -predicted * 0.1 * np.abs(w).sum(), rtol=1e-3)
    assert (predicted == 1).any() and (predicted == -1).any()  # both directions were tested


def test_fgsm_follows_given_labels():
    w = np.full((8, 8), 0.01, np.float32)
    x = np.full((2, 8, 8, 1), 0.5, np.float32)
    res = perturb.fgsm(linear_model(w, bias=0.0), x, 0.1, labels=[0, 1])
    # Raising the cross-entropy of label 0 raises p; of label 1 lowers it.
    assert res.p_after[0] > res.p_before[0] and res.p_after[1] < res.p_before[1]
    np.testing.assert_allclose(res.x_adv[0], 0.6, atol=1e-6)
    np.testing.assert_allclose(res.x_adv[1], 0.4, atol=1e-6)


def test_pgd_increases_the_loss_at_least_as_much_as_fgsm():
    model = tiny_mlp(seed=2)
    x = np.random.default_rng(5).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)
    fgsm = perturb.fgsm(model, x, 0.05)
    pgd = perturb.pgd(model, x, 0.05, steps=10)
    predicted = fgsm.p_before >= 0.5

    def cross_entropy(p):  # of the originally predicted class: what both attacks increase
        return -np.log(np.where(predicted, p, 1 - p))

    assert cross_entropy(pgd.p_after).mean() >= cross_entropy(fgsm.p_after).mean()
    assert (cross_entropy(pgd.p_after) >= cross_entropy(fgsm.p_after) - 1e-4).mean() >= 0.9
    assert cross_entropy(fgsm.p_after).mean() > cross_entropy(fgsm.p_before).mean()
    assert pgd.loss_history.shape == (10, 16) and fgsm.loss_history.shape == (1, 16)
    np.testing.assert_allclose(fgsm.loss_history[0], cross_entropy(fgsm.p_before), rtol=1e-4)


# --------------------------------------------------------------------------- softplus twin
def test_softplus_twin_has_the_same_weights_and_swaps_every_relu():
    model = build_cxr_cnn(16, seed=3, width=4)
    twin = perturb.softplus_twin(model, beta=100.0)
    for layer in twin.model.layers:
        original = model.get_layer(layer.name.removesuffix("_logits"))
        assert len(layer.get_weights()) == len(original.get_weights())
        for ours, theirs in zip(layer.get_weights(), original.get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    assert len(twin.model.get_weights()) == 12  # 5 convolution/dense layers + the output
    activations = {layer.name: getattr(layer, "activation", None) for layer in twin.model.layers}
    assert all(a is not keras.activations.relu for a in activations.values())
    assert activations["p_covid_logits"] is keras.activations.linear  # twin outputs logits
    assert model.get_layer("conv1").activation is keras.activations.relu


def test_softplus_twin_swaps_relu_layers_and_refuses_leaky_ones():
    inputs = keras.Input((4, 4, 1))
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.ReLU(name="relu_layer")(keras.layers.Dense(8)(h))
    h = keras.layers.Activation("relu", name="relu_activation")(keras.layers.Dense(8)(h))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(h))
    twin = perturb.softplus_twin(model, beta=1.0)
    x = np.full((1, 4, 4, 1), 0.5, np.float32)
    for name in ("relu_layer", "relu_activation"):
        probe = keras.Model(twin.model.inputs, twin.model.get_layer(name).output)
        before = keras.Model(model.inputs, model.get_layer(name).output)(x).numpy()
        assert (probe(x).numpy() > 0).all() and (before == 0).any()  # softplus(z) > 0 = relu(z<0)
    leaky = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.ReLU(negative_slope=0.1)(
        keras.layers.Flatten()(inputs))))
    with pytest.raises(ValueError, match="leaky"):
        perturb.softplus_twin(leaky)


def test_softplus_twin_approaches_the_relu_model_as_beta_grows(trained):
    model, _ = trained
    x = np.random.default_rng(6).uniform(0, 1, (16, S, S, 1)).astype(np.float32)
    p = model(x).numpy()[:, 0]
    twin = perturb.softplus_twin(model, beta=100.0)
    assert np.abs(twin.probs(x) - p).max() < 1e-2
    twin.set_beta(1.0)  # the same twin object: beta is a variable, nothing is rebuilt
    assert np.abs(twin.probs(x) - p).max() > 5e-2
    twin.set_beta(100.0)
    assert np.abs(twin.probs(x) - p).max() < 1e-2
    with pytest.raises(ValueError, match="beta"):
        twin.set_beta(0.0)


def test_softplus_gives_the_saliency_map_a_second_derivative(trained):
    """Why the attacks need the twin: a ReLU network's map has zero derivative w.r.t. x."""
    model, x_test = trained
    x = tf.constant(x_test[:2])
    weights = tf.constant(np.random.default_rng(7).uniform(size=(2, S, S)), tf.float32)

    def map_gradient(m: keras.Model):
        with tf.GradientTape() as tape:
            tape.watch(x)
            maps, _ = perturb.map_and_logit(m, x)
            score = tf.reduce_sum(maps * weights)
        return tape.gradient(score, x)

    relu = map_gradient(model)
    assert relu is None or not np.any(relu.numpy())
    smooth = map_gradient(perturb.softplus_twin(model, beta=10.0).model)
    assert smooth is not None and np.abs(smooth.numpy()).max() > 0


def test_gradient_distribution_of_a_linear_model_is_normalised_abs_weights():
    w = np.random.default_rng(8).normal(size=(8, 8)).astype(np.float32)
    maps = perturb.gradient_distribution(linear_model(w, bias=0.0), np.full((3, 8, 8, 1), 0.5, np.float32))
    np.testing.assert_allclose(maps, np.broadcast_to(np.abs(w) / np.abs(w).sum(), (3, 8, 8)),
                               rtol=1e-5)


def test_patch_target_is_a_uniform_square_summing_to_one():
    t = perturb.patch_target((32, 32))
    assert t.shape == (32, 32) and t.sum() == pytest.approx(1)
    assert (t > 0).sum() == 64 and t[4:12, 4:12].min() == pytest.approx(1 / 64)
    assert perturb.patch_target((16, 20), (2, 3), 5)[2:7, 3:8].sum() == pytest.approx(1)
    with pytest.raises(ValueError, match="does not fit"):
        perturb.patch_target((16, 16), (12, 0), 8)


# --------------------------------------------------------------------------- Dombrowski attacks
def test_prediction_attack_flips_p_while_the_map_moves_less_than_under_pgd(trained):
    model, x = trained
    eps = 0.06
    maps = perturb.gradient_distribution(model, x)
    attack = perturb.prediction_attack(model, x, eps=eps, steps=30, w_map=1.0)
    plain = perturb.pgd(model, x, eps, steps=10)
    assert attack.flipped.mean() >= 0.75
    assert attack.linf.max() <= eps + 1e-6
    jsd_attack = _jsd(maps, perturb.gradient_distribution(model, attack.x_adv))
    jsd_pgd = _jsd(maps, perturb.gradient_distribution(model, plain.x_adv))
    assert jsd_attack.mean() < 0.8 * jsd_pgd.mean()
    assert attack.loss_history.shape == (30, len(x))
    assert attack.loss_history[-1].mean() < attack.loss_history[0].mean()
    # Holding the map still is what w_map buys: without it the map moves as much as under PGD.
    loose = perturb.prediction_attack(model, x, eps=eps, steps=30, w_map=0.0)
    assert _jsd(maps, perturb.gradient_distribution(model, loose.x_adv)).mean() > jsd_attack.mean()


def test_explanation_attack_moves_the_map_into_the_patch_and_keeps_p(trained):
    model, x = trained
    target = perturb.patch_target((S, S))  # rows/cols 4:12, away from the class region
    inside = target > 0
    before = perturb.gradient_distribution(model, x)[:, inside].sum(axis=1)
    res = perturb.explanation_attack(model, x, target, eps=0.1, steps=60)
    after = perturb.gradient_distribution(model, res.x_adv)[:, inside].sum(axis=1)
    assert after.mean() > 1.5 * before.mean()
    assert (after > before).mean() >= 0.75
    assert np.abs(res.p_after - res.p_before).mean() < 0.1
    assert not res.flipped.any()
    assert res.linf.max() <= 0.1 + 1e-6
    assert res.loss_history[-1].mean() < res.loss_history[0].mean()


def test_attacks_are_batched_per_image_and_deterministic(trained):
    model, x = trained
    kwargs = dict(eps=0.06, steps=5)
    whole = perturb.explanation_attack(model, x[:6], **kwargs)
    chunks = perturb.explanation_attack(model, x[:6], **kwargs, batch_size=4)
    np.testing.assert_allclose(chunks.x_adv, whole.x_adv, atol=2e-3)
    again = perturb.explanation_attack(model, x[:6], **kwargs)
    np.testing.assert_array_equal(again.x_adv, whole.x_adv)


def test_attacks_reuse_their_trace_and_follow_weight_changes():
    model = build_cxr_cnn(16, seed=4, width=4)
    x = np.random.default_rng(10).uniform(0, 1, (3, 16, 16, 1)).astype(np.float32)
    for n in (3, 2):  # after two batch sizes the trace generalises to any batch size
        perturb.prediction_attack(model, x[:n], steps=2)
    traces = perturb._adam_step.experimental_get_tracing_count()
    dense = model.get_layer("dense")
    dense.set_weights([w * 2 for w in dense.get_weights()])  # "train" the model further
    for n in (1, 3):
        perturb.prediction_attack(model, x[:n], steps=2)
    assert perturb._adam_step.experimental_get_tracing_count() == traces  # no retracing
    twin = saliency._PER_MODEL[model]["softplus_twin"].model  # as the last attack left it
    np.testing.assert_array_equal(twin.get_layer("dense").get_weights()[0],
                                  dense.get_weights()[0])


# --------------------------------------------------------------------------- visibility
def test_imperceptibility_of_identical_and_of_offset_images():
    x = np.random.default_rng(9).uniform(0.2, 0.8, (3, 16, 16, 1)).astype(np.float32)
    same = perturb.imperceptibility(x, x.copy())
    np.testing.assert_array_equal(same.linf, 0)
    assert np.isposinf(same.psnr).all()
    np.testing.assert_allclose(same.ssim, 1.0)
    shifted = perturb.imperceptibility(x, x + np.float32(0.1))
    np.testing.assert_allclose(shifted.linf, 0.1, rtol=1e-5)
    np.testing.assert_allclose(shifted.psnr, 20.0, rtol=1e-4)  # 10 log10(1 / 0.1^2) dB
    assert (shifted.ssim < 1).all() and shifted.psnr.shape == (3,)


# --------------------------------------------------------------------------- bad arguments
CALLS = {  # every attack with its default settings
    "noise": perturb.random_noise,
    "fgsm": perturb.fgsm,
    "pgd": perturb.pgd,
    "prediction": lambda m, x, e: perturb.prediction_attack(m, x, eps=e),
    "explanation": lambda m, x, e: perturb.explanation_attack(m, x, eps=e),
}


@pytest.mark.parametrize("eps", [-0.01, 1.5, float("nan"), "0.1"])
@pytest.mark.parametrize("name", CALLS)
def test_bad_eps_is_rejected(name, eps, small_batch):
    with pytest.raises(ValueError, match=r"eps must be a number in \[0, 1\] \(an L-inf budget"):
        CALLS[name](tiny_mlp(seed=1), small_batch, eps)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((8, 8, 1), np.float32), r"\(n, H, W, C\)"),
    (np.zeros((1, 8, 8), np.float32), r"\(n, H, W, C\)"),
    (np.full((1, 8, 8, 1), 255.0, np.float32), r"\[0, 1\]"),
    (np.full((1, 8, 8, 1), -0.5, np.float32), r"\[0, 1\]"),
    (np.full((1, 8, 8, 1), np.nan, np.float32), "NaN or infinite"),
])
@pytest.mark.parametrize("name", CALLS)
def test_bad_images_are_rejected(name, bad, message):
    with pytest.raises(ValueError, match=message):
        CALLS[name](tiny_mlp(seed=1), bad, 0.1)


def test_other_bad_arguments_are_rejected(small_batch):
    model = tiny_mlp(seed=1)
    with pytest.raises(ValueError, match="steps"):
        perturb.pgd(model, small_batch, 0.1, steps=0)
    with pytest.raises(ValueError, match="kind"):
        perturb.random_noise(model, small_batch, 0.1, kind="gaussian")
    with pytest.raises(ValueError, match="target_map"):
        perturb.explanation_attack(model, small_batch, np.ones((4, 4)))
    with pytest.raises(ValueError, match="labels"):
        perturb.fgsm(model, small_batch, 0.1, labels=2)
    with pytest.raises(ValueError, match="one output unit"):
        three = keras.Model(model.inputs, keras.layers.Dense(3)(model.layers[-2].output))
        perturb.fgsm(three, small_batch, 0.1)
    with pytest.raises(ValueError, match="same shape"):
        perturb.imperceptibility(small_batch, small_batch[:2])
    with pytest.raises(ValueError, match=r"x_adv must be intensities in \[0, 1\]"):
        perturb.imperceptibility(small_batch, small_batch + 2)
