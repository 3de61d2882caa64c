"""The PSC study with explainers, the reader quiz, Max-Sensitivity and their plots.

Known answers: maps built to change exactly with p give PSC = 1 through :func:`psc.psc_study`;
an explanation that is the image itself has Max-Sensitivity 2r/sqrt(3) / mean intensity under
U(-r, r) noise; a constant explanation has Max-Sensitivity 0.
"""
from __future__ import annotations

import keras
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from helpers import SIDE as S  # noqa: E402
from helpers import tiny_mlp, trained_square_cnn  # noqa: E402

from course_utils import metrics, paper, perturb, plots, psc, saliency  # noqa: E402


def _coupled_explainer(model: keras.Model) -> psc.Explain:
    """Maps whose pixel distribution is [p, 1 - p, 0, ...]: D_sal = D_pred exactly."""

    def explain(images: np.ndarray, targets: object) -> np.ndarray:
        p = model.predict(images, verbose=0)[:, 0].astype(np.float64)
        maps = np.zeros(images.shape[:3], np.float32)
        maps[:, 0, 0], maps[:, -1, -1] = 3 * p, 3 * (1 - p)
        return maps

    return explain


def _fake_attack(method: str, n: int = 12, seed: int = 0, size: int = 8
                 ) -> tuple[np.ndarray, perturb.AttackResult]:
    """Clean images and an AttackResult with random probabilities, built without a model."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 0.8, (n, size, size, 1)).astype(np.float32)
    x_adv = np.clip(x + rng.uniform(-0.02, 0.02, x.shape), 0, 1).astype(np.float32)
    pb, pa = rng.uniform(0.05, 0.95, n).astype(np.float32), rng.uniform(0.05, 0.95, n).astype(np.float32)
    return x, perturb.AttackResult(method, 0.02, x_adv, pb, pa, np.abs(x_adv - x).max(axis=(1, 2, 3)),
                                   np.empty((0, n)), 0.0)


def _shifting_explainer(images: np.ndarray, targets: object = None) -> np.ndarray:
    """A map that moves with the image (positive everywhere): |x| + 0.1."""
    return np.abs(images[..., 0]) + 0.1


@pytest.fixture(scope="module")
def cnn() -> tuple[keras.Model, np.ndarray]:
    """The course CNN at 32 px, trained for a few seconds to tell a bright square from a dark one."""
    return trained_square_cnn()


OPTIONS = {"smoothgrad": {"smooth_samples": 3}, "integrated_gradients": {"ig_steps": 4},
           "gradcam": {"layer": "last_conv"}}


# --------------------------------------------------------------------------- explainers
def _explainers(model: keras.Model) -> dict[str, saliency.Explainer]:
    return {m: saliency.explainer(model, m, **OPTIONS.get(m, {})) for m in psc.METHODS}


def test_explainers_give_raw_maps_and_are_deterministic(cnn):
    model, x = cnn
    explain = _explainers(model)
    for method, f in explain.items():
        maps = f(x[:4], 1)
        assert maps.shape == (4, S, S) and maps.dtype == np.float32 and np.isfinite(maps).all()
        np.testing.assert_array_equal(maps, f(x[:4], 1))  # SmoothGrad re-seeded: same noise
        assert f.name == saliency.NAMES[method]
    np.testing.assert_allclose(explain["vanilla"](x[:4], 1),
                               np.abs(saliency.input_gradients(model, x[:4], 1)[..., 0]), rtol=1e-5)


def test_explainers_reject_unknown_methods_and_settings(cnn):
    model, _ = cnn
    with pytest.raises(ValueError, match="unknown method"):
        saliency.explainer(model, "lime")
    with pytest.raises(ValueError, match="unknown settings"):  # SmoothGrad's, not vanilla's
        saliency.explainer(model, "vanilla", smooth_samples=2)


# --------------------------------------------------------------------------- psc_study
def test_maps_that_change_exactly_with_p_give_psc_one_through_the_study():
    model = tiny_mlp(seed=1)
    x = np.random.default_rng(2).uniform(0, 1, (24, 8, 8, 1)).astype(np.float32)
    attack = perturb.pgd(model, x, 0.1, steps=3)
    study = psc.psc_study({"coupled": _coupled_explainer(model)}, x, attack, n_boot=200, seed=3)
    np.testing.assert_allclose(study.d_sal("coupled"), study.d_pred, rtol=1e-5, atol=1e-9)
    result = study.psc["coupled"]
    assert result.r == pytest.approx(1.0, abs=1e-6)
    assert result.ci_low == pytest.approx(1.0, abs=1e-6) and result.n == 24
    assert study.criterion == "reference" and study.name == "pgd"


def test_psc_study_shapes_determinism_and_reuse_of_the_clean_maps(cnn):
    model, x = cnn
    explain = _explainers(model)
    attack = perturb.prediction_attack(model, x, eps=0.05, steps=3)
    study = psc.psc_study(explain, x, attack, n_boot=100, seed=0)
    assert study.criterion == "sensitivity" and study.name == "prediction attack"
    assert set(study.maps_before) == set(study.maps_after) == set(study.psc) == set(psc.METHODS)
    for m in psc.METHODS:
        assert study.maps_before[m].shape == study.maps_after[m].shape == (len(x), S, S)
        r = study.psc[m]
        assert -1 <= r.r <= 1 and r.ci_low <= r.ci_high and r.d_sal.shape == (len(x),)
        np.testing.assert_array_equal(r.d_pred, study.d_pred)
    again = psc.psc_study(explain, x, attack, n_boot=100, seed=0)
    for m in psc.METHODS:
        np.testing.assert_array_equal(again.maps_after[m], study.maps_after[m])
        assert (again.psc[m].r, again.psc[m].ci_low) == (study.psc[m].r, study.psc[m].ci_low)
    calls = []
    counting = {"vanilla": lambda imgs, t: calls.append(len(imgs)) or explain["vanilla"](imgs, t)}
    reused = psc.psc_study(counting, x, attack, maps_before=study.maps_before, n_boot=100)
    assert calls == [len(x)]  # only the perturbed images were explained
    assert reused.psc["vanilla"].r == pytest.approx(study.psc["vanilla"].r)


def test_psc_study_rejects_mismatched_inputs():
    x, attack = _fake_attack("noise")
    with pytest.raises(ValueError, match="differ"):
        psc.psc_study({"m": _shifting_explainer}, x[:5], attack)
    with pytest.raises(ValueError, match="expected maps of shape"):
        psc.psc_study({"m": lambda imgs, t: imgs[..., 0][:, :4]}, x, attack)
    with pytest.raises(ValueError, match="empty"):
        psc.psc_study({}, x, attack)


# --------------------------------------------------------------------------- tables
def test_psc_table_columns_criteria_and_the_papers_numbers():
    studies = []
    for method in ("prediction_attack", "explanation_attack", "noise"):
        x, attack = _fake_attack(method, seed=len(studies))
        studies.append(psc.psc_study({"vanilla": _shifting_explainer, "mine": _shifting_explainer},
                                       x, attack, n_boot=50))
    table = psc.psc_table(studies)
    assert list(table.columns) == list(psc.COLUMNS) and len(table) == 6
    assert list(table["criterion"]) == ["sensitivity"] * 2 + ["robustness"] * 2 + ["reference"] * 2
    assert list(table["method"][:2]) == ["vanilla", "mine"]  # ids; names are applied for display
    assert list(plots.named(table)["method"][:2]) == ["Vanilla gradient", "mine"]
    sens = table[table["criterion"] == "sensitivity"].iloc[0]
    rob = table[table["criterion"] == "robustness"].iloc[0]
    assert tuple(sens[["paper max PSC", "paper CI low", "paper CI high"]]) == paper.PSC["sensitivity"]
    assert tuple(rob[["paper max PSC", "paper CI low", "paper CI high"]]) == paper.PSC["robustness"]
    assert table[table["criterion"] == "reference"]["paper max PSC"].isna().all()
    assert ((table["PSC"] >= -1) & (table["PSC"] <= 1)).all()
    assert (table["CI low"] <= table["CI high"]).all() and (table["n"] == 12).all()
    s = studies[0]
    first = table.iloc[0]
    assert first["PSC"] == s.psc["vanilla"].r
    assert first["mean D_pred"] == pytest.approx(s.d_pred.mean())
    assert first["flipped"] == pytest.approx(s.attack.flipped.mean())
    assert first["mean |Δp|"] == pytest.approx(np.abs(s.attack.p_after - s.attack.p_before).mean())


def test_imperceptibility_table():
    x, attack = _fake_attack("noise", size=16)
    study = psc.psc_study({"m": _shifting_explainer}, x, attack, n_boot=20)
    table = perturb.imperceptibility_table({s.name: (s.x, s.attack) for s in [study]})
    assert list(table.index) == ["noise"]
    assert list(table.columns) == ["eps", "max L∞", "mean PSNR (dB)", "min PSNR (dB)", "mean SSIM",
                                   "min SSIM"]
    row = table.loc["noise"]
    assert row["max L∞"] <= 0.02 + 1e-6 and row["mean PSNR (dB)"] > 30 and 0 < row["min SSIM"] <= 1
    assert row["min PSNR (dB)"] <= row["mean PSNR (dB)"]
    same = perturb.imperceptibility_table({"none": (x, perturb.random_noise(tiny_mlp(0, size=16), x, 0.0))})
    assert same.loc["none", "max L∞"] == 0 and same.loc["none", "min SSIM"] == pytest.approx(1)


# --------------------------------------------------------------------------- quiz
def _twins(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    clean = rng.uniform(0, 1, (n, 6, 6, 1)).astype(np.float32)
    return clean, np.clip(clean + 0.05, 0, 1)


def test_each_quiz_pair_holds_one_clean_and_one_perturbed_image():
    clean, perturbed = _twins()
    quiz = perturb.make_quiz(clean, perturbed, 7, kinds=[f"k{i}" for i in range(10)], seed=1)
    assert len(quiz) == 7 and quiz.left.shape == quiz.right.shape == (7, 6, 6, 1)
    assert len(set(quiz.source.tolist())) == 7  # distinct images
    for i, (src, on_right) in enumerate(zip(quiz.source, quiz.perturbed_right)):
        shown_perturbed = quiz.right[i] if on_right else quiz.left[i]
        shown_clean = quiz.left[i] if on_right else quiz.right[i]
        np.testing.assert_array_equal(shown_perturbed, perturbed[src])
        np.testing.assert_array_equal(shown_clean, clean[src])
        assert quiz.kinds[i] == f"k{src}"
    assert quiz.answers == "".join("R" if r else "L" for r in quiz.perturbed_right)
    assert abs(quiz.answers.count("R") - quiz.answers.count("L")) == 1  # balanced, odd count


def test_quiz_answers_are_reproducible_from_the_seed_and_scored():
    clean, perturbed = _twins()
    a, b = perturb.make_quiz(clean, perturbed, 6, seed=5), perturb.make_quiz(clean, perturbed, 6, seed=5)
    assert a.answers == b.answers and np.array_equal(a.source, b.source)
    np.testing.assert_array_equal(a.left, b.left)
    assert a.answers.count("R") == 3
    others = {perturb.make_quiz(clean, perturbed, 6, seed=s).answers for s in range(20)}
    assert len(others) > 5  # the seed matters
    assert a.score(a.answers) == 1.0 and a.score(a.answers.lower()) == 1.0
    flipped = "".join("L" if c == "R" else "R" for c in a.answers)
    assert a.score(flipped) == 0.0 and a.score(list(a.answers)) == 1.0
    assert a.score("LLLLLL") == 0.5  # balanced sides: a constant guess scores 50 %
    with pytest.raises(ValueError, match="one answer per pair"):
        a.score("LR")
    with pytest.raises(ValueError, match="one answer per pair"):
        a.score("LRXLRL")


def test_make_quiz_rejects_bad_inputs():
    clean, perturbed = _twins()
    with pytest.raises(ValueError, match="twin batches"):
        perturb.make_quiz(clean, perturbed[:5], 3)
    with pytest.raises(ValueError, match="n_pairs"):
        perturb.make_quiz(clean, perturbed, 11)
    with pytest.raises(ValueError, match="kinds"):
        perturb.make_quiz(clean, perturbed, 3, kinds=["a"])


# --------------------------------------------------------------------------- Max-Sensitivity
def test_max_sensitivity_of_the_image_itself_matches_the_uniform_noise_norm():
    x = np.full((3, 32, 32, 1), 0.5, np.float32)
    sens = metrics.max_sensitivity(lambda imgs, t: imgs[..., 0], x, 1, radius=0.1, n_samples=4,
                                   seed=0, clip=False)
    # ||u|| / ||x|| with u ~ U(-r, r) per pixel: sqrt(r^2 / 3) / 0.5 = 2 r / sqrt(3) (1024 pixels)
    np.testing.assert_allclose(sens.mean, 2 * 0.1 / np.sqrt(3), rtol=0.03)
    assert (sens.max >= sens.mean).all() and sens.max.shape == (3,)
    assert (sens.radius, sens.n_samples) == (0.1, 4)
    scaled = metrics.max_sensitivity(lambda imgs, t: 7 * imgs[..., 0], x, 1, radius=0.1,
                                     n_samples=4, seed=0, clip=False)
    np.testing.assert_allclose(scaled.max, sens.max, rtol=1e-5)  # invariant to the map's scale
    again = metrics.max_sensitivity(lambda imgs, t: imgs[..., 0], x, 1, radius=0.1, n_samples=4,
                                    seed=0, clip=False)
    np.testing.assert_array_equal(again.max, sens.max)  # seeded


def test_max_sensitivity_of_constant_zero_and_single_sample_explanations():
    x = np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 1)).astype(np.float32)
    const = metrics.max_sensitivity(lambda imgs, t: np.ones(imgs.shape[:3]), x, 1, n_samples=3)
    np.testing.assert_array_equal(const.max, 0.0)
    zero = metrics.max_sensitivity(lambda imgs, t: np.zeros(imgs.shape[:3]), x, 1, n_samples=2)
    assert np.isnan(zero.max).all()
    one = metrics.max_sensitivity(lambda imgs, t: imgs[..., 0] ** 2, x, 1, n_samples=1)
    np.testing.assert_array_equal(one.max, one.mean)
    seen = []
    metrics.max_sensitivity(lambda imgs, t: seen.append(imgs.copy()) or imgs[..., 0], x, 1,
                            radius=0.3, n_samples=2)
    assert len(seen) == 3 and all(s.shape == x.shape for s in seen)  # one batched call per draw
    assert all(s.min() >= 0 and s.max() <= 1 for s in seen)  # clipped to [0, 1]
    assert np.abs(seen[1] - x).max() <= 0.3 + 1e-6
    for bad in ({"radius": 0}, {"n_samples": 0}, {"n_samples": 1.5}):
        with pytest.raises(ValueError):
            metrics.max_sensitivity(lambda imgs, t: imgs[..., 0], x, 1, **bad)
    with pytest.raises(ValueError, match="batch"):
        metrics.max_sensitivity(lambda imgs, t: imgs[..., 0], x[0], 1)


def test_max_sensitivity_of_saliency_methods_on_a_cnn(cnn):
    model, x = cnn
    explain = [saliency.explainer(model, "vanilla"),
               saliency.explainer(model, "gradcam", layer="last_conv")]
    for f in explain:
        sens = metrics.max_sensitivity(f, x[:4], 1, radius=0.05, n_samples=2)
        finite = np.isfinite(sens.max)
        assert finite.any() and (sens.max[finite] >= sens.mean[finite]).all()
        assert (sens.mean[finite] >= 0).all()


def test_notebook_05_plots(saved):
    plots.use_style()
    x, attack = _fake_attack("explanation_attack", n=6, size=16)
    study = psc.psc_study({"vanilla": _shifting_explainer, "other": lambda i, t: i[..., 0] ** 2 + 0.1},
                            x, attack, n_boot=20)
    maps = {m: metrics.minmax(v[:2]) for m, v in study.maps_before.items()}
    after = {m: metrics.minmax(v[:2]) for m, v in study.maps_after.items()}
    fig = plots.attack_examples(x[:2], attack.x_adv[:2], attack.p_before[:2], attack.p_after[:2],
                                maps, after, target=perturb.patch_target((16, 16)) > 0,
                                row_titles=["a", "b"])
    assert len(fig.axes) == 2 * 7 and fig.axes[0].get_title().startswith("clean")
    assert fig.axes[2].get_title().startswith("difference ×")
    assert saved(fig, "examples")
    fig = plots.psc_scatter({"attack": study.psc, "again": {"vanilla": study.psc["vanilla"]}})
    assert len(fig.axes) == 4 and fig.axes[0].get_title().startswith("Vanilla gradient\nPSC = ")
    assert not fig.axes[3].axison  # "again" has no "other" method
    assert saved(fig, "scatter")
    quiz = perturb.make_quiz(x, attack.x_adv, 5, seed=0)
    fig = plots.quiz_pairs(quiz.left, quiz.right)
    assert [a.get_title() for a in fig.axes[:2]] == ["pair 1: L", "pair 1: R"]
    assert saved(fig, "quiz")
    fig = plots.quiz_pairs(quiz.left, quiz.right, perturbed_right=quiz.perturbed_right,
                           kinds=["x"] * 5)
    titles = [a.get_title() for a in fig.axes[:10]]
    assert sum("perturbed" in t for t in titles) == 5
    assert ("perturbed" in titles[1]) == bool(quiz.perturbed_right[0])
    assert saved(fig, "reveal")


def test_a_method_whose_maps_are_all_zero_gets_an_undefined_psc_and_the_others_go_on(capsys):
    model = tiny_mlp(seed=1)
    x = np.random.default_rng(2).uniform(0, 1, (24, 8, 8, 1)).astype(np.float32)
    attack = perturb.pgd(model, x, 0.1, steps=3)
    zeros = lambda imgs, t: np.zeros(imgs.shape[:3], np.float32)  # noqa: E731 - e.g. Grad-CAM
    study = psc.psc_study({"coupled": _coupled_explainer(model), "zero": zeros}, x, attack,
                          n_boot=50, seed=3)
    assert "PSC undefined" in capsys.readouterr().out
    assert study.psc["coupled"].r == pytest.approx(1.0, abs=1e-6) and not study.psc["coupled"].undefined
    dead = study.psc["zero"]
    assert "all-zero" in dead.undefined and "PSC undefined" in str(dead)
    assert np.isnan([dead.r, dead.ci_low, dead.ci_high]).all() and np.isnan(dead.d_sal).all()
    np.testing.assert_array_equal(dead.d_pred, study.d_pred)
    table = psc.psc_table([study]).set_index("method")
    assert np.isnan(table.loc["zero", "PSC"]) and table.loc["coupled", "PSC"] == pytest.approx(1.0)
    fig = plots.psc_scatter({"pgd": study.psc})  # the undefined panel says so instead of failing
    assert "PSC undefined" in fig.axes[1].get_title()
    fig.canvas.draw()  # the reason is wrapped to stay inside its panel
    panel = fig.axes[1].get_window_extent()
    reason = fig.axes[1].texts[0]
    assert "all-zero" in reason.get_text().replace("\n", " ")
    box = reason.get_window_extent()
    assert panel.x0 <= box.x0 and box.x1 <= panel.x1 and panel.y0 <= box.y0 and box.y1 <= panel.y1
