"""Sanity checks of maps, similarity measures, model variants and noise stability."""
from __future__ import annotations

import functools

import keras
import numpy as np
import pandas as pd
import pytest
from helpers import linear_model

from course_utils import data, metrics, models, plots, saliency, sanity

S = 32  # image side of the tiny CNNs


@pytest.fixture(scope="module")
def cnn():
    return models.build_cxr_cnn(S, seed=0, width=4)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 1, (6, S, S, 1)).astype(np.float32)


def _weights(model: keras.Model) -> list[np.ndarray]:
    return [np.array(w, copy=True) for w in model.get_weights()]


# ------------------------------------------------------------------ similarity
def test_a_map_is_perfectly_similar_to_itself():
    a = np.random.default_rng(1).normal(size=(3, 12, 12))
    for name, values in metrics.similarities(a, a).items():
        np.testing.assert_allclose(values, 1.0, err_msg=name)


def test_sign_flip_counts_only_for_signed_spearman():
    a = np.random.default_rng(2).normal(size=(2, 10, 10))
    sim = metrics.similarities(a, -a)
    np.testing.assert_allclose(sim["spearman"], -1.0)
    np.testing.assert_allclose(sim["spearman_abs"], 1.0)
    np.testing.assert_allclose(sim["ssim"], 1.0)  # SSIM compares |maps|


def test_random_pairs_are_distinct_seeded_and_cover_the_images():
    i, j = metrics.random_pairs(5, n_pairs=400, seed=3)
    assert i.shape == j.shape == (400,) and (i != j).all()
    assert set(i) == set(j) == set(range(5))
    again = metrics.random_pairs(5, n_pairs=400, seed=3)
    np.testing.assert_array_equal(i, again[0])
    np.testing.assert_array_equal(j, again[1])
    with pytest.raises(ValueError, match="at least 2"):
        metrics.random_pairs(1)


def test_random_pair_baseline_is_one_for_identical_images_and_near_zero_for_noise():
    same = np.broadcast_to(np.random.default_rng(4).normal(size=(9, 9)), (6, 9, 9))
    for values in metrics.random_pair_baseline(same, n_pairs=20).values():
        np.testing.assert_allclose(values, 1.0)
    noise = np.random.default_rng(5).normal(size=(20, 16, 16))
    base = metrics.random_pair_baseline(noise, n_pairs=30)
    assert abs(base["spearman"].mean()) < 0.05 and base["ssim"].mean() < 0.2


def test_map_agreement_tables_each_comparison_beside_the_baseline():
    rng = np.random.default_rng(7)
    ref = {"vanilla": rng.normal(size=(8, 10, 10))}
    others = {"same": {"vanilla": ref["vanilla"].copy()},
              "noise": {"vanilla": rng.normal(size=(8, 10, 10))}}
    table = sanity.map_agreement(ref, others, n_pairs=20, n_boot=50)
    assert set(table.columns) == {"method", "comparison", "measure", "mean", "lo", "hi"}
    assert len(table) == 3 * 2 and set(table["method"]) == {"vanilla"}
    assert set(plots.named(table)["measure"]) == {"SSIM", "Spearman (abs)"}
    t = plots.named(table).set_index(["comparison", "measure"])["mean"]
    assert t[("same", "SSIM")] == pytest.approx(1) and t[("same", "Spearman (abs)")] == pytest.approx(1)
    assert abs(t[("noise", "Spearman (abs)")]) < 0.1 and abs(t[("random pairs", "Spearman (abs)")]) < 0.1
    assert (table["lo"] <= table["mean"] + 1e-12).all() and (table["mean"] <= table["hi"] + 1e-12).all()


# ------------------------------------------------------------------ rendering
def test_render_variants_keep_ranks_but_change_the_picture():
    m = np.random.default_rng(6).lognormal(size=(40, 40))
    v = plots.render_variants(m)
    assert set(v) == {"min-max", "clip at 99th pct", "square root", "log", "top 5 %", "Otsu"}
    for name, img in v.items():
        assert img.shape == m.shape and img.min() >= 0 and img.max() <= 1, name
    stack = lambda k: v[k][None].astype(np.float64)  # noqa: E731
    for name in ("square root", "log"):  # strictly monotone: the same ranks
        np.testing.assert_allclose(metrics.spearman_maps(stack("min-max"), stack(name)), 1.0)
    assert v["top 5 %"].mean() == pytest.approx(0.05, abs=0.002)
    # ...yet the share of "hot" pixels (> 0.5) differs between renderings of the same map
    hot = {k: (img > 0.5).mean() for k, img in v.items()}
    assert hot["log"] > 5 * hot["min-max"]
    with pytest.raises(ValueError, match="one"):
        plots.render_variants(np.zeros((2, 4, 4)))


