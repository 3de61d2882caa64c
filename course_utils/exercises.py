"""The notebooks' exercises, and a checker that says how close an answer is without giving it away.

Every exercise has an id ``"NN.k"``: notebook NN, exercise k (``"02.3"`` is the third exercise of
notebook 02). :data:`EXERCISES` holds them all. In a learner notebook, after doing an exercise::

    exercises.check("02.3", my_ppv)
    exercises.check("02.1", my_threshold, y_test=y_test, p_test=p_test)

prints a :class:`Verdict` and returns it: *right*, *close* (with how close: "within 2 % of the
expected value", "off by 0.8 percentage points") or *wrong* (with a hint of what to reconsider).
It never prints the expected answer. Where the expected value depends on the run (a trained
model, the data), the checker takes what it needs as keyword arguments and computes the
reference itself; :meth:`Exercise.call` spells the call out. Open questions ("explain why")
are registered as not checkable: ``check`` says so and points at the solution notebook.

Answers of the wrong type or shape, missing keyword arguments and unknown ids give a verdict
whose message names the problem, never a traceback.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import config, paper

#: The course's notebooks by number (the solution notebooks are ``solutions/<stem>_solutions.ipynb``).
NOTEBOOKS = {
    "00": "00_start_here",
    "01": "01_vgg16_imagenet_saliency",
    "02": "02_covid_cxr_cnn",
    "03": "03_saliency_pitfalls",
    "04": "04_limitations",
    "05": "05_perturbations_and_psc",
    "06": "06_capstone_audit",
}

#: Verdict statuses: the first three judge an answer; "open" = no automatic check exists;
#: "problem" = the call itself is wrong (unknown id, wrong type or shape, missing context).
RIGHT, CLOSE, WRONG, OPEN, PROBLEM = "right", "close", "wrong", "open", "problem"

#: Sensitivity that exercise 02.1 asks for.
TARGET_SENSITIVITY = 0.95


class AnswerProblem(ValueError):
    """An answer or a keyword argument that cannot be checked (wrong type, shape or range)."""


@dataclass(frozen=True)
class Verdict:
    """What :func:`check` found.

    Attributes:
        exercise: the exercise id as given, e.g. "02.3".
        status: one of "right", "close", "wrong", "open" (no automatic check) or "problem"
            (the answer or the call could not be checked; ``message`` says why).
        message: one or two sentences for the learner; never the expected answer.
    """

    exercise: str
    status: str
    message: str

    @property
    def right(self) -> bool:
        """True only for a right answer (``assert exercises.check(...).right`` in solutions)."""
        return self.status == RIGHT

    def __str__(self) -> str:
        head = {RIGHT: "right", CLOSE: "close", WRONG: "not right yet", OPEN: "open question",
                PROBLEM: "cannot check"}[self.status]
        return f"Exercise {self.exercise}: {head} - {self.message}"

    def __repr__(self) -> str:  # short: the message was printed already
        return f"Verdict(exercise={self.exercise!r}, status={self.status!r})"


#: A checker takes the answer and the exercise's keyword context and returns (status, message).
Checker = Callable[..., tuple[str, str]]


@dataclass(frozen=True)
class Exercise:
    """One exercise of a notebook.

    Attributes:
        id: "NN.k".
        task: a one-line reminder of what to do.
        checkable: whether :func:`check` can judge an answer (False for open questions).
        answer: what to pass as the answer, e.g. "your_ppv" (the name used in :meth:`call`).
        context: keyword -> the notebook expression to pass for it, e.g. {"y_test": "y_test"}:
            what the checker needs to compute the reference itself.
        checker: the function behind :func:`check` (None for open questions).
    """

    id: str
    task: str
    checkable: bool = True
    answer: str = "your_answer"
    context: Mapping[str, str] = field(default_factory=dict)
    checker: Checker | None = field(default=None, repr=False)

    @property
    def notebook(self) -> str:
        """The notebook's number, "NN"."""
        return self.id.split(".")[0]

    @property
    def solutions(self) -> str:
        """Where the worked solution is, relative to the repository."""
        return f"notebooks/solutions/{NOTEBOOKS[self.notebook]}_solutions.ipynb"

    def call(self, answer: str | None = None) -> str:
        """The checker call as a line of code, e.g. ``exercises.check("02.3", your_ppv)``."""
        args = [f'"{self.id}"', answer or self.answer,
                *(f"{k}={v}" for k, v in self.context.items())]
        return f"exercises.check({', '.join(args)})"


