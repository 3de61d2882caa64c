"""The exercise checker: right answers pass, wrong ones fail, near misses are close, nothing leaks.

Each checkable exercise gets a case: its reference answer (computed here the way the solution
notebook does), a near miss (where the exercise has one) and a clearly wrong answer, plus the
keyword context the checker needs. ``test_every_checkable_exercise_has_a_case`` makes sure a new
checkable exercise cannot be registered without one.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

from course_utils import exercises, models, paper, saliency


@dataclass
class Case:
    reference: object
    wrong: object
    near: object = None  # None: the exercise has no "close" answers
    context: dict = field(default_factory=dict)
    shown: tuple[str, ...] = ()  # how the reference would look if printed


def _formats(x: float) -> tuple[str, ...]:
    return (f"{x:.2f}", f"{x:.3f}", f"{x:.4f}", f"{x:.1%}", f"{100 * x:.1f}")


def _case_00_1(fast: bool) -> Case:
    ref = 5 if fast else 50
    return Case(ref, 55 - ref, context={}, shown=())


def _case_00_2() -> Case:
    from course_utils import assets

    dome = assets.get("dome")
    return Case((dome.licence, dome.attribution), ("CC0", "Nobody"), (dome.licence, "Nobody"),
                shown=(dome.attribution,))


def _case_01_3() -> Case:
    ref = [name for _, name in models.imagenet_classes()].index("dome")
    return Case(ref, 3, ref + 1, shown=(str(ref),))


def _case_02_1() -> Case:
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(1)
    y = np.r_[np.ones(60, int), np.zeros(140, int)]
    p = np.clip(np.r_[rng.normal(0.7, 0.15, 60), rng.normal(0.35, 0.15, 140)], 0, 1).astype(np.float32)
    fpr, tpr, thresholds = roc_curve(y, p)
    ref = float(thresholds[np.argmax(tpr >= 0.95)])
    near = float(p[(y == 0) & (p < ref)].max())  # one more false positive: 1/140 of specificity
    return Case(ref, float(np.quantile(p[y == 1], 0.5)), near, {"y_test": y, "p_test": p},
                shown=(f"{ref:.3f}", f"{ref:.4f}"))


def _case_02_3() -> Case:
    a = paper.CXR_TEST
    ref = a["true_positives"] / (a["true_positives"] + a["false_positives"])
    return Case(ref, a["true_positives"] / a["covid"], round(ref, 2) - 0.005, shown=_formats(ref))


def _small_model_and_marker() -> dict:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (8, 32, 32, 1)).astype(np.float32)
    marker = np.zeros((8, 32, 32), bool)
    marker[:, 2:8, 2:8] = True
    images[marker] = 1.0  # a bright square: the "marker"
    marker[1::4] = False  # some images have none
    model = models.build_cxr_cnn(32, seed=3)
    return {"model": model, "images": images, "marker": marker}


def _case_03_1() -> Case:
    from course_utils import metrics

    ctx = _small_model_and_marker()
    labels, targets = np.array([0, 1] * 4), np.zeros(8, int)
    maps = saliency.compute(ctx["model"], ctx["images"], "gradcam++", targets, layer="last_conv").raw
    enrichment = metrics.region_attribution(maps, {"marker": ctx["marker"]}).enrichment["marker"]
    ref = float(np.nanmean(enrichment[labels == 0]))
    assert np.isfinite(ref) and ref > 0
    return Case(ref, 3 * ref, 1.05 * ref, {**ctx, "targets": targets, "labels": labels},
                shown=(f"{ref:.2f}", f"{ref:.3f}"))


def _case_03_2() -> Case:
    from course_utils import phantom

    ctx = _small_model_and_marker()
    p_before = np.linspace(0.1, 0.9, 8)
    has = ctx["marker"].any(axis=(1, 2))
    after = models.predict_p(ctx["model"], phantom.erase_marker(ctx["images"][has], ctx["marker"][has]))
    ref = float(np.mean(after - p_before[has]))
    return Case(ref, ref + 0.3, ref + 0.01, {**ctx, "p_before": p_before}, shown=(f"{ref:.3f}", f"{ref:.4f}"))


def _case_04_3() -> Case:
    from sklearn.linear_model import LogisticRegression

    from course_utils import tabular

    tab = tabular.load_breast_cancer_split(seed=42)
    coef = LogisticRegression(max_iter=5000).fit(tab.x_train, tab.y_train).coef_[0]
    ref = np.abs(coef * tab.x_test).mean(axis=0)
    wrong = np.abs(coef * tab.x_train).sum(axis=0)[::-1]  # summed, over the training set, reversed
    return Case(ref, wrong, 1.1 * ref, {"tab": tab})


def _case_05_2() -> Case:
    from course_utils import psc

    rng = np.random.default_rng(2)
    n = 12
    noise = SimpleNamespace(p_before=rng.uniform(0.2, 0.8, n), p_after=rng.uniform(0.2, 0.8, n))
    pgd = SimpleNamespace(p_before=noise.p_before, p_after=rng.uniform(0, 1, n))
    clean, m_noise, m_pgd = (rng.uniform(0, 1, (n, 8, 8)) for _ in range(3))
    ref = psc.psc(np.r_[noise.p_before, pgd.p_before], np.r_[noise.p_after, pgd.p_after],
                  np.r_[clean, clean], np.r_[m_noise, m_pgd], n_boot=10).r
    ctx = {"noise": noise, "pgd": pgd, "maps_clean": clean, "maps_noise": m_noise, "maps_pgd": m_pgd}
    return Case(ref, max(-1.0, min(1.0, ref - 0.5)), ref + 0.02, ctx, shown=(f"{ref:.2f}", f"{ref:.3f}"))


def _case_05_3() -> Case:
    rng = np.random.default_rng(3)
    clean = ndimage.uniform_filter(rng.uniform(0, 1, (20, 16, 16, 1)), size=(1, 3, 3, 1))
    perturbed = clean + rng.uniform(-0.05, 0.05, clean.shape) * (np.arange(20) % 3 != 0)[:, None, None, None]
    energy = lambda x: np.array([np.abs(ndimage.laplace(im[..., 0])).mean() for im in x])  # noqa: E731
    ref = float(np.mean(energy(perturbed) > energy(clean)))
    assert 0 < ref < 1
    return Case(ref, 1 - ref, ref - 0.05, {"clean": clean, "perturbed": perturbed}, shown=_formats(ref))


def _hospitals() -> dict:
    """Test films of two hospitals: COVID common at "B", whose normal films the model often calls COVID."""
    origins = np.array(["A"] * 50 + ["B"] * 30)
    y = np.r_[np.zeros(45, int), np.ones(5, int), np.zeros(10, int), np.ones(20, int)]
    p = np.r_[np.full(44, 0.1), 0.7, np.full(5, 0.3), np.full(7, 0.8), np.full(3, 0.2), np.full(20, 0.9)]
    return {"origins": origins, "y_test": y, "p_test": p}


def _case_06_3() -> Case:
    ctx = _hospitals()
    ref = 7 / 10 - 1 / 45  # false-positive rates: B minus A
    return Case(ref, ref - 0.3, ref + 0.1, ctx, shown=_formats(ref))


CASES = {"00.1": lambda: _case_00_1(False), "00.2": _case_00_2, "01.3": _case_01_3, "02.1": _case_02_1,
         "02.3": _case_02_3, "03.1": _case_03_1, "03.2": _case_03_2, "04.3": _case_04_3,
         "05.2": _case_05_2, "05.3": _case_05_3, "06.1": lambda: Case("site", "marker", shown=("site",)),
         "06.2": lambda: Case("no", "yes"), "06.3": _case_06_3, "06.5": lambda: Case("No.", "yes")}


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    return {k: make() for k, make in CASES.items()}


def test_every_checkable_exercise_has_a_case():
    checkable = {e.id for e in exercises.EXERCISES.values() if e.checkable}
    assert checkable == set(CASES)
    assert len(exercises.EXERCISES) - len(checkable) >= 8  # the open questions are registered too


def test_registry_ids_and_calls_are_well_formed():
    for ex_id, ex in exercises.EXERCISES.items():
        assert ex_id == ex.id and ex.notebook in exercises.NOTEBOOKS
        assert ex.id.split(".")[1].isdigit() and ex.task and not ex.task.endswith(".")
        assert ex.checkable == (ex.checker is not None)
        if ex.checkable:
            call = ast.parse(ex.call()).body[0].value  # valid Python
            assert [kw.arg for kw in call.keywords] == list(ex.context)
            assert ex.solutions.startswith("notebooks/solutions/")
            assert ex.solutions.endswith("_solutions.ipynb")


@pytest.mark.parametrize("exercise_id", sorted(CASES))
def test_reference_answer_is_right(exercise_id, cases, capsys, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")
    case = cases[exercise_id]
    verdict = exercises.check(exercise_id, case.reference, **case.context)
    out = capsys.readouterr().out
    assert verdict.right and verdict.status == "right", out
    assert out.startswith(f"Exercise {exercise_id}: right")


@pytest.mark.parametrize("exercise_id", sorted(CASES))
def test_wrong_answer_is_wrong_and_the_reference_is_never_printed(exercise_id, cases, capsys, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")
    case = cases[exercise_id]
    verdicts = [exercises.check(exercise_id, case.wrong, **case.context)]
    assert verdicts[0].status == "wrong" and not verdicts[0].right
    if case.near is not None:
        verdicts.append(exercises.check(exercise_id, case.near, **case.context))
        assert verdicts[1].status == "close", verdicts[1].message
    verdicts.append(exercises.check(exercise_id, case.reference, **case.context))
    out = capsys.readouterr().out
    assert "Reconsider" in verdicts[0].message  # a wrong answer gets a hint
    for shown in case.shown:
        assert shown not in out, f"the expected answer {shown!r} was printed:\n{out}"


def test_near_misses_say_how_close(cases, capsys):
    assert "off by 0.81 percentage points" in exercises.check("02.3", cases["02.3"].near).message
    assert "within 5 % of the expected value" in exercises.check("03.1", cases["03.1"].near,
                                                                 **cases["03.1"].context).message
    message = exercises.check("02.1", cases["02.1"].near, **cases["02.1"].context).message
    assert "0.7 percentage points of specificity more than 95% sensitivity requires" in message
    assert "sensitivity is" in message and "raise the threshold" in message


def test_threshold_below_the_target_sensitivity_is_wrong(cases, capsys):
    ctx = cases["02.1"].context
    verdict = exercises.check("02.1", 0.99, **ctx)
    assert verdict.status == "wrong" and "below 95% sensitivity" in verdict.message
    assert exercises.check("02.1", 0.0, **ctx).status == "wrong"  # everything COVID: far too costly


def test_fast_mode_changes_the_expected_sample_count(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_FAST", "1")
    assert exercises.check("00.1", 5).right
    verdict = exercises.check("00.1", 50)
    assert verdict.status == "wrong" and "other mode" in verdict.message


def test_open_questions_point_to_the_solutions(capsys):
    verdict = exercises.check("01.1", "the map barely changed")
    out = capsys.readouterr().out
    assert verdict.status == "open" and not verdict.right
    assert "no automatic check" in out
    assert "notebooks/solutions/01_vgg16_imagenet_saliency_solutions.ipynb" in out


@pytest.mark.parametrize(("exercise_id", "needle"), [
    ("02.9", "there is no exercise '02.9'; notebook 02 has 02.1, 02.2, 02.3"),
    ("9.1", "ids are \"NN.k\""),
    (2.3, "the exercise id is a string"),
])
def test_unknown_ids_get_a_clear_message(exercise_id, needle, capsys):
    verdict = exercises.check(exercise_id, 0.5)
    assert verdict.status == "problem" and needle in verdict.message
    assert needle in capsys.readouterr().out


@pytest.mark.parametrize(("exercise_id", "answer", "needle"), [
    ("02.3", "0.93", "expected the positive predictive value (a proportion between 0 and 1), got str"),
    ("02.3", 93.3, "as a proportion between 0 and 1 (50 % is 0.5), not as a percentage"),
    ("02.3", np.array([0.9, 0.8]), "got ndarray of shape (2,)"),
    ("02.3", float("nan"), "got nan"),
    ("02.3", True, "got a bool"),
    ("00.1", 5.5, "expected a whole number of samples, got 5.5"),
    ("00.2", "CC BY 2.5", "expected two strings, (licence, attribution)"),
    ("01.3", 1000, "ImageNet class indices run from 0 to 999"),
])
def test_answers_of_the_wrong_type_or_shape_are_named(exercise_id, answer, needle, capsys):
    verdict = exercises.check(exercise_id, answer)
    assert verdict.status == "problem" and needle in verdict.message, verdict.message


def test_wrong_shapes_and_missing_context_are_named(cases, capsys):
    tab = cases["04.3"].context
    verdict = exercises.check("04.3", cases["04.3"].reference[None], **tab)
    assert verdict.status == "problem" and "shape (30,)" in verdict.message and "coef_[0]" in verdict.message
    verdict = exercises.check("02.1", 0.5, y_test=np.array([0, 1, 1]))
    assert verdict.status == "problem" and "missing p_test" in verdict.message
    assert 'exercises.check("02.1", your_threshold, y_test=y_test, p_test=p_test)' in verdict.message
    verdict = exercises.check("02.3", 0.9, y_test=np.array([0, 1]))
    assert verdict.status == "problem" and "not expected: y_test" in verdict.message
    verdict = exercises.check("02.1", 0.5, y_test=np.array([0, 1, 1]), p_test=np.array([0.2, 0.7]))
    assert verdict.status == "problem" and "p_test has 2 values but the labels have 3" in verdict.message
    verdict = exercises.check("05.2", 0.1, **{**cases["05.2"].context, "noise": np.zeros(3)})
    assert verdict.status == "problem" and "noise must be an attack result" in verdict.message
    verdict = exercises.check("05.3", 0.5, clean=np.zeros((4, 8, 8, 1)), perturbed=np.zeros((3, 8, 8, 1)))
    assert verdict.status == "problem" and "same shape" in verdict.message


def test_a_sign_error_is_named(cases, capsys):
    case = cases["03.2"]
    if abs(case.reference) > 0.01:
        verdict = exercises.check("03.2", -case.reference, **case.context)
        assert verdict.status == "wrong" and "sign is reversed" in verdict.message


def test_the_verdict_prints_once_and_reprs_short(capsys):
    verdict = exercises.check("02.3", 0.5)
    assert capsys.readouterr().out.count("Exercise 02.3") == 1
    assert repr(verdict) == "Verdict(exercise='02.3', status='wrong')"
    assert str(verdict).startswith("Exercise 02.3: not right yet - ")


@pytest.mark.parametrize("choice", ["lungs", "marker", "abdomen"])
def test_each_wrong_shortcut_gets_its_own_hint_without_the_answer(choice, capsys):
    verdict = exercises.check("06.1", choice)
    assert verdict.status == "wrong" and "Reconsider" in verdict.message
    assert "site" not in verdict.message.replace(exercises.EXERCISES["06.1"].task, "")
    assert exercises.check("06.1", " SITE ").right


def test_choices_outside_the_list_are_named(capsys):
    verdict = exercises.check("06.1", "hospital")
    assert verdict.status == "problem" and '"lungs", "marker", "abdomen", "site"' in verdict.message
    assert exercises.check("06.2", True).status == "problem"
    assert "one of \"yes\", \"no\"" in exercises.check("06.5", "maybe").message


def test_capstone_gap_names_the_usual_mistakes(capsys):
    ctx = _hospitals()
    ref = 7 / 10 - 1 / 45
    assert "sign is reversed" in exercises.check("06.3", -ref, **ctx).message
    per_film = 7 / 30 - 1 / 50  # divided by all of each hospital's films
    assert "normal films only" in exercises.check("06.3", per_film, **ctx).message
    assert "not percentage points" in exercises.check("06.3", 100 * ref, **ctx).message
    verdict = exercises.check("06.3", ref, **{**ctx, "origins": np.array(["A"] * 80)})
    assert verdict.status == "problem" and "exactly two hospitals" in verdict.message