# ------------------------------------------------------------------ randomisation
def test_randomising_every_layer_changes_outputs_and_restores_the_weights(images):
    cnn = models.build_cxr_cnn(S, seed=0, width=4)
    for layer in cnn.layers:  # a "trained" model: biases are not at their initial zeros
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(np.full(layer.bias.shape, 0.01, np.float32))
    before, p0 = _weights(cnn), models.predict_p(cnn, images)
    kernels = {n: cnn.get_layer(n).get_weights()[0].copy() for n in sanity.CASCADE_LAYERS}
    with sanity.randomised_layers(cnn, sanity.CASCADE_LAYERS, seed=1) as randomised:
        assert randomised is cnn
        p1 = models.predict_p(cnn, images)
        for name in sanity.CASCADE_LAYERS:  # every kernel redrawn, every bias back to zero
            kernel, bias = cnn.get_layer(name).get_weights()
            assert not np.array_equal(kernel, kernels[name]) and not bias.any()
    assert np.abs(p1 - p0).max() > 1e-3
    for a, b in zip(before, cnn.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(models.predict_p(cnn, images), p0)


def test_randomisation_restores_the_weights_after_an_error(cnn):
    before = _weights(cnn)
    with pytest.raises(RuntimeError, match="boom"):
        with sanity.randomised_layers(cnn, ["dense"]):
            raise RuntimeError("boom")
    for a, b in zip(before, cnn.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_randomisation_is_seeded_per_layer_and_uses_the_layers_initializers(cnn):
    with sanity.randomised_layers(cnn, ["p_covid"], seed=7):
        first = _weights(cnn.get_layer("p_covid"))
    with sanity.randomised_layers(cnn, ["p_covid", "dense"], seed=7):  # cumulative cascade step
        second = _weights(cnn.get_layer("p_covid"))
        dense_kernel, dense_bias = cnn.get_layer("dense").get_weights()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(dense_bias, 0.0)  # zeros: the bias initializer
    limit = np.sqrt(6 / sum(dense_kernel.shape))  # Glorot uniform bound
    assert np.abs(dense_kernel).max() <= limit and dense_kernel.std() > limit / 3
    with sanity.randomised_layers(cnn, ["p_covid"], seed=8):
        assert not np.array_equal(cnn.get_layer("p_covid").get_weights()[0], first[0])


def test_randomising_a_layer_without_weights_is_refused(cnn):
    before = _weights(cnn)
    with pytest.raises(ValueError, match="no weights"):
        with sanity.randomised_layers(cnn, ["dense", "pool1"]):
            pass
    for a, b in zip(before, cnn.get_weights()):
        np.testing.assert_array_equal(a, b)


def _two_unit_model(w1: np.ndarray, w2: np.ndarray) -> keras.Model:
    """x (4, 4, 1) -> flatten -> Dense(k, relu, no bias) -> Dense(1, sigmoid, no bias)."""
    inputs = keras.Input((4, 4, 1))
    hidden = keras.layers.Dense(w1.shape[1], activation="relu", use_bias=False)
    out = keras.layers.Dense(1, activation="sigmoid", use_bias=False)
    model = keras.Model(inputs, out(hidden(keras.layers.Flatten()(inputs))))
    hidden.set_weights([w1])
    out.set_weights([w2[:, None]])
    return model


def test_guided_backprop_passes_only_positive_gradients_through_relus():
    rng = np.random.default_rng(8)
    x = rng.uniform(0.1, 1, (1, 4, 4, 1)).astype(np.float32)
    flat = x.reshape(-1)
    w1 = rng.normal(size=(16, 4)).astype(np.float32)
    w1[:, 3] = -np.abs(w1[:, 3])  # unit 3 is never active for x > 0
    for k in range(3):  # units 0-2 are active
        w1[:, k] *= np.sign(flat @ w1[:, k])
    w2 = np.array([1.5, -2.0, 0.5, 3.0], np.float32)  # unit 1 active but with a negative gradient
    model = _two_unit_model(w1, w2)
    active = flat @ w1 > 0
    np.testing.assert_array_equal(active, [True, True, True, False])
    guided = saliency.compute(model, x, "guided_backprop", 1).raw[0].reshape(-1)
    np.testing.assert_allclose(guided, np.abs(w1[:, [0, 2]] @ w2[[0, 2]]), rtol=1e-5)
    vanilla = saliency.compute(model, x, "vanilla", 1).raw[0].reshape(-1)
    np.testing.assert_allclose(vanilla, np.abs(w1[:, :3] @ w2[:3]), rtol=1e-5)
    # explaining the other class flips the incoming gradient: now only unit 1 passes
    other = saliency.compute(model, x, "guided_backprop", 0).raw[0].reshape(-1)
    np.testing.assert_allclose(other, np.abs(w1[:, 1] * w2[1]), rtol=1e-5)
    assert model.layers[2].activation is keras.activations.relu  # the original is untouched


def test_guided_backprop_sees_the_current_weights(cnn, images):
    before = saliency.compute(cnn, images[:2], "guided_backprop", 1).raw
    assert before.shape == (2, S, S) and (before >= 0).all()
    with sanity.randomised_layers(cnn, ["p_covid"], seed=3):
        during = saliency.compute(cnn, images[:2], "guided_backprop", 1).raw
    assert not np.allclose(before, during)
    np.testing.assert_allclose(saliency.compute(cnn, images[:2], "guided_backprop", 1).raw, before, rtol=1e-5)


def test_the_registry_runs_every_method_through_one_explainer_shape(cnn, images):
    settings = {"smoothgrad": {"smooth_samples": 2}, "integrated_gradients": {"ig_steps": 4},
                "scorecam": {"score_max_n": 4}, "occlusion": {"patch": 8}, "shap": {"max_evals": 60}}
    for method in saliency.METHODS:
        explain = saliency.explainer(cnn, method, **settings.get(method, {}))
        maps = explain(images[:2], 1)
        assert maps.shape == (2, S, S) and np.isfinite(maps).all(), method
        np.testing.assert_array_equal(maps, saliency.compute(cnn, images[:2], method, 1,
                                                             **settings.get(method, {})).raw)
    with pytest.raises(ValueError, match="unknown method"):
        saliency.explainer(cnn, "lime")


def test_cascading_randomisation_starts_at_one_and_restores_the_model(cnn, images):
    before = _weights(cnn)
    explain = {m: saliency.explainer(cnn, m) for m in ("vanilla", "guided_backprop")}
    res = sanity.cascading_randomisation(cnn, explain, images, 1, n_examples=2, n_pairs=10,
                                         n_boot=20)
    assert res.steps == ["original", "p_covid", "+dense", "+last_conv", "+conv3", "+conv2", "+conv1"]
    first = res.scores[res.scores["step"] == "original"]
    np.testing.assert_allclose(first["mean"], 1.0)
    assert len(res.scores) == 2 * 7 * 3
    assert res.examples["vanilla"].shape == (7, 2, S, S) and res.p.shape == (7, len(images))
    assert not np.allclose(res.p[0], res.p[-1])
    ok = res.scores.dropna(subset=["mean"])
    assert ((ok["mean"] >= -1) & (ok["mean"] <= 1) & (ok["lo"] <= ok["mean"] + 1e-12)).all()
    verdict = res.verdict()
    assert list(verdict.index) == ["vanilla", "guided_backprop"]  # ids; names are for display
    assert verdict[("ssim", "passes")].dtype == bool
    assert list(plots.named(verdict).index) == ["Vanilla gradient", "Guided backprop"]
    scores = res.scores.set_index(["method", "step", "measure"])["mean"]
    for method in ("vanilla", "guided_backprop"):
        at = scores[(method, "+dense", "ssim")]
        head = res.verdict(by_step="+dense").loc[method, "ssim"]
        assert head["at step"] == at
        assert head["passes"] == (at < res.baseline[method]["ssim"])
    with pytest.raises(ValueError, match="by_step"):
        res.verdict(by_step="original")
    for a, b in zip(before, cnn.get_weights()):
        np.testing.assert_array_equal(a, b)



# ------------------------------------------------------------------ other architecture
@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_pooled_cnn_is_functional_with_a_gradcam_layer_and_a_sigmoid(pooling):
    m = models.build_pooled_cnn(S, seed=0, widths=(4, 8, 8), pooling=pooling)
    assert m.output_shape == (None, 1) and isinstance(m, keras.Model)
    assert m.get_layer("last_conv").filters == 8 and m.get_layer(f"global_{pooling}")
    assert not any(isinstance(layer, keras.layers.Flatten) for layer in m.layers)
    assert m.layers[-1].activation is keras.activations.sigmoid
    x = np.random.default_rng(1).uniform(0, 1, (2, S, S, 1)).astype(np.float32)
    cam = saliency.compute(m, x, "gradcam", 1, layer="last_conv")
    assert cam.raw.shape == (2, S, S)
    with pytest.raises(ValueError, match="pooling"):
        models.build_pooled_cnn(S, pooling="sum")


def test_global_max_pooling_output_depends_only_on_the_strongest_location():
    m = models.build_pooled_cnn(S, seed=0, widths=(4, 4), pooling="max")
    x = np.zeros((1, S, S, 1), np.float32)
    x[0, 5:9, 5:9] = 1.0  # one bright square...
    moved = np.roll(x, (12, 12), axis=(1, 2))  # ...moved elsewhere (conv1 -> pool -> last_conv)
    np.testing.assert_allclose(m.predict(x, verbose=0), m.predict(moved, verbose=0), rtol=1e-5)


def test_variant_training_is_cached_and_reloaded():
    small = data.load_course_cxr(image_size=64, seed=3, n=160)
    first = models.load_or_train_cxr_model(small, architecture="global_max", epochs=1)
    again = models.load_or_train_cxr_model(small, architecture="global_max", epochs=1)
    assert first.trained_now and not again.trained_now and first.path == again.path
    assert first.path.name.startswith("cxr_global_max_phantom_")
    x, _ = small.split("test")
    np.testing.assert_allclose(models.predict_p(first.model, x), models.predict_p(again.model, x),
                               rtol=1e-5)
    other = models.load_or_train_cxr_model(small, architecture="cnn", epochs=1)
    assert other.path != first.path and other.model.get_layer("dense") is not None
    with pytest.raises(ValueError, match="unknown architecture"):
        models.load_or_train_cxr_model(small, architecture="resnet", epochs=1)


# ------------------------------------------------------------------ noise
def test_noise_stability_of_unchanged_images_is_one(cnn, images):
    explain = {m: saliency.explainer(cnn, m) for m in ("vanilla", "gradcam")}
    table = sanity.noise_stability(explain, images, images.copy(), 1, n_pairs=10)
    assert list(table.index) == ["vanilla", "gradcam"]
    np.testing.assert_allclose(table[("spearman", "clean vs noisy")], 1.0)
    np.testing.assert_allclose(table[("ssim", "clean vs noisy")], 1.0)
    assert (table[("spearman_abs", "random pairs")] < 1).all()
    assert (table[("time", "seconds per image")] > 0).all()
    # precomputed clean maps are used as given (here: deliberately wrong ones, so it shows)
    fake = {"vanilla": np.random.default_rng(3).uniform(size=(len(images), S, S))}
    vanilla = {"vanilla": explain["vanilla"]}
    reused = sanity.noise_stability(vanilla, images, images.copy(), 1, clean_maps=fake, n_pairs=10)
    assert reused.loc["vanilla", ("spearman", "clean vs noisy")] < 0.5
    with pytest.raises(ValueError, match="shape"):
        sanity.noise_stability(vanilla, images, images.copy(), 1,
                               clean_maps={"vanilla": fake["vanilla"][:2]})


def test_smoothgrad_curve_of_a_linear_model_is_perfectly_stable():
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.Flatten()(inputs)))
    x = np.random.default_rng(2).uniform(0, 1, (3, 8, 8, 1)).astype(np.float32)
    curve = sanity.smoothgrad_curve(model, x, 1, samples=(1, 3), noisy_images=x[::-1].copy())
    assert list(curve.index) == [1, 3]
    np.testing.assert_allclose(curve["run to run"], 1.0)  # the gradient is the same everywhere
    np.testing.assert_allclose(curve["clean vs noisy"], 1.0)
    with pytest.raises(ValueError, match=">= 1"):
        sanity.smoothgrad_curve(model, x, 1, samples=(0,))