EXERCISES: dict[str, Exercise] = {}


def _register(id: str, task: str, *, answer: str = "your_answer",
              context: Mapping[str, str] | None = None) -> Callable[[Checker], Checker]:
    """Decorator: register a checkable exercise with its checker."""
    def add(checker: Checker) -> Checker:
        EXERCISES[id] = Exercise(id, task, True, answer, dict(context or {}), checker)
        return checker
    return add


def _open(id: str, task: str) -> None:
    """Register an open question (no automatic check)."""
    EXERCISES[id] = Exercise(id, task, checkable=False)


# ----------------------------------------------------------------------------- answer checks
def _number(answer: object, what: str) -> float:
    """``answer`` as one finite real number, or :class:`AnswerProblem` naming ``what`` was expected."""
    if isinstance(answer, (bool, np.bool_)):
        raise AnswerProblem(f"expected {what}, got a bool ({answer})")
    if isinstance(answer, (int, float, np.integer, np.floating)):
        value = float(answer)
    elif isinstance(answer, np.ndarray) and answer.size == 1 and answer.dtype.kind in "iuf":
        value = float(answer.reshape(()))
    else:
        shape = f" of shape {answer.shape}" if isinstance(answer, np.ndarray) else ""
        raise AnswerProblem(f"expected {what}, got {type(answer).__name__}{shape}")
    if not np.isfinite(value):
        raise AnswerProblem(f"expected {what}, got {value}")
    return value


def _proportion(answer: object, what: str) -> float:
    """A proportion in [0, 1]; a percentage (e.g. 93.3) is refused with the fix."""
    value = _number(answer, f"{what} (a proportion between 0 and 1)")
    if 1 < value <= 100:
        raise AnswerProblem(f"give {what} as a proportion between 0 and 1 (50 % is 0.5), not as a "
                            f"percentage: got {value:g}")
    if not 0 <= value <= 1:
        raise AnswerProblem(f"{what} is a proportion between 0 and 1, got {value:g}")
    return value


def _whole_number(answer: object, what: str) -> int:
    value = _number(answer, what)
    if value != int(value):
        raise AnswerProblem(f"expected {what}, got {value:g}")
    return int(value)


def _array(value: object, name: str, ndim: int) -> np.ndarray:
    """A real-valued array with ``ndim`` dimensions, or :class:`AnswerProblem`."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf" or arr.ndim != ndim or arr.size == 0:
        raise AnswerProblem(f"{name} must be a non-empty numeric array with {ndim} dimension(s), got "
                            f"{type(value).__name__} of shape {np.shape(arr)}")
    return arr


def _by_points(answer: float, reference: float, *, right_pp: float, close_pp: float,
               hint: str, unit: str = "percentage points", scale: float = 100.0,
               detail: str = "") -> tuple[str, str]:
    """Verdict for a difference measured in points (proportions: percentage points)."""
    off = abs(answer - reference) * scale
    if off <= right_pp:
        return RIGHT, detail or "that matches."
    if off <= close_pp:
        return CLOSE, f"off by {off:.2g} {unit}. {hint}"
    return WRONG, f"off by more than {close_pp:g} {unit}. Reconsider: {hint}"


def _relative(answer: float, reference: float, *, right: float, close: float,
              hint: str) -> tuple[str, str]:
    """Verdict for a relative difference (``right``, ``close``: fractions of the reference)."""
    off = abs(answer - reference) / max(abs(reference), 1e-12)
    if off <= right:
        return RIGHT, "that matches."
    if off <= close:
        return CLOSE, f"within {100 * off:.2g} % of the expected value. {hint}"
    return WRONG, f"more than {100 * close:.0f} % away from the expected value. Reconsider: {hint}"


def _labels(y: object, name: str) -> np.ndarray:
    arr = _array(y, name, 1)
    if not set(np.unique(arr).tolist()) <= {0, 1} or len(np.unique(arr)) < 2:
        raise AnswerProblem(f"{name} must hold labels 0 and 1 (both classes), e.g. y_test")
    return arr.astype(int)


def _probabilities(p: object, name: str, n: int) -> np.ndarray:
    arr = _array(p, name, 1).astype(np.float64)
    if len(arr) != n:
        raise AnswerProblem(f"{name} has {len(arr)} values but the labels have {n}")
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise AnswerProblem(f"{name} must be probabilities in [0, 1], e.g. p_test")
    return arr


def _attack_probabilities(attack: object, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(p_before, p_after)`` of an attack result (anything with those two attributes)."""
    if not (hasattr(attack, "p_before") and hasattr(attack, "p_after")):
        raise AnswerProblem(f"{name} must be an attack result with p_before and p_after "
                            f"(the `{name}` of the notebook), got {type(attack).__name__}")
    return (np.asarray(attack.p_before, np.float64).ravel(),
            np.asarray(attack.p_after, np.float64).ravel())


