"""The trustworthiness study of notebook 05: PSC per saliency method, a reader quiz, Max-Sensitivity.

Zhang et al. (Radiol Artif Intell 2024) perturbed chest X-rays imperceptibly and asked whether
saliency maps change *in step with* the prediction: the prediction-saliency correlation (PSC,
:func:`course_utils.metrics.psc`). This module runs that study on a batch of images:

* :func:`explainers` -- one function per saliency method, ``images -> raw maps``, all explaining
  the same class (the positive one) before and after the perturbation;
* :func:`psc_study` -- given the clean images and an :class:`perturb.AttackResult`, the maps of
  every method before and after and PSC per method; :func:`psc_table` puts several studies
  (prediction attack, explanation attack, reference perturbations) into one tidy table beside
  the paper's numbers; :func:`imperceptibility_table` reports how visible each perturbation is;
* :func:`make_quiz` -- "spot the perturbed image" pairs in a seeded random order, with answers;
* :func:`max_sensitivity` -- Max- and Avg-Sensitivity (Yeh et al. 2019, as in Quantus), batched.

Shapes: images (n, H, W, C) float32 in [0, 1]; maps (n, H, W) float32 in each method's raw
units; probabilities (n,) of the positive class; divergences in nats.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd

from . import metrics, paper, perturb, saliency

__all__ = [
    "PSC_METHODS", "CRITERIA", "PSC_COLUMNS", "Explainer", "PSCStudy", "Quiz", "Sensitivity",
    "explainers", "psc_study", "psc_table", "imperceptibility_table", "make_quiz",
    "max_sensitivity",
]

#: The five methods of the PSC study (the five of the authors' PSC loop: vanilla backprop,
#: backprop x image, integrated gradients, Grad-CAM, SmoothGrad), in the course's order.
PSC_METHODS: tuple[str, ...] = ("vanilla", "gradxinput", "smoothgrad", "integrated_gradients",
                                "gradcam")

#: What a perturbation measures, by :attr:`perturb.AttackResult.method`: Zhang et al.'s
#: "sensitivity" (prediction attack) and "robustness" (explanation attack); the classic attacks
#: and random noise are references for interpreting them.
CRITERIA: dict[str, str] = {"prediction_attack": "sensitivity", "explanation_attack": "robustness",
                            "pgd": "reference", "fgsm": "reference", "noise": "reference"}

#: A saliency method with its settings fixed: images (n, H, W, C) -> raw maps (n, H, W).
Explainer = Callable[[np.ndarray], np.ndarray]


def explainers(model: keras.Model, methods: Sequence[str] = PSC_METHODS, *, target: int = 1,
               options: Mapping[str, Mapping] | None = None, batch_size: int = 64,
               seed: int = 0) -> dict[str, Explainer]:
    """``{method: f}`` with ``f(images) -> raw maps (n, H, W) float32`` via :func:`saliency.compute`.

    Every map explains the same class, ``target`` (default 1, the positive class, as the PSC code
    does per class), whatever the model predicts: after a prediction attack the predicted class
    changes, the question asked of the map does not. ``options``: extra keyword arguments per
    method (e.g. ``{"smoothgrad": {"smooth_samples": 10}, "gradcam": {"layer": "last_conv"}}``).
    SmoothGrad is re-seeded with ``seed`` on every call, so the clean and the perturbed batch (same
    size, same order) get the same noise draws (scaled by each image's range): the difference
    between their maps is the perturbation's, not SmoothGrad's sampling noise.
    """
    for m in methods:
        if m not in saliency.METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {', '.join(saliency.METHODS)}")
    options = dict(options or {})
    unknown = set(options) - set(methods)
    if unknown:
        raise ValueError(f"options given for methods not in {tuple(methods)}: {sorted(unknown)}")

    def make(method: str) -> Explainer:
        kwargs = dict(options.get(method, {}))

        def explain(images: np.ndarray) -> np.ndarray:
            return saliency.compute(model, images, method, target, batch_size=batch_size,
                                    seed=seed, **kwargs).raw

        explain.__name__ = f"explain_{method}"
        return explain

    return {m: make(m) for m in methods}


# --------------------------------------------------------------------------- the PSC study
@dataclass(frozen=True)
class PSCStudy:
    """One perturbation of a batch, the maps of several methods before and after, PSC per method.

    ``name``: a label for tables and plots (e.g. "prediction attack"); ``x``: (n, H, W, C) clean
    images; ``attack``: the :class:`perturb.AttackResult` (perturbed images, p before/after);
    ``maps_before`` / ``maps_after``: method -> (n, H, W) raw maps; ``psc``: method ->
    :class:`metrics.PSCResult`; ``seconds``: method -> wall time of its saliency maps.
    """

    name: str
    x: np.ndarray
    attack: perturb.AttackResult
    maps_before: dict[str, np.ndarray]
    maps_after: dict[str, np.ndarray]
    psc: dict[str, metrics.PSCResult]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def criterion(self) -> str:
        """"sensitivity", "robustness" or "reference" (see :data:`CRITERIA`)."""
        return CRITERIA.get(self.attack.method, "reference")

    @property
    def d_pred(self) -> np.ndarray:
        """(n,) prediction divergence per image, nats (the same for every method)."""
        return metrics.prediction_divergence(self.attack.p_before, self.attack.p_after)

    def d_sal(self, method: str) -> np.ndarray:
        """(n,) saliency divergence per image of ``method``, nats (NaNs replaced as in PSC)."""
        return self.psc[method].d_sal


def psc_study(explain: Mapping[str, Explainer], x: np.ndarray, attack: perturb.AttackResult, *,
              name: str | None = None, maps_before: Mapping[str, np.ndarray] | None = None,
              n_boot: int = 1000, seed: int = 0) -> PSCStudy:
    """Maps of every method on the clean and the perturbed images, and PSC per method.

    Args:
        explain: method -> :data:`Explainer` (see :func:`explainers`).
        x: (n, H, W, C) clean images, the ones ``attack`` perturbed (same order), n >= 3.
        attack: the result of any :mod:`perturb` function on ``x``.
        name: label of the study (default: ``attack.method`` with spaces).
        maps_before: method -> (n, H, W) maps of ``x`` already computed (e.g. by another study
            on the same images); methods missing here are computed.
        n_boot, seed: bootstrap resamples and seed of each PSC confidence interval.

    Returns:
        :class:`PSCStudy`. PSC is :func:`metrics.psc` of ``attack.p_before``/``p_after`` and the
        raw maps, per method (Zhang et al.'s definition, as the authors' code computes it).
    """
    x = np.asarray(x, np.float32)
    if x.shape != attack.x_adv.shape:
        raise ValueError(f"x {x.shape} and the attack's images {attack.x_adv.shape} differ: pass "
                         "the clean images the attack perturbed, in the same order")
    if not explain:
        raise ValueError("explain is empty: give at least one saliency method")
    before: dict[str, np.ndarray] = {}
    after: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    results: dict[str, metrics.PSCResult] = {}
    for method, f in explain.items():
        start = time.perf_counter()
        given = (maps_before or {}).get(method)
        before[method] = _check_maps(f(x) if given is None else given, x, method)
        after[method] = _check_maps(f(attack.x_adv), x, method)
        seconds[method] = time.perf_counter() - start
        results[method] = metrics.psc(attack.p_before, attack.p_after, before[method],
                                      after[method], n_boot=n_boot, seed=seed)
    return PSCStudy(name or attack.method.replace("_", " "), x, attack, before, after, results,
                    seconds)


def _check_maps(maps: np.ndarray, x: np.ndarray, method: str) -> np.ndarray:
    maps = np.asarray(maps, np.float32)
    if maps.shape != x.shape[:3]:
        raise ValueError(f"{method}: expected maps of shape {x.shape[:3]}, got {maps.shape}")
    return maps


#: Columns of :func:`psc_table`, in order.
PSC_COLUMNS: tuple[str, ...] = (
    "perturbation", "criterion", "method", "PSC", "CI low", "CI high", "n", "flipped",
    "mean |Δp|", "mean D_pred", "mean D_sal", "paper max PSC", "paper CI low", "paper CI high")


def psc_table(studies: Sequence[PSCStudy], labels: Mapping[str, str] | None = None
              ) -> pd.DataFrame:
    """One row per (study, method): PSC with its CI, what moved, and the paper's maximum.

    Columns (:data:`PSC_COLUMNS`): perturbation (study name), criterion (sensitivity, robustness
    or reference), method (readable name, ``labels`` default :data:`saliency.LABELS`), PSC,
    CI low, CI high, n (images), flipped (share of images whose predicted class changed),
    mean |Δp|, mean D_pred and mean D_sal (nats), and for the sensitivity and robustness rows
    the maximum PSC Zhang et al. report with its 95 % CI (:data:`paper.PSC`; NaN otherwise --
    the paper's number is a maximum over its methods and models, not a per-method value).
    """
    labels = saliency.LABELS if labels is None else labels
    rows = []
    for s in studies:
        ref = paper.PSC.get(s.criterion, (np.nan, np.nan, np.nan))
        for method, r in s.psc.items():
            rows.append({
                "perturbation": s.name, "criterion": s.criterion,
                "method": labels.get(method, method), "PSC": r.r, "CI low": r.ci_low,
                "CI high": r.ci_high, "n": r.n, "flipped": float(s.attack.flipped.mean()),
                "mean |Δp|": float(np.abs(s.attack.p_after - s.attack.p_before).mean()),
                "mean D_pred": float(r.d_pred.mean()), "mean D_sal": float(r.d_sal.mean()),
                "paper max PSC": ref[0], "paper CI low": ref[1], "paper CI high": ref[2]})
    return pd.DataFrame(rows, columns=list(PSC_COLUMNS))


def imperceptibility_table(perturbations: Mapping[str, tuple[np.ndarray, perturb.AttackResult]]
                           ) -> pd.DataFrame:
    """How visible each perturbation is (:func:`perturb.imperceptibility`), one row each.

    ``perturbations``: {name: (clean images (n, H, W, C), the AttackResult made from them)}; for
    studies, ``{s.name: (s.x, s.attack) for s in studies}``. Columns: eps (the budget), max L∞
    (intensity units, <= eps), mean and minimum PSNR (dB, data range 1; higher = less visible),
    mean and minimum SSIM (1 = identical); index: the names.
    """
    rows = {}
    for name, (x, attack) in perturbations.items():
        imp = perturb.imperceptibility(x, attack.x_adv)
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


# --------------------------------------------------------------------------- Max-Sensitivity
@dataclass(frozen=True)
class Sensitivity:
    """Max- and Avg-Sensitivity per image (Yeh et al. 2019; lower = a steadier explanation).

    ``max`` / ``mean``: (n,) float64, the largest and the mean over noise samples of
    ``||a(x) - a(x')||_F / ||a(x)||_F`` (NaN for an all-zero map a(x)); ``radius``: the noise
    U(-radius, radius) per pixel, intensity units; ``n_samples``: noise draws per image.
    """

    max: np.ndarray
    mean: np.ndarray
    radius: float
    n_samples: int


def max_sensitivity(explain: Explainer, x: np.ndarray, *, radius: float = 0.2,
                    n_samples: int = 10, seed: int = 0, clip: bool = True) -> Sensitivity:
    """Max-Sensitivity of an explanation under uniform noise, batched over images.

    For each of ``n_samples`` draws, every image gets its own noise U(-radius, radius) per pixel
    (clipped to [0, 1] when ``clip``); the whole batch is explained in one ``explain`` call. The
    ratio ``||a(x) - a(x')||_F / ||a(x)||_F`` is Quantus' ``MaxSensitivity`` with its defaults
    (radius 0.2, no normalisation, no absolute value; Quantus draws 200 samples). It ignores the
    prediction: a map that moves because the prediction moved counts as much as one that moves
    for nothing -- the opposite of what PSC rewards.

    Args:
        explain: images (n, H, W, C) -> maps (n, H, W), e.g. from :func:`explainers`.
        x: (n, H, W, C) images in [0, 1]. radius: noise half-width, intensity units, > 0.
        n_samples: noise draws (>= 1). seed: for the noise. clip: keep x' inside [0, 1].
    """
    x = np.asarray(x, np.float32)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch (n, H, W, C), got shape {x.shape}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0 (intensity units), got {radius!r}")
    if int(n_samples) != n_samples or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    rng = np.random.default_rng(seed)
    base = np.asarray(explain(x), np.float64).reshape(len(x), -1)
    norm = np.linalg.norm(base, axis=1)
    ratios = np.empty((int(n_samples), len(x)))
    for k in range(int(n_samples)):
        noisy = x + rng.uniform(-radius, radius, x.shape).astype(np.float32)
        noisy = np.clip(noisy, 0.0, 1.0) if clip else noisy
        moved = np.asarray(explain(noisy), np.float64).reshape(len(x), -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[k] = np.where(norm > 0, np.linalg.norm(moved - base, axis=1) / norm, np.nan)
    return Sensitivity(ratios.max(axis=0), ratios.mean(axis=0), float(radius), int(n_samples))