def test_smoothgrad_curve_of_a_relu_cnn_gets_more_stable_with_more_samples(cnn, images):
    curve = sanity.smoothgrad_curve(cnn, images, 1, samples=(1, 16))
    assert curve.loc[16, "run to run"] > curve.loc[1, "run to run"]


# ------------------------------------------------------------------ the notebook's plots
def _saved(fig, tmp_path, name) -> bool:
    import matplotlib.pyplot as plt

    from course_utils import plots

    path = tmp_path / f"{name}.png"
    plots.save(fig, path)
    plt.close(fig)
    return path.stat().st_size > 1000


def test_notebook_04_plots_draw_what_they_are_given(cnn, images, tmp_path):
    import matplotlib

    matplotlib.use("Agg")

    variants = plots.render_variants(np.random.default_rng(0).lognormal(size=(S, S)))
    fig = plots.rendering_panels(images[0], {k: (v, "inferno") for k, v in variants.items()},
                                 outlines={"lungs": variants["Otsu"] > 0})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["image", "min-max", "clip at 99th pct"]
    assert _saved(fig, tmp_path, "renderings")

    ref = {"vanilla": saliency.explainer(cnn, "vanilla")(images, 1)}
    table = sanity.map_agreement(ref, {"same": ref}, n_pairs=5, n_boot=10)
    fig = plots.similarity_bars(table)
    assert [ax.get_title() for ax in fig.axes] == ["Spearman (abs)", "SSIM"]
    assert len(fig.axes[0].patches) == 2  # one bar per comparison for one method
    assert _saved(fig, tmp_path, "bars")

    explain = {m: saliency.explainer(cnn, m) for m in ("vanilla", "gradcam")}
    res = sanity.cascading_randomisation(cnn, explain, images, 1,
                                         layer_names=["p_covid", "dense"], n_pairs=5, n_boot=10)
    fig = plots.randomisation_curves(res, ncols=2)
    assert [ax.get_title() for ax in fig.axes] == ["Vanilla gradient", "Grad-CAM"]
    assert len(fig.axes[0].lines) == 3 + 3 + 1  # 3 curves, 3 baselines, the zero line
    assert _saved(fig, tmp_path, "cascade")

    curve = sanity.smoothgrad_curve(cnn, images[:2], 1, samples=(1, 2), noisy_images=images[:2])
    fig = plots.smoothgrad_curve(curve, reference={"vanilla": 0.5})
    assert len(fig.axes) == 2 and _saved(fig, tmp_path, "curve")

    imp = pd.DataFrame({"a": [3.0, 1.0, 2.0], "b": [0.1, 0.3, 0.2]}, index=["x", "y", "z"])
    fig = plots.importance_bars(imp, top=2)
    ax = fig.axes[0]
    where = {t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks())}
    assert set(where) == {"x", "z"} and where["x"] > where["z"]  # the two largest, largest on top
    assert _saved(fig, tmp_path, "importance")


