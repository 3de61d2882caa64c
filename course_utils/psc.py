"""The prediction-saliency correlation (PSC) of Zhang et al. (Radiol Artif Intell 2024).

Zhang et al. perturbed chest X-rays imperceptibly and asked whether saliency maps change *in
step with* the prediction. For each image, ``D_pred`` is the Jensen-Shannon divergence between
the predicted distributions before and after (:func:`prediction_divergence`) and ``D_sal`` the
divergence between the maps seen as distributions over pixels (:func:`saliency_divergence`);
PSC is their Pearson correlation across images (:func:`psc`), as the authors' public code
computes it, with a bootstrap interval.

:func:`psc_study` runs this for several saliency methods (a mapping of method id to
:class:`course_utils.saliency.Explainer`) on one perturbation of a batch, and :func:`psc_table`
puts several studies beside the paper's numbers.

Shapes: images (n, H, W, C) float32 in [0, 1]; maps (n, H, W) in each method's raw units;
probabilities (n,) of the positive class; divergences in nats.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sp_stats

from . import _checks, metrics, paper, perturb, stats

#: The five methods of the PSC study (the five of the authors' PSC loop: vanilla backprop,
#: backprop x image, integrated gradients, Grad-CAM, SmoothGrad), in the course's order.
METHODS: tuple[str, ...] = ("vanilla", "gradxinput", "smoothgrad", "integrated_gradients",
                            "gradcam")

#: What a perturbation measures, by :attr:`perturb.AttackResult.method`: Zhang et al.'s
#: "sensitivity" (prediction attack) and "robustness" (explanation attack); the classic attacks
#: and random noise are references for interpreting them.
CRITERIA: dict[str, str] = {"prediction_attack": "sensitivity", "explanation_attack": "robustness",
                            "pgd": "reference", "fgsm": "reference", "noise": "reference"}

#: An explainer: ``explain(images, targets) -> raw maps (n, H, W)``.
Explain = Callable[[np.ndarray, object], np.ndarray]


def prediction_divergence(p_before: np.ndarray, p_after: np.ndarray) -> np.ndarray:
    """D_pred: JSD between the Bernoulli distributions [p, 1 - p] before and after, per image.

    Args:
        p_before: (n,) probabilities of the positive class in [0, 1] (an (n, 1) model output
            is accepted).
        p_after: (n,) the same after the perturbation.

    Returns:
        (n,) in [0, ln 2] nats (0 = unchanged; ln 2 = a confident prediction flipped to the
        opposite certainty), with the DIAL-RPI clamp of :func:`jensen_shannon`.
    """
    pb, pa = _checks.probabilities(p_before, "p_before"), _checks.probabilities(p_after, "p_after")
    _checks.same_shape(pb, pa, ("p_before", "p_after"))
    return metrics.jensen_shannon(np.stack([pb, 1 - pb], -1), np.stack([pa, 1 - pa], -1))


def _saliency_pair(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = _checks.maps(before, "maps_before", (3, 4))
    a = _checks.maps(after, "maps_after", (3, 4))
    _checks.same_shape(b, a, ("maps_before", "maps_after"))
    return b, a


def _pixel_distribution(maps: np.ndarray) -> np.ndarray:
    """|map| summed over channels (4-D), flattened and divided by its sum: (m, pixels); NaN rows
    for all-zero maps.
    """
    s = np.abs(maps.astype(np.float64))
    if s.ndim == 4:
        s = s.sum(axis=-1)
    s = s.reshape(len(s), -1)
    total = s.sum(axis=1, keepdims=True)
    return np.divide(s, total, out=np.full_like(s, np.nan), where=total > 0)


def saliency_divergence(maps_before: np.ndarray, maps_after: np.ndarray) -> np.ndarray:
    """D_sal: JSD between saliency maps seen as distributions over pixels, per image.

    As in the DIAL-RPI code: |map|, summed over channels for (n, H, W, C) maps, flattened and
    divided by its sum, then :func:`jensen_shannon` with the 1e-7 clamp on the mixture.

    Args:
        maps_before: (n, H, W) or (n, H, W, C) raw saliency maps.
        maps_after: the maps after the perturbation, same shape.

    Returns:
        (n,) nats in [~0, ln 2]. NaN where either map is all zero (no distribution); :func:`psc`
        replaces those by the mean, as the authors' code does. Note the DIAL clamp: with
        H x W pixels the average pixel holds 1 / (H W) of the mass, so for large maps many
        mixture values fall below 1e-7 and D_sal is biased down.
    """
    b, a = _saliency_pair(maps_before, maps_after)
    out = np.empty(len(b))
    for sl in _checks.chunks(len(b), b[0].size):
        out[sl] = metrics.jensen_shannon(_pixel_distribution(b[sl]), _pixel_distribution(a[sl]), axis=-1)
    return out


@dataclass(frozen=True)
class PSCResult:
    """Prediction-saliency correlation (Zhang et al., Radiology: AI 2024) with a bootstrap CI.

    Attributes:
        r: PSC, the Pearson correlation across images between ``d_pred`` and ``d_sal``, in
            [-1, 1]; high = the saliency map changes when (and only when) the prediction does.
        ci_low, ci_high: percentile-bootstrap interval over images at ``confidence``.
        p_value: two-sided p-value of :func:`scipy.stats.pearsonr` (H0: r = 0).
        d_pred: (n,) prediction divergences, nats. d_sal: (n,) saliency divergences, nats
            (NaNs already replaced by their mean).
        n: number of images. n_boot: resamples drawn. n_boot_valid: resamples where r was
            defined (neither side constant); the interval uses only these.
        n_filled: images whose NaN D_sal (an all-zero map) was replaced by the mean.
        confidence: the interval's confidence level.
        undefined: empty, or why PSC could not be computed (e.g. every map of the method was
            all zero, as Grad-CAM's can be for a class the model reads as absence of features);
            then ``r``, the CI, the p-value and ``d_sal`` are NaN (see :func:`psc_study`).
    """

    r: float
    ci_low: float
    ci_high: float
    p_value: float
    d_pred: np.ndarray
    d_sal: np.ndarray
    n: int
    n_boot: int
    n_boot_valid: int
    n_filled: int
    confidence: float
    undefined: str = ""

    @property
    def estimate(self) -> stats.Estimate:
        """PSC and its interval as a :class:`stats.Estimate`."""
        return stats.Estimate(self.r, self.ci_low, self.ci_high)

    def __str__(self) -> str:
        if self.undefined:
            return f"PSC undefined ({self.undefined}, n = {self.n})"
        return (f"PSC = {self.r:.2f} ({self.confidence:.0%} CI {self.ci_low:.2f}\u2013{self.ci_high:.2f}, "
                f"n = {self.n})")


class UndefinedPSC(ValueError):
    """PSC cannot be computed for these inputs: every map is all zero, or D_pred or D_sal is
    the same for every image (a correlation needs both sides to vary).
    """


#: Confidence level of PSC's bootstrap interval unless :func:`psc` is asked for another.
CONFIDENCE = 0.95


def psc(p_before: np.ndarray, p_after: np.ndarray, maps_before: np.ndarray, maps_after: np.ndarray,
        n_boot: int = 1000, seed: int = 0, confidence: float = CONFIDENCE) -> PSCResult:
    """Prediction-saliency correlation (PSC) of one model, saliency method and class.

    For each image i, ``D_pred_i = JSD([p_i, 1 - p_i] || [p'_i, 1 - p'_i])`` and
    ``D_sal_i = JSD(S_i || S'_i)`` with S the map as a distribution over pixels (see
    :func:`prediction_divergence`, :func:`saliency_divergence`); NaNs in D_sal (all-zero maps)
    are replaced by the mean of D_sal, and ``PSC = pearsonr(D_pred, D_sal)`` across images --
    as in the authors' public code (DIAL-RPI "Compute PSC"). The paper then averages over classes;
    a binary classifier has one (and D_pred is the same whichever class's p is passed).

    Args:
        p_before: (n,) probability of the positive class before the perturbation, in [0, 1]
            (an (n, 1) model output is accepted).
        p_after: (n,) the same after the perturbation.
        maps_before: (n, H, W) or (n, H, W, C) raw saliency maps for that class.
        maps_after: the maps of the perturbed images, same shape.
        n_boot: bootstrap resamples of the images (each recomputes r); resamples where either
            side is constant are skipped.
        seed: for the resampling.
        confidence: of the interval.

    Returns:
        :class:`PSCResult`; ``str(result)`` reads "PSC = 0.21 (95% CI 0.08–0.34, n = 200)".

    Raises:
        ValueError: mismatched shapes, n < 3, probabilities not finite or outside [0, 1].
        UndefinedPSC (a ValueError): all saliency maps zero, or D_pred or D_sal constant over
        images (e.g. the maps or the predictions did not change at all).
    """
    pb, pa = _checks.probabilities(p_before, "p_before"), _checks.probabilities(p_after, "p_after")
    _checks.same_shape(pb, pa, ("p_before", "p_after"))
    mb, ma = _saliency_pair(maps_before, maps_after)
    n = len(pb)
    if len(mb) != n:
        raise ValueError(f"p_before has {n} images but maps_before has {len(mb)} images")
    if n < 3:
        raise ValueError(f"PSC needs at least 3 images, got {n}")
    _checks.bootstrap_args(n_boot, confidence)
    d_pred = prediction_divergence(pb, pa)
    d_sal = saliency_divergence(mb, ma)
    missing = np.isnan(d_sal)
    if missing.all():
        raise UndefinedPSC("every image has an all-zero saliency map (before or after); D_sal is undefined")
    d_sal[missing] = d_sal[~missing].mean()
    for name, d, what in (("D_pred", d_pred, "predicted probabilities"), ("D_sal", d_sal, "saliency maps")):
        if (d == d[0]).all():
            raise UndefinedPSC(f"{name} is constant ({d[0]:.3g} nats for all {n} images): the {what} changed "
                             f"by the same amount for every image (e.g. not at all), so their correlation "
                             f"with the other side (PSC) is undefined")
    res = sp_stats.pearsonr(d_pred, d_sal)
    boot = stats.bootstrap(n, n_boot, seed, 2, lambda idx: stats.pearson(d_pred[idx], d_sal[idx]))
    lo, hi = stats.percentile_ci(boot, confidence)
    return PSCResult(r=float(res.statistic), ci_low=float(lo), ci_high=float(hi), p_value=float(res.pvalue),
                     d_pred=d_pred, d_sal=d_sal, n=n, n_boot=int(n_boot),
                     n_boot_valid=int(np.isfinite(boot).sum()), n_filled=int(missing.sum()),
                     confidence=float(confidence))


@dataclass(frozen=True)
class PSCStudy:
    """One perturbation of a batch, the maps of several methods before and after, PSC per method.

    ``name``: a label for tables and plots (e.g. "prediction attack"); ``x``: (n, H, W, C) clean
    images; ``attack``: the :class:`perturb.AttackResult` (perturbed images, p before/after);
    ``maps_before`` / ``maps_after``: method -> (n, H, W) raw maps; ``psc``: method ->
    :class:`PSCResult`; ``seconds``: method -> wall time of its saliency maps.
    """

    name: str
    x: np.ndarray
    attack: perturb.AttackResult
    maps_before: dict[str, np.ndarray]
    maps_after: dict[str, np.ndarray]
    psc: dict[str, PSCResult]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def criterion(self) -> str:
        """"sensitivity", "robustness" or "reference" (see :data:`CRITERIA`)."""
        return CRITERIA.get(self.attack.method, "reference")

    @property
    def d_pred(self) -> np.ndarray:
        """(n,) prediction divergence per image, nats (the same for every method)."""
        return prediction_divergence(self.attack.p_before, self.attack.p_after)

    def d_sal(self, method: str) -> np.ndarray:
        """(n,) saliency divergence per image of ``method``, nats (NaNs replaced as in PSC)."""
        return self.psc[method].d_sal


def psc_study(explain: Mapping[str, Explain], x: np.ndarray, attack: perturb.AttackResult, *,
              target: int = 1, name: str | None = None,
              maps_before: Mapping[str, np.ndarray] | None = None, n_boot: int = 1000,
              seed: int = 0) -> PSCStudy:
    """Maps of every method on the clean and the perturbed images, and PSC per method.

    Args:
        explain: method id -> explainer (e.g. :func:`course_utils.saliency.explainer`).
        x: (n, H, W, C) clean images, the ones ``attack`` perturbed (same order), n >= 3.
        attack: the result of any :mod:`perturb` function on ``x``.
        target: the class every map explains (default 1, the positive class, as the PSC code
            does per class), whatever the model predicts: after a prediction attack the
            predicted class changes, the question asked of the map does not.
        name: label of the study (default: ``attack.method`` with spaces).
        maps_before: method -> (n, H, W) maps of ``x`` already computed (e.g. by another study
            on the same images); methods missing here are computed.
        n_boot: bootstrap resamples of each PSC confidence interval.
        seed: for the resampling.

    Returns:
        :class:`PSCStudy`. PSC is :func:`psc` of ``attack.p_before``/``p_after`` and the
        raw maps, per method (Zhang et al.'s definition, as the authors' code computes it).
        A method for which PSC is undefined (:class:`UndefinedPSC`, e.g. all its maps are
        zero) gets a NaN result whose ``undefined`` says why, and a printed note; the other
        methods are unaffected.
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
    results: dict[str, PSCResult] = {}
    for method, f in explain.items():
        start = time.perf_counter()
        given = (maps_before or {}).get(method)
        before[method] = _checks.maps_of(f(x, target) if given is None else given, x, method)
        after[method] = _checks.maps_of(f(attack.x_adv, target), x, method)
        seconds[method] = time.perf_counter() - start
        try:
            results[method] = psc(attack.p_before, attack.p_after, before[method], after[method],
                                  n_boot=n_boot, seed=seed)
        except UndefinedPSC as e:
            results[method] = _undefined(attack, len(x), n_boot, str(e))
            print(f"note: {name or attack.method}, {method}: PSC undefined - {e}", flush=True)
    return PSCStudy(name or attack.method.replace("_", " "), x, attack, before, after, results,
                    seconds)


def _undefined(attack: perturb.AttackResult, n: int, n_boot: int, why: str) -> PSCResult:
    """A :class:`PSCResult` of NaNs saying ``why`` PSC could not be computed."""
    d_pred = prediction_divergence(attack.p_before, attack.p_after)
    return PSCResult(r=np.nan, ci_low=np.nan, ci_high=np.nan, p_value=np.nan, d_pred=d_pred,
                     d_sal=np.full(n, np.nan), n=n, n_boot=int(n_boot), n_boot_valid=0,
                     n_filled=0, confidence=CONFIDENCE, undefined=why)


#: Columns of :func:`psc_table`, in order.
COLUMNS: tuple[str, ...] = (
    "perturbation", "criterion", "method", "PSC", "CI low", "CI high", "n", "flipped",
    "mean |Δp|", "mean D_pred", "mean D_sal", "paper max PSC", "paper CI low", "paper CI high")


def psc_table(studies: Sequence[PSCStudy]) -> pd.DataFrame:
    """One row per (study, method): PSC with its CI, what moved, and the paper's maximum.

    Columns (:data:`COLUMNS`): perturbation (study name), criterion (sensitivity, robustness
    or reference), method (its id; display names are applied where the table is shown), PSC,
    CI low, CI high, n (images), flipped (share of images whose predicted class changed),
    mean |Δp|, mean D_pred and mean D_sal (nats), and for the sensitivity and robustness rows
    the maximum PSC Zhang et al. report with its 95 % CI (:data:`paper.PSC`; NaN otherwise --
    the paper's number is a maximum over its methods and models, not a per-method value).
    """
    rows = []
    for s in studies:
        ref = paper.PSC.get(s.criterion, (np.nan, np.nan, np.nan))
        for method, r in s.psc.items():
            rows.append({
                "perturbation": s.name, "criterion": s.criterion,
                "method": method, "PSC": r.r, "CI low": r.ci_low,
                "CI high": r.ci_high, "n": r.n, "flipped": float(s.attack.flipped.mean()),
                "mean |Δp|": float(np.abs(s.attack.p_after - s.attack.p_before).mean()),
                "mean D_pred": float(r.d_pred.mean()), "mean D_sal": float(r.d_sal.mean()),
                "paper max PSC": ref[0], "paper CI low": ref[1], "paper CI high": ref[2]})
    return pd.DataFrame(rows, columns=list(COLUMNS))