# ----------------------------------------------------------------------------- notebook 00
@_register("00.1", "use config.pick for 50 SmoothGrad samples in full mode and 5 in fast mode",
           answer="your_samples")
def _samples(answer: object) -> tuple[str, str]:
    value = _whole_number(answer, "a whole number of samples")
    mode = "fast" if config.fast_mode() else "full"
    if value == config.pick(full=50, fast=5):
        return RIGHT, f"that is the {mode}-mode choice, and config.pick makes it for you in either mode."
    if value in (50, 5):
        return WRONG, (f"that is the other mode's number; this run is in {mode} mode. Reconsider: let "
                       "config.pick(full=..., fast=...) choose instead of typing the number.")
    return WRONG, "Reconsider: config.pick(full=..., fast=...) returns one of its two arguments."


def _text(value: object) -> str:
    return " ".join(str(value).split()).casefold()


@_register("00.2", "the dome photo's licence and attribution, from the asset manifest",
           answer="(your_licence, your_attribution)")
def _dome_credit(answer: object) -> tuple[str, str]:
    from . import assets

    if isinstance(answer, str) or not isinstance(answer, Sequence) or len(answer) != 2 \
            or not all(isinstance(a, str) for a in answer):
        raise AnswerProblem("expected two strings, (licence, attribution), e.g. ('CC BY 4.0', 'A. Author')")
    dome = assets.get("dome")
    licence_ok = _text(answer[0]) == _text(dome.licence)
    author_ok = _text(answer[1]) == _text(dome.attribution)
    if licence_ok and author_ok:
        return RIGHT, "reuse the photo with exactly that credit line."
    if licence_ok or author_ok:
        right_one, wrong_one = ("licence", "attribution") if licence_ok else ("attribution", "licence")
        return CLOSE, (f"the {right_one} is right, the {wrong_one} is not. Copy it from the manifest "
                       "(assets.get(\"dome\")) as it is written there.")
    return WRONG, "neither matches. Reconsider: the manifest entry is assets.get(\"dome\") (first: licence)."


# ----------------------------------------------------------------------------- notebook 01
_open("01.1", "SmoothGrad of the dog with twice the samples: how much does the map change (Spearman)?")
_open("01.2", "Grad-CAM of the dome on block4_conv3: is it sharper, and still class-specific?")


@_register("01.3", "the ImageNet index of the class 'dome', and p(dome) for each photo",
           answer="your_dome_index")
def _dome_index(answer: object) -> tuple[str, str]:
    from . import models

    value = _whole_number(answer, "a class index (an int from 0 to 999)")
    if not 0 <= value < 1000:
        raise AnswerProblem(f"ImageNet class indices run from 0 to 999, got {value}")
    names = [name for _, name in models.imagenet_classes()]
    if names[value] == "dome":
        return RIGHT, "the probabilities of the four photos are then the column probs[:, index]."
    if abs(value - names.index("dome")) == 1:
        return CLOSE, ("off by one: Python counts from 0, so the index is the position in "
                       "models.imagenet_classes(), not a line number.")
    return WRONG, (f"index {value} is {names[value]!r}. Reconsider: search the names in "
                   "models.imagenet_classes() for 'dome'.")