# ------------------------------------------------------------------ shifts and rotations
def _smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    from scipy import ndimage

    x = np.random.default_rng(seed).uniform(0, 1, (n, size, size, 1))
    x = ndimage.gaussian_filter(x, (0, 1.5, 1.5, 0))
    return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)


def _equivariant_cnn(size: int) -> keras.Model:
    """ReLU convolution -> global average -> sigmoid: translation-equivariant maps in the interior."""
    init = keras.initializers.GlorotUniform(seed=3)
    inputs = keras.Input((size, size, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer=init,
                            bias_initializer=keras.initializers.Constant(-0.2))(inputs)
    out = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=init)(
        keras.layers.GlobalAveragePooling2D()(h))
    return keras.Model(inputs, out)


def _square_model(size: int) -> keras.Model:
    """logit = w * mean(x^2): its gradient is 2 w x / size^2, a copy of the image."""
    inputs = keras.Input((size, size, 1))
    squared = keras.layers.Multiply()([inputs, inputs])
    dense = keras.layers.Dense(1, activation="sigmoid", use_bias=False)
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(squared)))
    dense.set_weights([np.full((1, 1), 3.0, np.float32)])
    return model


def test_move_shifts_exactly_rotates_counter_clockwise_and_copies_the_edge():
    x = np.random.default_rng(0).uniform(0, 1, (2, 12, 12, 1)).astype(np.float32)
    moved = sanity.move(x, shift=3)
    np.testing.assert_array_equal(moved[:, 3:, 3:], x[:, :-3, :-3])  # 3 px down and right
    np.testing.assert_array_equal(moved[:, 0, 0], x[:, 0, 0])  # the entering strip copies the edge
    np.testing.assert_array_equal(sanity.move(moved, shift=-3)[:, 3:-3, 3:-3], x[:, 3:-3, 3:-3])
    quarter = sanity.move(x[..., 0], angle=90)  # maps (n, H, W) too
    np.testing.assert_allclose(quarter, np.rot90(x[..., 0], 1, axes=(1, 2)), atol=1e-5)
    np.testing.assert_array_equal(sanity.move(x), x)
    for bad in ({"shift": 1.5}, {"shift": True}, {"shift": 1, "angle": 2.0}):
        with pytest.raises(ValueError):
            sanity.move(x, **bad)
    with pytest.raises(ValueError, match="shape"):
        sanity.move(x[0, ..., 0], shift=1)


