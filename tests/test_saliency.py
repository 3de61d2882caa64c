"""Saliency methods against analytic answers on tiny hand-built models."""
from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import linear_model

from course_utils import metrics, saliency
from course_utils.models import build_cxr_cnn

H = W = 8


@pytest.fixture(scope="module")
def linear():
    w = np.random.default_rng(0).normal(size=(H * W * 3, 3)).astype(np.float32)
    x = np.random.default_rng(1).uniform(0, 1, size=(2, H, W, 3)).astype(np.float32)
    return linear_model(w, "softmax", input_shape=(H, W, 3)), w.reshape(H, W, 3, 3), x


def test_vanilla_gradient_of_a_linear_model_is_abs_weights(linear):
    model, w, x = linear
    for k in range(3):
        res = saliency.compute(model, x, "vanilla", k)
        expected = np.abs(w[..., k]).max(axis=-1)  # max over colour channels (Simonyan)
        np.testing.assert_allclose(res.raw, np.broadcast_to(expected, (2, H, W)), rtol=1e-5)
        assert res.normalised.min() == 0 and res.normalised.max() == pytest.approx(1)


def test_gradients_are_taken_of_the_logit_not_the_softmax(linear):
    model, w, x = linear
    logits = saliency.logit_model(model)
    np.testing.assert_allclose(keras.ops.softmax(logits(x)).numpy(), model(x).numpy(), rtol=1e-5)
    assert saliency.logit_model(model) is logits  # cached, not rebuilt
    assert logits.layers[1] is model.layers[1]  # shared layers, no copy
    assert len(model.weights) == 1  # the twin is not tracked as part of the model
    w = model.layers[-1].get_weights()[0]
    model.layers[-1].set_weights([2 * w])  # e.g. a randomisation test changes the output layer
    np.testing.assert_allclose(logits(x).numpy(), 2 * x.reshape(2, -1) @ w, rtol=1e-5)
    model.layers[-1].set_weights([w])


def test_smoothgrad_of_a_linear_model_equals_vanilla(linear):
    model, w, x = linear
    res = saliency.compute(model, x, "smoothgrad", 1, smooth_samples=4)
    np.testing.assert_allclose(res.raw[0], np.abs(w[..., 1]).max(-1), rtol=1e-5)


def test_gradient_x_input_and_integrated_gradients_are_exact_for_linear(linear):
    model, w, x = linear
    expected = (w[None, ..., 2] * x).sum(-1)
    gxi = saliency.compute(model, x, "gradxinput", 2)
    ig = saliency.compute(model, x, "integrated_gradients", 2, ig_steps=4)
    np.testing.assert_allclose(gxi.raw, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ig.raw, expected, rtol=1e-4, atol=1e-6)
    # IG completeness: attributions sum to f(x) - f(baseline) (logit; baseline 0 gives 0).
    logit = saliency.logit_model(model)(x).numpy()[:, 2]
    np.testing.assert_allclose(ig.raw.sum((1, 2)), logit, rtol=1e-4)


def test_single_sigmoid_output_targets_both_classes():
    w = np.random.default_rng(2).normal(size=(H * W * 3, 1)).astype(np.float32)
    model = linear_model(w, "sigmoid", input_shape=(H, W, 3))
    x = np.ones((1, H, W, 3), np.float32)
    pos = saliency.compute(model, x, "gradxinput", 1).raw
    neg = saliency.compute(model, x, "gradxinput", 0).raw
    np.testing.assert_allclose(pos, -neg, rtol=1e-5)  # explaining "not COVID" flips the sign
    with pytest.raises(ValueError, match="targets 0 or 1"):
        saliency.compute(model, x, "vanilla", 2)


def _region_model() -> keras.Model:
    """Feature map 'feat' = input; channel 0 holds region R, channel 1 the rest; p looks at R."""
    inputs = keras.Input((16, 16, 2))
    feat = keras.layers.Conv2D(2, 1, use_bias=False, name="feat")
    pooled = keras.layers.GlobalAveragePooling2D()(feat(inputs))
    head = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(inputs, head(pooled))
    feat.set_weights([np.eye(2, dtype=np.float32).reshape(1, 1, 2, 2)])
    head.set_weights([np.array([[4.0], [0.0]], np.float32), np.array([-1.0], np.float32)])
    return model