# ----------------------------------------------------------------------------- notebook 02
def _best_specificity(y: np.ndarray, p: np.ndarray, min_sensitivity: float) -> float:
    """The highest specificity of any threshold t (COVID when p >= t) with sensitivity >= the minimum."""
    positives = np.sort(p[y == 1])[::-1]
    k = int(np.ceil(min_sensitivity * len(positives) - 1e-9))  # positives that must be called COVID
    t = positives[max(k, 1) - 1]  # the highest threshold that still calls k of them COVID
    return float(np.mean(p[y == 0] < t))


@_register("02.1", "the threshold (COVID when p >= threshold) for >= 95 % sensitivity, and the "
                   "specificity it costs",
           answer="your_threshold", context={"y_test": "y_test", "p_test": "p_test"})
def _threshold(answer: object, *, y_test: object, p_test: object) -> tuple[str, str]:
    t = _number(answer, "a threshold on p(COVID), a number in [0, 1]")
    if not 0 <= t <= 1:
        raise AnswerProblem(f"a threshold on p(COVID) lies in [0, 1], got {t:g}")
    y = _labels(y_test, "y_test")
    p = _probabilities(p_test, "p_test", len(y))
    called = p >= t
    sensitivity, specificity = called[y == 1].mean(), (~called[y == 0]).mean()
    rates = f"at this threshold sensitivity is {sensitivity:.1%} and specificity {specificity:.1%}"
    if sensitivity < TARGET_SENSITIVITY:
        return WRONG, (f"{rates}: below {TARGET_SENSITIVITY:.0%} sensitivity. Reconsider: a lower "
                       "threshold calls more images COVID.")
    cost = _best_specificity(y, p, TARGET_SENSITIVITY) - specificity
    if cost <= 1e-12:
        return RIGHT, f"{rates}; no threshold reaches {TARGET_SENSITIVITY:.0%} sensitivity at a lower cost."
    how = (f"{rates}: you pay {100 * cost:.1f} percentage points of specificity more than "
           f"{TARGET_SENSITIVITY:.0%} sensitivity requires")
    if cost <= 0.03:
        return CLOSE, f"{how}: raise the threshold a little."
    return WRONG, f"{how}. Reconsider: the highest threshold that keeps the sensitivity is the one."


_open("02.2", "train without shortcuts; accuracy on its test set and its flipped twin: what changed, "
              "and why?")


@_register("02.3", "the article's positive predictive value from its counts, as a proportion",
           answer="your_ppv")
def _ppv(answer: object) -> tuple[str, str]:
    value = _proportion(answer, "the positive predictive value")
    a = paper.CXR_TEST
    reference = a["true_positives"] / (a["true_positives"] + a["false_positives"])
    return _by_points(value, reference, right_pp=0.05, close_pp=2.0,
                      hint="PPV = true positives / all images called COVID (true and false positives); "
                           "keep three decimals.",
                      detail="of the images the article's model called COVID, that share were COVID.")


# ----------------------------------------------------------------------------- notebook 03
@_register("03.1", "the marker's Grad-CAM++ enrichment in normal test images",
           answer="your_enrichment",
           context={"model": "model", "images": "x_test", "targets": "pred",
                    "marker": 'regions["marker"]', "labels": "y_test"})
def _marker_enrichment(answer: object, *, model, images, targets, marker, labels) -> tuple[str, str]:
    """Grad-CAM++ on the course CNN's ``last_conv``; ``images`` (n, H, W, 1), ``marker`` (n, H, W)."""
    from . import metrics, saliency

    value = _number(answer, "one enrichment value (a number >= 0)")
    y = _labels(labels, "labels")
    maps = saliency.compute(model, images, "gradcam++", targets, layer="last_conv").raw
    table = metrics.region_attribution(maps, {"marker": np.asarray(marker, bool)}).table(y)
    reference = float(table.loc[("marker", "normal"), "enrichment"])
    return _relative(value, reference, right=0.01, close=0.15,
                     hint="per normal image with a marker, the share of |Grad-CAM++| mass on the marker "
                          "divided by the share of the image it covers, then the mean over those images "
                          "(the raw maps; metrics.region_attribution(...).table(y_test) does it).")