def test_move_margin_covers_the_largest_shift_and_the_rotated_corners():
    assert sanity.move_margin(128, shifts=(1, 2, 4)) == 4
    # a square of side 128 / (cos 5° + sin 5°) = 118.1 fits in the rotated one: 5 px, + 1
    assert sanity.move_margin(128, angles=(2, 5)) == 6
    assert sanity.move_margin(128, shifts=(8,), angles=(5,)) == 8
    assert sanity.move_margin(64) == 0


def test_maps_of_a_translation_equivariant_model_follow_a_shift_exactly():
    size = 24
    model = _equivariant_cnn(size)
    x = _smooth_images(5, size, seed=1)
    # the map at a pixel depends on the image within 2 px (two 3 x 3 steps): leave 2 px more out
    res = sanity.shift_rotation_stability({"vanilla": saliency.explainer(model, "vanilla")}, model,
                                          x, 1, shifts=(1, 3), angles=(), border=2, n_pairs=10,
                                          n_boot=20)
    assert res.moves == ["shift 1 px", "shift 3 px"] and res.margin == 5
    for move in res.moves:
        v = res.verdict(move)
        assert v.loc["vanilla", "moved back"] == pytest.approx(1, abs=1e-6)
        assert v.loc["vanilla", "interpolation only"] == pytest.approx(1)
        assert v.loc["vanilla", "left in place"] < 0.9  # it did move with the image...
        assert v.loc["vanilla", "kept"] == pytest.approx(1, abs=1e-6) and v.loc["vanilla", "follows"]
    assert res.table().loc["vanilla", "shift 3 px"] == pytest.approx(1, abs=1e-6)
    assert res.examples["vanilla"]["original"].shape == (2, size, size)
    # ...while the prediction barely changes: global averaging sees nearly the same features
    assert res.p.loc["shift 1 px", "mean |Δp|"] < 0.02 and res.p["flipped"].dtype.kind == "i"