@pytest.fixture(scope="module")
def region_case():
    region = np.zeros((16, 16), bool)
    region[2:7, 9:14] = True
    x = np.zeros((1, 16, 16, 2), np.float32)
    x[0, ..., 0] = region
    x[0, ..., 1] = ~region
    return _region_model(), x, region


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_grad_cams_light_up_only_the_region_the_model_uses(region_case, method):
    model, x, region = region_case
    cam = saliency.compute(model, x, method, 1, layer="feat").raw[0]
    assert cam[region].min() > 0 and np.abs(cam[~region]).max() == pytest.approx(0, abs=1e-6)
    assert region[np.unravel_index(cam.argmax(), cam.shape)]


def test_scorecam_on_a_sigmoid_model_is_fixed_by_the_two_class_softmax(region_case):
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.scores import BinaryScore

    model, x, region = region_case
    naive = Scorecam(model)(BinaryScore(True), x, penultimate_layer="feat",
                            normalize_cam=False)[0]
    # tf-keras-vis softmaxes the single output -> every channel weight is 1 -> a flat map.
    assert naive[region].mean() == pytest.approx(naive[~region].mean(), rel=1e-3)
    cam = saliency.compute(model, x, "scorecam", 1, layer="feat", score_max_n=None).raw[0]
    assert cam[region].mean() > 1.2 * cam[~region].mean()


@pytest.fixture(scope="module")
def relu_cnn():
    from course_utils.models import build_cxr_cnn

    x = np.random.default_rng(2).uniform(0, 1, size=(5, 32, 32, 1)).astype(np.float32)
    return build_cxr_cnn(32, seed=0, width=4), x


@pytest.mark.parametrize("target", [0, 1])
def test_vanilla_and_smoothgrad_equal_tf_keras_vis(relu_cnn, target):
    """Our compiled gradients give tf-keras-vis' Saliency maps: same noise, same numbers."""
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.scores import BinaryScore

    model, x = relu_cnn
    logits = saliency.logit_model(model)
    reference = Saliency(logits, clone=False)
    score = BinaryScore([bool(target)] * len(x))
    ours = saliency.compute(model, x, "vanilla", target).raw
    theirs = reference(score, x, normalize_map=False)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6 * np.abs(theirs).max())
    ours = saliency.compute(model, x, "smoothgrad", target, smooth_samples=4, seed=3).raw
    np.random.seed(3)
    theirs = reference(score, x, smooth_samples=4, smooth_noise=0.2, normalize_map=False)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6 * np.abs(theirs).max())
    assert not np.allclose(ours, saliency.compute(model, x, "vanilla", target).raw)