@_register("03.2", "in-paint the marker: the mean Δp over test images with a marker, beside the exact "
                   "re-rendering",
           answer="your_mean_dp",
           context={"model": "model", "images": "x_test", "marker": 'regions["marker"]',
                    "p_before": "p_test"})
def _inpainting_dp(answer: object, *, model, images, marker, p_before) -> tuple[str, str]:
    """Mean of p(in-painted) - p(original) over images whose ``marker`` (n, H, W) is not empty."""
    from . import models, phantom

    value = _number(answer, "one mean Δp (a number in [-1, 1])")
    masks = np.asarray(marker, bool)
    p0 = np.asarray(p_before, np.float64).ravel()
    if masks.ndim != 3 or len(masks) != len(p0) or len(np.asarray(images)) != len(p0):
        raise AnswerProblem(f"images, marker (n, H, W) and p_before (n,) must describe the same n images, "
                            f"got {len(np.asarray(images))}, {masks.shape} and {p0.shape}")
    has = masks.any(axis=(1, 2))
    if not has.any():
        raise AnswerProblem("no image has a marker pixel: pass the phantom's marker masks of the test images")
    inpainted = phantom.erase_marker(np.asarray(images)[has], masks[has])
    reference = float(np.mean(models.predict_p(model, inpainted) - p0[has]))
    status, message = _by_points(value, reference, right_pp=0.001, close_pp=0.02, unit="in p", scale=1.0,
                                 hint="use the images that have a marker only, and Δp = p(in-painted) - "
                                      "p(original).")
    if status == WRONG and abs(value + reference) <= 0.02:
        return WRONG, "the sign is reversed. Reconsider: Δp = p after the edit - p before it."
    return status, message


_open("03.3", "the pointing game with maps shuffled between COVID images: why is it a fairer baseline?")
_open("03.4", "a lung mask with dilate_px=0: flipped-set accuracy; did the shortcut go, at what cost?")


# ----------------------------------------------------------------------------- notebook 04
_open("04.1", "randomise conv2 alone: does Grad-CAM or guided backprop notice (SSIM)?")
_open("04.2", "noise of 0.002, 0.01 and 0.05: where does each map fall below its random-pair baseline?")


@_register("04.3", "a logistic regression's mean |coefficient × value| per feature (test set); "
                   "Spearman with the MLP",
           answer="your_linear_attribution", context={"tab": "tab"})
def _linear_attribution(answer: object, *, tab) -> tuple[str, str]:
    """``answer``: (d,) one value per feature of ``tab`` (a :class:`tabular.TabularSplit`)."""
    from sklearn.linear_model import LogisticRegression

    from . import stats

    d = len(tab.features)
    value = np.asarray(answer)
    if value.dtype.kind not in "iuf" or value.shape != (d,):
        raise AnswerProblem(f"expected one value per feature, an array of shape ({d},), got "
                            f"{type(answer).__name__} of shape {np.shape(value)}"
                            + (" (coef_ has a row per class: use coef_[0])" if value.shape == (1, d) else ""))
    coef = LogisticRegression(max_iter=5000).fit(tab.x_train, tab.y_train).coef_[0]
    reference = np.abs(coef * tab.x_test).mean(axis=0)
    off = float(np.linalg.norm(value - reference) / np.linalg.norm(reference))
    rho = float(stats.spearman(value, reference))
    if off <= 0.01:
        return RIGHT, "now compare its ranking with the MLP's (Spearman)."
    hint = ("fit LogisticRegression (default settings) on tab.x_train, tab.y_train; then per feature the "
            "mean over the *test* tumours of |coefficient × value|.")
    if off <= 0.2 or rho >= 0.95:
        return CLOSE, (f"the values are {100 * off:.0f} % off overall, their ranking agrees "
                       f"(Spearman {rho:.2f}). {hint}")
    return WRONG, (f"the values are {100 * off:.0f} % off overall (ranking Spearman {rho:.2f}). "
                   f"Reconsider: {hint}")