def test_maps_of_a_fixed_weight_linear_model_stay_put_when_the_image_moves():
    size = 16
    w = np.random.default_rng(2).normal(size=(size, size))
    model = linear_model(w)
    x = _smooth_images(6, size, seed=3)
    res = sanity.shift_rotation_stability({"vanilla": saliency.explainer(model, "vanilla")}, model,
                                          x, 1, shifts=(2,), angles=(5,), n_pairs=10, n_boot=20)
    for move in res.moves:
        v = res.verdict(move).loc["vanilla"]
        # every map is |w|, wherever the image is: left in place it matches, moved back it does not
        assert v["left in place"] == pytest.approx(1) and v["random pairs"] == pytest.approx(1)
        assert v["moved back"] < 0.9 and not v["follows"] and np.isnan(v["kept"])
    # a 5° turn moves central pixels by under a pixel, a 2 px shift moves all of them by 2
    assert res.verdict("shift 2 px").loc["vanilla", "moved back"] < 0.3
    p0 = models.predict_p(model, x)
    dp = np.abs(models.predict_p(model, sanity.move(x, shift=2)) - p0)
    assert res.p.loc["shift 2 px", "mean |Δp|"] == pytest.approx(dp.mean(), rel=1e-5)
    assert res.p.loc["shift 2 px", "mean |Δp|"] > 0  # the prediction changes: another question