def _softmax_cnn(classes: int = 4) -> keras.Model:
    """A tiny 3-channel CNN with a softmax head (the VGG16 case: categorical scores)."""
    init = keras.initializers.GlorotUniform(seed=1)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", kernel_initializer=init)(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", kernel_initializer=init,
                            name="feat")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(classes, activation="softmax", kernel_initializer=init)(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
def test_gradcam_and_gradcam_plus_plus_equal_tf_keras_vis(relu_cnn, method, head):
    """The compiled, batched CAMs give tf-keras-vis' Gradcam / GradcamPlusPlus maps (logit
    scores, no normalisation, upsampled to the image) for mixed targets in one batch."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.utils.scores import BinaryScore, CategoricalScore

    if head == "sigmoid":
        (model, x), layer, targets = relu_cnn, "last_conv", np.array([1, 0, 1, 1, 0])
        score = BinaryScore(targets.astype(bool).tolist())
    else:
        model, layer, targets = _softmax_cnn(), "feat", np.array([0, 3, 1, 2])
        x = np.random.default_rng(5).uniform(0, 1, size=(4, 24, 24, 3)).astype(np.float32)
        score = CategoricalScore(targets.tolist())
    ours = saliency.compute(model, x, method, targets, layer=layer).raw
    cam = Gradcam if method == "gradcam" else GradcamPlusPlus
    theirs = cam(saliency.logit_model(model), clone=False)(score, x, penultimate_layer=layer,
                                                           normalize_cam=False)
    assert ours.shape == theirs.shape == x.shape[:3] and np.abs(theirs).max() > 0
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6 * np.abs(theirs).max())
    # a map does not depend on which images share its batch
    alone = saliency.compute(model, x[1:2], method, targets[1], layer=layer).raw
    np.testing.assert_allclose(ours[1], alone[0], rtol=1e-5, atol=1e-6 * np.abs(theirs).max())


@pytest.mark.parametrize("max_n", [2, None])
def test_scorecam_equals_tf_keras_vis_image_by_image(relu_cnn, max_n):
    """Batched Score-CAM = tf-keras-vis' Scorecam on each image alone (its channel choice is
    batch-wide; ours is per image, so one image at a time is where the two must agree)."""
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.scores import CategoricalScore

    model, x = relu_cnn
    logits = saliency.logit_model(model)
    z = logits.outputs[0]  # tf-keras-vis needs two logits [0, z] for a sigmoid model
    two = keras.Model(logits.inputs, keras.layers.Concatenate()([keras.ops.zeros_like(z), z]))
    targets = np.array([1, 0, 1, 1, 0])
    ours = saliency.compute(model, x, "scorecam", targets, score_max_n=max_n).raw
    theirs = np.concatenate([
        Scorecam(two, clone=False)(CategoricalScore([int(t)]), x[i:i + 1], max_N=max_n,
                                   normalize_cam=False)
        for i, t in enumerate(targets)])
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max())
    # a map does not depend on which images share its batch
    alone = saliency.compute(model, x[2:3], "scorecam", 1, score_max_n=max_n).raw
    np.testing.assert_allclose(ours[2], alone[0], rtol=1e-5, atol=1e-7)


def test_compiled_gradients_see_changed_weights(relu_cnn):
    model, x = relu_cnn
    before = saliency.compute(model, x, "vanilla", 1).raw
    weights = model.get_weights()
    model.set_weights([2 * w for w in weights])  # what a randomisation test does in place
    try:
        after = saliency.compute(model, x, "vanilla", 1).raw
    finally:
        model.set_weights(weights)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(saliency.compute(model, x, "vanilla", 1).raw, before, rtol=1e-6)


def test_per_model_cache_reuses_its_graphs_and_does_not_keep_models_alive(relu_cnn):
    import gc
    import weakref

    model, x = relu_cnn
    saliency.compute(model, x, "guided_backprop", 1)
    clone = saliency._PER_MODEL[model]["guided"]
    again = saliency.compute(model, x, "guided_backprop", 1).raw
    assert saliency._PER_MODEL[model]["guided"] is clone  # no new clone (nor a new trace)
    fresh = build_cxr_cnn(x.shape[1], seed=1, width=4)
    fresh.set_weights(model.get_weights())
    np.testing.assert_allclose(saliency.compute(fresh, x, "guided_backprop", 1).raw, again,
                               rtol=1e-5, atol=1e-7)
    for method in ("vanilla", "scorecam", "guided_backprop"):
        saliency.compute(fresh, x, method, 1)
    gone = [weakref.ref(m) for m in (fresh, saliency.logit_model(fresh), fresh.layers[0])]
    del fresh
    for _ in range(4):  # each pass frees one more link of the cache's chain of weak entries
        gc.collect()
    assert [ref() for ref in gone] == [None] * 3  # nothing cached keeps a model or its weights


def test_smoothgrad_is_seeded_and_leaves_the_global_generators_alone(relu_cnn, monkeypatch):
    model, x = relu_cnn
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = saliency.compute(model, x, "smoothgrad", 1, smooth_samples=3, seed=7).raw
    assert np.array_equal(np.random.get_state()[1], before)  # NumPy's global state restored
    b = saliency.compute(model, x, "smoothgrad", 1, smooth_samples=3, seed=7).raw
    c = saliency.compute(model, x, "smoothgrad", 1, smooth_samples=3, seed=8).raw
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)  # a ReLU network: the noise matters
    # tiny memory cap -> one image per chunk: same shapes, still seeded
    monkeypatch.setattr(saliency, "SMOOTHGRAD_MAX_VALUES", 32 * 32 * 3)
    d = saliency.compute(model, x, "smoothgrad", 1, smooth_samples=3, seed=7)
    e = saliency.compute(model, x, "smoothgrad", 1, smooth_samples=3, seed=7)
    assert d.raw.shape == a.shape
    np.testing.assert_array_equal(d.raw, e.raw)


def test_minmax_and_smooth():
    maps = np.stack([np.arange(16.0).reshape(4, 4), np.full((4, 4), 3.0)])
    out = metrics.minmax(maps, np.float32)
    assert out.dtype == np.float32
    assert out[0].min() == 0 and out[0].max() == 1 and (out[1] == 0).all()  # flat map -> zeros
    spike = np.zeros((1, 9, 9))
    spike[0, 4, 4] = 1
    blurred = saliency.smooth(spike, sigma=1.0)
    assert blurred.sum() == pytest.approx(1.0, rel=1e-3) and blurred[0, 4, 4] < 1


def test_bad_calls_are_explained(linear):
    model, _, x = linear
    with pytest.raises(ValueError, match="unknown method"):
        saliency.compute(model, x, "lime", 0)
    with pytest.raises(ValueError, match=r"batch of shape \(n, H, W, C\)"):
        saliency.compute(model, x[0], "vanilla", 0)
    with pytest.raises(ValueError, match="class indices"):
        saliency.compute(model, x, "vanilla", 5)


def test_each_method_takes_only_its_own_settings(linear):
    model, _, x = linear
    with pytest.raises(ValueError, match="unknown settings"):
        saliency.compute(model, x, "vanilla", 0, smooth_samples=3)
    with pytest.raises(ValueError, match="layer"):  # the message lists what the method takes
        saliency.compute(model, x, "gradcam", 0, ig_steps=3)
    res = saliency.explainer(model, "integrated_gradients", ig_steps=4).explain(x, 0)
    assert res.settings["ig_steps"] == 4 and res.settings["targets"] == [0, 0]
    assert set(saliency.NAMES) == set(saliency.METHODS)


def test_integrated_gradients_takes_one_baseline_per_image_across_batches(linear):
    """A per-image baseline (n, H, W, C) must follow its image into every batch (bug: it was
    broadcast to the whole batch, which fails as soon as n > batch_size)."""
    model, w, x = linear
    x = np.concatenate([x, x[::-1], x])  # 6 images, batches of 4 and 2
    baseline = np.random.default_rng(3).uniform(0, 1, x.shape).astype(np.float32)
    ig = saliency.compute(model, x, "integrated_gradients", 0, ig_steps=4, baseline=baseline,
                          batch_size=4)
    expected = (w[None, ..., 0] * (x - baseline)).sum(-1)  # exact for a linear model
    np.testing.assert_allclose(ig.raw, expected, rtol=1e-4, atol=1e-5)
    one = saliency.compute(model, x, "integrated_gradients", 0, ig_steps=4,
                           baseline=baseline[0], batch_size=4)  # one (H, W, C) baseline for all
    np.testing.assert_allclose(one.raw, (w[None, ..., 0] * (x - baseline[0])).sum(-1),
                               rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- perturbation methods
def test_occlusion_with_one_pixel_patches_of_a_linear_model_is_weight_times_change(linear):
    """Hiding pixel (i, j) of a linear model changes logit k by w_ijk . (x_ij - fill), exactly."""
    model, w, x = linear
    for k in range(3):
        zero = saliency.compute(model, x, "occlusion", k, patch=1, stride=1, fill=0.0).raw
        np.testing.assert_allclose(zero, (w[None, ..., k] * x).sum(-1), rtol=1e-4, atol=1e-5)
    mean = saliency.compute(model, x, "occlusion", 2, patch=1, stride=1).raw  # fill="mean"
    change = x - x.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(mean, (w[None, ..., 2] * change).sum(-1), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="fill"):
        saliency.compute(model, x, "occlusion", 0, fill="black")


@pytest.fixture(scope="module")
def read_region():
    """p = sigmoid(10 (mean of a 4 x 4 square - 0.5)) on 16 x 16 images whose square is bright."""
    from helpers import linear_model as linear

    region = np.zeros((16, 16), bool)
    region[3:7, 9:13] = True
    model = linear(region / region.sum() * 10.0, "sigmoid", bias=-5.0)
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 0.5, (3, 16, 16, 1)).astype(np.float32)
    x[:, region] = rng.uniform(0.6, 1.0, (3, region.sum(), 1))
    return model, x, region


def test_occlusion_is_high_in_the_read_region_and_zero_beyond_a_patch_of_it(read_region):
    from scipy import ndimage

    model, x, region = read_region
    res = saliency.compute(model, x, "occlusion", 1, patch=4, stride=2)
    one_by_one = saliency.compute(model, x, "occlusion", 1, patch=4, stride=2, batch_size=1)
    np.testing.assert_allclose(res.raw, one_by_one.raw, rtol=1e-5, atol=1e-6)  # batching only
    reach = ndimage.binary_dilation(region, np.ones((7, 7), bool))  # patches touching the region
    for occ in res.raw:
        assert occ[region].min() > 0 and region[np.unravel_index(occ.argmax(), occ.shape)]
        assert np.abs(occ[~reach]).max() < 1e-6  # patches that miss the region change nothing
    negative = saliency.compute(model, x, "occlusion", 0, patch=4, stride=2).raw
    np.testing.assert_allclose(negative, -res.raw, rtol=1e-5, atol=1e-6)  # logit of "not p": -z
    assert res.settings["patch"] == 4 and saliency.METHODS["occlusion"].signed


def test_shap_partition_is_seeded_adds_up_and_ranks_the_read_region_first(read_region):
    from scipy import ndimage

    model, x, region = read_region
    a = saliency.compute(model, x, "shap", 1, max_evals=300).raw
    b = saliency.compute(model, x, "shap", 1, max_evals=300, batch_size=7).raw
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # seeded; images per chunk only
    # Owen values add up to score(image) - score(all hidden = box-blurred by half the side)
    logits = saliency.logit_model(model)
    hidden = ndimage.uniform_filter(x, size=(1, 8, 8, 1), mode="mirror")
    gap = (logits(x) - logits(hidden)).numpy()[:, 0]
    np.testing.assert_allclose(a.sum((1, 2)), gap, rtol=1e-4)
    # shap splits the image in halves down to 2 x 2 cells; the square (odd rows and columns)
    # straddles cells, whose credit is shared by all their pixels: the 16 best pixels lie in or
    # next to the square, and per pixel the square holds far more than the rest
    near = ndimage.binary_dilation(region, np.ones((3, 3), bool))
    for m in a:
        assert near.ravel()[np.argsort(-m.ravel())[:16]].all()
        assert m[region].mean() > 8 * np.abs(m[~region]).mean()


def test_large_inputs_are_predicted_in_smaller_calls_with_the_same_maps(read_region, monkeypatch):
    """A model call holds at most MODEL_CALL_VALUES input values (VGG16: 13 photos, not 64)."""
    model, x, _ = read_region
    vgg_sized = keras.Sequential([keras.Input((224, 224, 3)), keras.layers.GlobalAveragePooling2D()])
    assert saliency.copies_per_call(vgg_sized, 64) == saliency.MODEL_CALL_VALUES // (224 * 224 * 3) == 13
    assert saliency.copies_per_call(vgg_sized, 8) == 8 and saliency.copies_per_call(model, 64) == 64
    any_size = keras.Sequential([keras.Input((None, None, 3)), keras.layers.GlobalAveragePooling2D()])
    assert saliency.copies_per_call(any_size, 64) == 64  # unknown input size: the caller's batch
    settings = {"occlusion": {"patch": 4, "stride": 2}, "shap": {"max_evals": 100}}
    before = {m: saliency.compute(model, x, m, 1, **s).raw for m, s in settings.items()}
    calls, predict = [], keras.Model.predict_on_batch
    monkeypatch.setattr(saliency, "MODEL_CALL_VALUES", 3 * 16 * 16)  # 3 copies per call
    monkeypatch.setattr(keras.Model, "predict_on_batch",
                        lambda self, b: calls.append(len(b)) or predict(self, b))
    for m, s in settings.items():
        calls.clear()
        after = saliency.compute(model, x, m, 1, **s).raw
        np.testing.assert_allclose(after, before[m], rtol=1e-5, atol=1e-6, err_msg=m)
        assert calls and max(calls) <= 3, (m, calls)


_SHAP_RUN = """
import json, sys
import numpy as np
import course_utils
course_utils.import_tensorflow_quietly()
import keras
from course_utils import saliency
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1, activation="sigmoid")])
x = np.random.default_rng(0).random((3, 16, 16, 1)).astype(np.float32)
raw = saliency.compute(model, x, "shap", 1, max_evals=64).raw
import shap
try:  # shap 0.51 (Python 3.11) compiles its helpers with numba; 0.52+ has no numba helpers
    from numba.core.dispatcher import Dispatcher
    jit = isinstance(shap.utils._masked_model._build_fixed_single_output, Dispatcher)