_open("04.4", "the cascade again with seed=config.SEED + 1 (vanilla, guided backprop): verdicts at +dense?")
_open("04.5", "shifts of 4 and 8 px (one CAM cell): do Grad-CAM and Grad-CAM++ follow the image?")


# ----------------------------------------------------------------------------- notebook 05
_open("05.1", "the prediction attack with ε = 0.005 and 0.03: flips, PSNR, D_sal; which ε for a "
              "reader study?")


@_register("05.2", "pool the random-noise and PGD pairs (2n points): the vanilla gradient's PSC",
           answer="your_pooled_psc",
           context={"noise": "noise", "pgd": "pgd", "maps_clean": 'sens.maps_before["vanilla"]',
                    "maps_noise": 'refs[0].maps_after["vanilla"]',
                    "maps_pgd": 'refs[2].maps_after["vanilla"]'})
def _pooled_psc(answer: object, *, noise, pgd, maps_clean, maps_noise, maps_pgd) -> tuple[str, str]:
    """PSC (Pearson r in [-1, 1]) of the 2n pooled pairs; maps (n, H, W) of the vanilla gradient."""
    from . import psc

    value = _number(answer, "one PSC value (a correlation in [-1, 1])")
    if not -1 <= value <= 1:
        raise AnswerProblem(f"a PSC is a correlation in [-1, 1], got {value:g}")
    (nb, na), (gb, ga) = _attack_probabilities(noise, "noise"), _attack_probabilities(pgd, "pgd")
    clean = _array(maps_clean, "maps_clean", 3)
    pooled = psc.psc(np.r_[nb, gb], np.r_[na, ga], np.r_[clean, clean],
                     np.r_[_array(maps_noise, "maps_noise", 3), _array(maps_pgd, "maps_pgd", 3)], n_boot=1)
    return _by_points(value, pooled.r, right_pp=0.005, close_pp=0.05, unit="in r", scale=1.0,
                      hint="pool both the probabilities and the maps, noise pairs first and PGD pairs "
                           "second, with the same clean maps for both.")


def _high_frequency_energy(images: np.ndarray) -> np.ndarray:
    """Mean |Laplacian| of each image's first channel: (n, H, W, C) -> (n,)."""
    from scipy import ndimage

    return np.array([np.abs(ndimage.laplace(np.asarray(im, np.float64)[..., 0])).mean() for im in images])


@_register("05.3", "the mean-|Laplacian| detector: its quiz score, then the share of sensitivity-set "
                   "pairs it finds",
           answer="your_share", context={"clean": "x_sens", "perturbed": "pred_attack.x_adv"})
def _detector_share(answer: object, *, clean, perturbed) -> tuple[str, str]:
    """``clean``, ``perturbed``: (n, H, W, C) twins; the share is over the n pairs."""
    value = _proportion(answer, "the share of pairs")
    x, x_adv = _array(clean, "clean", 4), _array(perturbed, "perturbed", 4)
    if x.shape != x_adv.shape:
        raise AnswerProblem(f"clean and perturbed must be twins of the same shape, got {x.shape} and "
                            f"{x_adv.shape}")
    reference = float(np.mean(_high_frequency_energy(x_adv) > _high_frequency_energy(x)))
    one_pair = 100 / len(x)
    return _by_points(value, reference, right_pp=one_pair / 2, close_pp=max(10.0, 1.5 * one_pair),
                      hint=f"one pair is {one_pair:.1f} percentage points; compare the mean |Laplacian| "
                           "(scipy.ndimage.laplace) of each perturbed image with its own clean twin.")


# ----------------------------------------------------------------------------- notebook 06
#: The answers exercise 06.1 accepts: what the capstone model's decisions depend on.
SHORTCUT_CHOICES = ("lungs", "marker", "abdomen", "site")


def _choice(answer: object, choices: Sequence[str], what: str) -> str:
    """``answer`` as one of ``choices`` (case and surrounding quotes, dots and spaces ignored)."""
    listed = ", ".join(f'"{c}"' for c in choices)
    if not isinstance(answer, str):
        raise AnswerProblem(f"expected {what}: one of {listed} (a string), got {type(answer).__name__}")
    value = _text(answer).strip("'\" .")
    if value not in choices:
        raise AnswerProblem(f"{answer!r} is not one of {listed}")
    return value