def test_rotation_is_judged_against_the_interpolation_ceiling():
    size = 32
    model = _square_model(size)
    x = _smooth_images(5, size, seed=4)
    explain = {"vanilla": saliency.explainer(model, "vanilla")}
    res = sanity.shift_rotation_stability(explain, model, x, 1, shifts=(2,), angles=(5,),
                                          n_pairs=10, n_boot=20)
    v = res.verdict("rotate 5°")
    # the map is a copy of the image, so it follows a rotation as far as interpolation allows
    np.testing.assert_allclose(v["moved back"], v["interpolation only"], atol=2e-3)
    assert v.loc["vanilla", "interpolation only"] < 1 and v.loc["vanilla", "follows"]
    assert res.verdict("shift 2 px").loc["vanilla", "moved back"] == pytest.approx(1, abs=1e-6)
    # precomputed maps of the unmoved images are reused; wrong shapes and moves are refused
    original = explain["vanilla"](x, 1)
    again = sanity.shift_rotation_stability(explain, model, x, 1, shifts=(2,), angles=(),
                                            clean_maps={"vanilla": original}, n_boot=20)
    np.testing.assert_array_equal(again.examples["vanilla"]["original"], original[:2])
    with pytest.raises(ValueError, match="shape"):
        sanity.shift_rotation_stability(explain, model, x, 1, clean_maps={"vanilla": original[:2]})
    with pytest.raises(ValueError, match="7 x 7"):
        sanity.shift_rotation_stability(explain, model, x, 1, shifts=(13,), angles=())
    with pytest.raises(ValueError, match="at least one"):
        sanity.shift_rotation_stability(explain, model, x, 1, shifts=(), angles=())
    with pytest.raises(ValueError, match="move must be"):
        res.verdict("rotate 90°")


# ------------------------------------------------------------------ data randomisation
def test_permuted_labels_shuffle_the_training_labels_only():
    d = data.load_course_cxr(image_size=64, n=300, source="phantom")
    p = data.with_permuted_labels(d, seed=1)
    train, test = d.train_idx, d.test_idx
    np.testing.assert_array_equal(p.labels[test], d.labels[test])  # the test set stays true
    assert sorted(p.labels[train]) == sorted(d.labels[train])  # the same classes, same shares...
    assert 0.3 < (p.labels[train] == d.labels[train]).mean() < 0.8  # ...no longer on their images
    assert p.images is d.images and p.fingerprint != d.fingerprint and p.phantom_set is None
    np.testing.assert_array_equal(data.with_permuted_labels(d, seed=1).labels, p.labels)
    assert data.with_permuted_labels(d, seed=2).fingerprint != p.fingerprint


def test_data_randomisation_passes_maps_that_changed_and_fails_maps_that_did_not():
    rng = np.random.default_rng(9)
    common = rng.normal(size=(12, 12))  # what every map of the real model shares
    real = common + 0.5 * rng.normal(size=(10, 12, 12))
    other = rng.normal(size=(12, 12)) + 0.5 * rng.normal(size=(10, 12, 12))
    table = sanity.data_randomisation({"same": real, "changed": real},
                                      {"same": real.copy(), "changed": other},
                                      n_pairs=20, n_boot=50)
    assert list(table.index) == ["same", "changed"]
    assert table.loc["same", ("ssim", "permuted labels")] == pytest.approx(1)
    assert not table.loc["same", ("spearman_abs", "passes")]
    assert table.loc["changed", ("spearman_abs", "passes")] and table.loc["changed", ("ssim", "passes")]
    row = table.loc["changed", "spearman_abs"]
    assert row["lo"] <= row["permuted labels"] <= row["hi"] < row["random pairs"]
    assert (table[("maps", "constant")] == 0).all()
    blank = sanity.data_randomisation({"vanilla": real}, {"vanilla": np.zeros_like(real)}, n_boot=20)
    assert blank.loc["vanilla", ("maps", "constant")] == len(real)
    assert np.isnan(blank.loc["vanilla", ("spearman_abs", "permuted labels")])
    with pytest.raises(ValueError, match="no permuted-label maps"):
        sanity.data_randomisation({"vanilla": real}, {"gradcam": real})