except (ImportError, AttributeError):
    jit = None
print(json.dumps({"jit": jit, "maps": raw.tolist()}))
"""


def test_shap_gives_the_same_maps_with_numbas_jit_off_in_fast_mode_and_on_in_full_mode(tmp_path):
    """Fast mode imports shap's numba helpers as plain Python (no 7 s compile per kernel)."""
    import json
    import os
    import subprocess
    import sys

    out = {}
    for fast in ("1", "0"):
        env = os.environ | {"COURSE_FAST": fast, "COURSE_OFFLINE": "1", "COURSE_DATA_DIR": str(tmp_path),
                            "TF_CPP_MIN_LOG_LEVEL": "3"}
        run = subprocess.run([sys.executable, "-c", _SHAP_RUN], env=env, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        out[fast] = json.loads(run.stdout.strip().splitlines()[-1])
    if out["0"]["jit"] is None:  # a shap without numba helpers: nothing is switched
        assert out["1"]["jit"] is None
    else:
        assert out["1"]["jit"] is False and out["0"]["jit"] is True
    plain, compiled = np.array(out["1"]["maps"]), np.array(out["0"]["maps"])
    assert plain.shape == (3, 16, 16) and np.abs(plain).max() > 0
    np.testing.assert_allclose(plain, compiled, rtol=1e-6, atol=1e-12)