_SHORTCUT_HINTS = {
    "lungs": "a model that reads the lungs treats normal patients alike wherever they were filmed. "
             "Does this one (row 6, the model per hospital)?",
    "marker": "what did erasing the marker do to p (row 6, the counterfactual edits)?",
    "abdomen": "what did giving every abdomen the same brightness do to p (row 6, the counterfactual "
               "edits)?",
}


@_register("06.1", 'what the model\'s decisions depend on besides the disease: "lungs" (nothing else), '
                   '"marker", "abdomen" or "site"',
           answer="your_shortcut")
def _capstone_shortcut(answer: object) -> tuple[str, str]:
    choice = _choice(answer, SHORTCUT_CHOICES, "what the model relies on")
    if choice == "site":
        return RIGHT, ("the hospital's processing of the film: it touches every pixel, so the film "
                       "statistics outside the lungs recognise it, and the model's calls follow it.")
    return WRONG, f"Reconsider: {_SHORTCUT_HINTS[choice]}"


def _yes_no(answer: object) -> str:
    return _choice(answer, ("yes", "no"), "an answer")


@_register("06.2", 'does the published Grad-CAM figure alone reveal that shortcut? "yes" or "no"',
           answer="your_answer")
def _capstone_figure(answer: object) -> tuple[str, str]:
    if _yes_no(answer) == "no":
        return RIGHT, ("a region map has nowhere to point at a difference spread over the whole film, "
                       "and four chosen cases show only what the authors chose to show.")
    return WRONG, ("Reconsider: which region of the figure would show where a film was made? Could a "
                   "model that reads only the hospital draw the same figure?")


def _false_positive_rates(origins: object, y_test: object, p_test: object
                          ) -> tuple[dict[str, float], dict[str, float], str, str, int]:
    """Per hospital, the false-positive rate and the share of all its films wrongly called COVID.

    Also returns the hospital where COVID is commoner, the other one, and the first's normal films.
    """
    y = _labels(y_test, "y_test")
    p = _probabilities(p_test, "p_test", len(y))
    o = np.asarray(origins).astype(str)
    if o.shape != y.shape:
        raise AnswerProblem(f"origins must name the hospital of each test film, shape {y.shape}, "
                            f"got {o.shape}")
    names = list(np.unique(o))
    if len(names) != 2:
        raise AnswerProblem(f"origins must name exactly two hospitals, got {len(names)}")
    normals = {h: (o == h) & (y == 0) for h in names}
    if not all(m.any() for m in normals.values()):
        raise AnswerProblem("each hospital needs normal test films for a false-positive rate")
    common, rare = sorted(names, key=lambda h: -y[o == h].mean())
    fpr = {h: float(np.mean(p[m] > 0.5)) for h, m in normals.items()}
    all_films = {h: float(np.mean((p[o == h] > 0.5) & (y[o == h] == 0))) for h in names}
    return fpr, all_films, common, rare, int(normals[common].sum())


@_register("06.3", "the false-positive rate (normal films called COVID, p > 0.5) at the hospital where "
                   "COVID is common minus that at the hospital where it is rare",
           answer="your_gap", context={"origins": "origins_test", "y_test": "y_test", "p_test": "p_test"})
def _capstone_gap(answer: object, *, origins: object, y_test: object, p_test: object) -> tuple[str, str]:
    """``origins``, ``y_test``, ``p_test``: (n,) each, the test films' hospitals, labels and p(COVID)."""
    value = _number(answer, "a difference of two proportions (a number in [-1, 1])")
    if 1 < abs(value) <= 100:
        raise AnswerProblem(f"give the difference of two proportions (50 % is 0.5), not percentage points: "
                            f"got {value:g}")
    if abs(value) > 1:
        raise AnswerProblem(f"a difference of two proportions lies in [-1, 1], got {value:g}")
    fpr, all_films, common, rare, n_normal = _false_positive_rates(origins, y_test, p_test)
    reference = fpr[common] - fpr[rare]
    one_film = 100 / n_normal
    status, message = _by_points(
        value, reference, right_pp=0.05, close_pp=1.5 * one_film,
        hint=f"one normal film at the hospital where COVID is common is {one_film:.1f} percentage points; "
             "per hospital, the share of its normal films with p > 0.5.",
        detail="a model that reads the lungs would make this close to zero: the normal patients of "
               "both hospitals have the same healthy lungs; only their films differ.")
    if status != WRONG:
        return status, message
    if abs(reference) > 1e-9 and abs(value + reference) <= 5e-4:
        return WRONG, ("the sign is reversed. Reconsider: the hospital where COVID is common first, "
                       "minus the other.")
    if abs(value - (all_films[common] - all_films[rare])) <= 5e-4:
        return WRONG, ("that divides by all of each hospital's films. Reconsider: a false-positive rate "
                       "counts among the normal films only.")
    return status, message