def test_a_map_reference_gives_exactly_the_similarities_of_the_maps():
    from course_utils import stats

    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 16, 16)).astype(np.float32)
    a[:, :4] = 0  # ties, as a ReLU'd Grad-CAM has
    b = a + rng.standard_normal(a.shape).astype(np.float32)
    b[2] = 0.5  # a constant map: NaN Spearman
    ref = metrics.map_reference(a)
    direct = metrics.similarities(a, b)
    for measure, values in metrics.similarities(ref, b).items():
        np.testing.assert_array_equal(values, direct[measure], err_msg=measure)
    # the definitions, computed independently: Spearman = Pearson of average ranks (scipy)
    from scipy.stats import spearmanr
    rho = [spearmanr(np.abs(a[i]).ravel(), np.abs(b[i]).ravel()).statistic for i in (0, 1, 3, 4, 5)]
    np.testing.assert_allclose(direct["spearman_abs"][[0, 1, 3, 4, 5]], rho, atol=1e-12)
    assert np.isnan(direct["spearman"][2]) and np.isfinite(np.delete(direct["spearman"], 2)).all()
    np.testing.assert_allclose(metrics.similarities(ref, a)["spearman"], 1.0)
    np.testing.assert_array_equal(stats.spearman(a.reshape(6, -1), b.reshape(6, -1)), direct["spearman"])
    with pytest.raises(ValueError, match="same shape"):
        metrics.similarities(ref, b[:3])


def test_a_loaded_map_reports_the_seconds_computing_it_took_not_its_load(cnn, images, monkeypatch):
    """Cascade and move timings read a cached map's own seconds (a staged folder's maps load fast)."""
    explain = saliency.explainer(cnn, "smoothgrad", cache=True, smooth_samples=2)
    targets = np.ones(len(images), np.int64)
    first, took = sanity._timed_maps(explain, images, targets)
    real = saliency.compute

    @functools.wraps(real)  # the same name, so the same cache key
    def never(*args, **kwargs):
        pytest.fail("computed again instead of loaded")

    monkeypatch.setattr(saliency, "compute", never)
    again, took_again = sanity._timed_maps(explain, images, targets)
    np.testing.assert_array_equal(first, again)
    assert took_again == pytest.approx(took) and took > 0
    maps, wall = sanity._timed_maps(lambda x, t: np.zeros(x.shape[:3], np.float32), images, targets)
    assert maps.shape == images.shape[:3] and wall >= 0


def test_a_cached_smoothgrad_curve_loads_its_maps_and_keeps_their_computing_time(cnn, images, monkeypatch):
    """cache=True: a staged folder's curve loads every run's maps; the table is the same."""
    targets = np.ones(len(images), np.int64)
    noisy = np.clip(images + 0.01, 0, 1).astype(np.float32)
    first = sanity.smoothgrad_curve(cnn, images, targets, (1, 3), noisy_images=noisy, seed=5, cache=True)
    real = saliency.compute

    @functools.wraps(real)  # the same name, so the same cache key
    def never(*args, **kwargs):
        pytest.fail("computed again instead of loaded")

    monkeypatch.setattr(saliency, "compute", never)
    again = sanity.smoothgrad_curve(cnn, images, targets, (1, 3), noisy_images=noisy, seed=5, cache=True)
    pd.testing.assert_frame_equal(first, again)
    assert (again["seconds per image"] > 0).all()
    with pytest.raises(pytest.fail.Exception, match="computed again"):  # without cache it computes
        sanity.smoothgrad_curve(cnn, images, targets, (1,), seed=5)