_open("06.4", "the review: three sentences to the authors - what you found, the evidence, and what you "
              "would ask them for")


@_register("06.5", 'can this heat-map be trusted as evidence that the model reads the lungs? "yes" or "no"',
           answer="your_verdict")
def _capstone_verdict(answer: object) -> tuple[str, str]:
    if _yes_no(answer) == "no":
        return RIGHT, ("a map is evidence only together with the tests behind it; the tests of the "
                       "model's behaviour, not of the map, decided this one.")
    return WRONG, ("Reconsider: the map's own tests (sanity, faithfulness) say whether it depends on the "
                   "model; which rows tested what the model's decisions depend on, and what did they find?")


# ----------------------------------------------------------------------------- the entry point
def exercises_of(notebook: str) -> list[Exercise]:
    """The exercises of notebook "NN", in order."""
    return [e for e in EXERCISES.values() if e.notebook == notebook]


def _problem_with_id(exercise_id: object) -> str | None:
    if not isinstance(exercise_id, str):
        return f"the exercise id is a string such as \"02.3\", got {type(exercise_id).__name__}"
    if exercise_id in EXERCISES:
        return None
    notebook = exercise_id.split(".")[0]
    known = [e.id for e in exercises_of(notebook)]
    return (f"there is no exercise {exercise_id!r}; "
            + (f"notebook {notebook} has {', '.join(known)}" if known else
               "ids are \"NN.k\": notebook NN, exercise k, e.g. \"02.3\""))


def _judge(exercise_id: object, answer: object, context: dict[str, object]) -> Verdict:
    problem = _problem_with_id(exercise_id)
    if problem:
        return Verdict(str(exercise_id), PROBLEM, problem)
    ex = EXERCISES[exercise_id]
    if not ex.checkable:
        return Verdict(ex.id, OPEN, f"this one has no automatic check - compare with the solution "
                                    f"notebook ({ex.solutions}).")
    missing = [k for k in ex.context if k not in context]
    extra = [k for k in context if k not in ex.context]
    if missing or extra:
        what = (f"missing {', '.join(missing)}" if missing else "") + \
               ("; " if missing and extra else "") + (f"not expected: {', '.join(extra)}" if extra else "")
        return Verdict(ex.id, PROBLEM, f"call it as {ex.call()} ({what}).")
    try:
        status, message = ex.checker(answer, **context)
    except (AnswerProblem, ValueError) as e:  # the package's own input checks raise ValueError
        return Verdict(ex.id, PROBLEM, str(e))
    return Verdict(ex.id, status, message)


def check(exercise_id: str, answer: object, **context: object) -> Verdict:
    """Judge ``answer`` to exercise ``exercise_id``; print the verdict and return it.

    Args:
        exercise_id: "NN.k", e.g. "02.3".
        answer: the learner's answer; its type is the exercise's (see ``EXERCISES[id].call()``).
        **context: what the exercise's checker needs to compute the reference from this run
            (e.g. ``y_test=..., p_test=...`` for "02.1"); ``EXERCISES[id].context`` lists them.

    Returns:
        The :class:`Verdict` (``.right`` is True for a right answer). Problems with the call
        (unknown id, an answer of the wrong type or shape, missing keywords) are verdicts with
        status "problem", not exceptions.
    """
    verdict = _judge(exercise_id, answer, context)
    print(verdict)
    return verdict
