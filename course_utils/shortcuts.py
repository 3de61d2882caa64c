"""Is the label predictable without the disease? Source-shortcut checks for chest X-ray data.

Real two-source collections (COVID films from one place, normal films from another) can be
told apart by things that have nothing to do with the lungs: exposure and processing, film
size, borders, burnt-in text, the patients' age (DeGrave et al. 2021). These checks measure
how much of the label such things carry, on any :class:`course_utils.data.CourseCXR`:

* :func:`image_statistics` + :func:`statistics_only` — a logistic regression on global image
  statistics (intensity histogram, border and corner brightness, texture, original size):
  it cannot see a lesion, so its accuracy is what the *source* gives away;
* :func:`by_origin` — accuracy and mean prediction per image source (from the data set's
  metadata), to see whether the model sorts images by where they came from;
* :func:`red_flag` — the warning a reviewer should raise when a COVID classifier is
  near-perfect;
* :func:`evidence` — the verdicts printed from the probe models of notebook 03 (a model that
  sees everything but the lungs, one that sees the corners only, ...);
* :func:`site_films`, :func:`by_site` and :func:`site_evidence` — on a phantom set with two
  acquisition sites: accuracy per site, with the same patients filmed at the other site and
  with their opacities removed, and the verdicts those numbers support.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import _checks, config, data, metrics

__all__ = [
    "NEAR_PERFECT",
    "SITE_NAMES",
    "SITE_TESTS",
    "StatisticsOnly",
    "by_origin",
    "by_site",
    "evidence",
    "image_statistics",
    "red_flag",
    "site_evidence",
    "site_films",
    "statistics_only",
]

#: Accuracy / ROC AUC from which a COVID-vs-normal classifier is "too good to be true":
#: published near-perfect models turned out to read the source (DeGrave et al. 2021), and a
#: review of 62 published COVID-19 imaging models found none fit for clinical use (Roberts et al.
#: 2021).
NEAR_PERFECT = {"accuracy": 0.98, "auc": 0.99}

_HIST_BINS = 16

#: Display names of the phantom's acquisition sites 0 and 1 (:attr:`phantom.PhantomSet.site`).
SITE_NAMES: tuple[str, str] = ("site A", "site B")
#: The test sets of :func:`site_films`: the test films as they are, the same patients with the
#: other site's processing, and the same films without their opacities.
SITE_TESTS: tuple[str, str, str] = ("as filmed", "filmed at the other site", "lesions removed")


def image_statistics(images: np.ndarray, original_shapes: np.ndarray | None = None, *,
                     exclude: np.ndarray | None = None) -> pd.DataFrame:
    """Global statistics of each image: features a source detector can use, no anatomy.

    Args:
        images: ``(n, H, W, 1)`` or ``(n, H, W)`` in [0, 1].
        original_shapes: optional ``(n, 2)`` height, width in pixels before resizing (film
            size and aspect ratio differ between sources).
        exclude: optional ``(H, W)`` bool: pixels left out of the histogram, percentiles and
            texture (e.g. :func:`course_utils.data.lung_proxy`, so that a diffuse opacity in
            the lungs cannot shift them: what is left describes the film, not the disease).

    Returns:
        ``(n, k)`` DataFrame: a 16-bin intensity histogram (fractions of pixels), mean, standard
        deviation and 1/50/99th percentiles, the mean and standard deviation of the outer
        border (6 % of the side) and the mean of each corner square (``data.CORNER_FRACTION`` of the
        side, as in :func:`course_utils.data.corner_masks`, without the ``exclude`` pixels),
        texture (mean absolute Laplacian, i.e. noise and sharpness), and — when given — log
        height, log width and aspect ratio.
    """
    from scipy import ndimage

    from .data import frame_mask

    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"images must be (n, H, W) or (n, H, W, 1), got {np.shape(images)}")
    n, h, w = x.shape
    use = np.ones((h, w), bool) if exclude is None else ~np.asarray(exclude, bool)
    if use.shape != (h, w) or not use.any():
        raise ValueError(f"exclude must be ({h}, {w}) bool and leave some pixels, got {np.shape(exclude)}")
    flat = x[:, use]
    hist = np.stack([np.histogram(row, bins=_HIST_BINS, range=(0.0, 1.0))[0] for row in flat]) / flat.shape[1]
    cols: dict[str, np.ndarray] = {f"hist {i:02d}": hist[:, i] for i in range(_HIST_BINS)}
    cols |= {"mean": flat.mean(1), "std": flat.std(1),
             **{f"p{q:02d}": v for q, v in zip((1, 50, 99), np.percentile(flat, (1, 50, 99), axis=1))}}
    frame = frame_mask((h, w))
    cols |= {"border mean": x[:, frame].mean(1), "border std": x[:, frame].std(1)}
    k = max(1, int(round(data.CORNER_FRACTION * min(h, w))))
    first, last = slice(0, k), slice(-k, None)
    for name, (rs, cs) in {"top-left": (first, first), "top-right": (first, last),
                           "bottom-left": (last, first), "bottom-right": (last, last)}.items():
        corner = np.zeros((h, w), bool)
        corner[rs, cs] = True
        inside = corner & use if (corner & use).any() else corner  # never the excluded pixels
        cols[f"corner {name}"] = x[:, inside].mean(1)
    cols["texture"] = np.array([np.abs(ndimage.laplace(im))[use].mean() for im in x])
    if original_shapes is not None:
        shapes = np.asarray(original_shapes, dtype=np.float64)
        if shapes.shape != (n, 2):
            raise ValueError(f"original_shapes must be ({n}, 2), got {shapes.shape}")
        cols |= {"log height": np.log(shapes[:, 0]), "log width": np.log(shapes[:, 1]),
                 "aspect": shapes[:, 1] / shapes[:, 0]}
    return pd.DataFrame(cols)


@dataclass(frozen=True)
class StatisticsOnly:
    """Result of :func:`statistics_only`.

    ``p_test``: ``(n_test,)`` predicted probability of COVID on the test split; ``report``: its
    :class:`metrics.BinaryReport`; ``weights``: standardised logistic-regression coefficients
    per feature, largest magnitude first (positive = pushes towards COVID).
    """

    p_test: np.ndarray
    report: metrics.BinaryReport
    weights: pd.Series


def statistics_only(cxr_data, *, target: np.ndarray | None = None, n_boot: int = 1000,
                    seed: int = config.SEED) -> StatisticsOnly:
    """Train a logistic regression on :func:`image_statistics` of the training split; test it.

    ``cxr_data``: a :class:`course_utils.data.CourseCXR`. The statistics leave out the central
    box where the lungs lie (:func:`course_utils.data.lung_proxy`), so the model sees the
    film's character (exposure, borders, corners, texture, size) but neither the lungs nor
    their opacities: what it achieves is a lower bound on how much of the label the film
    itself — on two-source data, the source — gives away. ``target``: what to predict instead
    of the labels, ``(n,)`` 0/1 for every image (e.g. the phantom's acquisition site); the
    report then scores that target (1 plays the part of "COVID").
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .data import lung_proxy

    feats = image_statistics(cxr_data.images, getattr(cxr_data, "original_shapes", None),
                             exclude=lung_proxy(cxr_data.image_size))
    y = np.asarray(cxr_data.labels if target is None else target)
    if y.shape != np.shape(cxr_data.labels):
        raise ValueError(f"target must be ({len(cxr_data.labels)},), one value per image, got {y.shape}")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    clf.fit(feats.iloc[cxr_data.train_idx], y[cxr_data.train_idx])
    p = clf.predict_proba(feats.iloc[cxr_data.test_idx])[:, 1].astype(np.float32)
    coef = pd.Series(clf[-1].coef_[0], index=feats.columns)
    weights = coef.reindex(coef.abs().sort_values(ascending=False).index)
    report = metrics.binary_report(y[cxr_data.test_idx], p, n_boot=n_boot, seed=seed)
    return StatisticsOnly(p, report, weights)


def by_origin(origins: np.ndarray, labels: np.ndarray, probs: np.ndarray,
              threshold: float = 0.5) -> pd.DataFrame:
    """Per image source: images, COVID share, accuracy and mean p(COVID).

    ``origins``, ``labels``, ``probs``: ``(n,)`` each (source names, 0/1 labels, probabilities
    in [0, 1]). A source whose images are all of one class and all predicted correctly is
    consistent with the model recognising the source rather than the disease — it does not
    prove it (the classes differ in the disease as well).
    """
    origins = np.asarray(origins, dtype=object)
    y = np.asarray(labels)
    p = _checks.probabilities(probs, "probs")
    if not (origins.shape == y.shape == p.shape) or origins.ndim != 1:
        raise ValueError(f"origins, labels and probs must be (n,) each: "
                         f"{origins.shape}, {y.shape}, {p.shape}")
    frame = pd.DataFrame({"source": origins, "y": y, "p": p, "correct": (p > threshold) == (y == 1)})
    table = frame.groupby("source").agg(images=("y", "size"), covid_share=("y", "mean"),
                                        accuracy=("correct", "mean"), mean_p=("p", "mean"))
    table.columns = ["images", "COVID share", "accuracy", "mean p(COVID)"]
    return table.sort_values("images", ascending=False)


def red_flag(report: metrics.BinaryReport) -> str | None:
    """A warning when a COVID-vs-normal model is near-perfect (see :data:`NEAR_PERFECT`), else None."""
    acc, auc = report.accuracy.value, report.auc.value
    if not (acc >= NEAR_PERFECT["accuracy"] or auc >= NEAR_PERFECT["auc"]):
        return None
    return (f"RED FLAG: accuracy {acc:.1%} and ROC AUC {auc:.3f} on {report.n} test images. A review "
            "of 62 published COVID-19 imaging models found none fit for clinical use, mostly because "
            "of flaws and biases in their data (Roberts et al. 2021); a near-perfect score on data from "
            "two collections usually means the model recognises the collection (exposure, borders, "
            "text, patient age) rather than the disease (DeGrave et al. 2021). Check what the label "
            "is predictable from without the lungs before trusting it.")


def evidence(aucs: Mapping[str, float], *, full: str = "full image", strong: float = 0.9,
             some: float = 0.75) -> list[str]:
    """Verdict sentences from probe models' ROC AUCs (printed in notebook 03).

    ``aucs`` maps a probe's name to its test ROC AUC; recognised names: ``full`` (the course
    model), "lungs hidden", "corners only", "lungs only", "image statistics only". ``strong``
    and ``some``: AUC thresholds for "the label is predictable" / "partly predictable".
    """
    def level(a: float) -> str:
        return "well" if a >= strong else ("partly" if a >= some else "barely or not")

    out = []
    if (a := aucs.get("lungs hidden")) is not None:
        share = "much" if a >= strong else ("part" if a >= some else "little")
        out.append(f"With the lungs blacked out a CNN still predicts the label {level(a)} (AUC {a:.2f}): "
                   f"{share} of the label lies outside the lungs"
                   + (" — a shortcut is available to the model." if a >= some else "."))
    if (a := aucs.get("corners only")) is not None:
        out.append(f"From the four corners alone (where markers and text sit) it predicts the label "
                   f"{level(a)} (AUC {a:.2f})"
                   + (": corner content differs between the classes (markers, text or collimation)."
                      if a >= some else ": no evidence that corner content carries the label."))
    if (a := aucs.get("image statistics only")) is not None:
        out.append(f"Statistics of the film outside the lungs (histogram, borders, texture, size) predict it "
                   f"{level(a)} (AUC {a:.2f})" + (": the classes differ in image character — on two-source "
                                                  "data, typically the source." if a >= some else "."))
    if (a := aucs.get("lungs only")) is not None and (f := aucs.get(full)) is not None:
        out.append(f"A CNN that sees only the lungs reaches AUC {a:.2f} against {f:.2f} for the full image"
                   + (" — most of the performance survives inside the lungs" if f - a < 0.05 else
                      f" — {f - a:.2f} of AUC came from outside the lungs")
                   + " (the lungs also carry the film's exposure and grain, so this alone does not show "
                     "that the disease was learned).")
    if not out:
        raise ValueError(f"no recognised probe in {sorted(aucs)}")
    return out


# ------------------------------------------------------------------ two acquisition sites
def by_site(labels: np.ndarray, sites: np.ndarray, probs: Mapping[str, np.ndarray], *,
            threshold: float = 0.5, confidence: float = 0.95) -> pd.DataFrame:
    """Accuracy, sensitivity and specificity per site, for several test sets of the same patients.

    Args:
        labels: ``(n,)`` 0/1, 1 = COVID.
        sites: ``(n,)`` 0/1, the site that filmed each patient (:data:`SITE_NAMES`); a test set
            that re-films the patients elsewhere keeps this grouping.
        probs: test-set name -> ``(n,)`` p(COVID) in [0, 1] for the same patients in the same
            order (e.g. :data:`SITE_TESTS`).
        threshold: a film is called COVID when p > ``threshold``.
        confidence: of the Wilson intervals.

    Returns:
        Tidy DataFrame indexed by (test set, site), the sites followed by "all", with columns
        ``images``, ``COVID share``, ``accuracy``, ``accuracy CI low``, ``accuracy CI high``,
        ``sensitivity`` and ``specificity`` (proportions in [0, 1]; NaN without cases of that
        class). A site with no images is left out.
    """
    from .stats import proportion

    y = np.asarray(labels).astype(int).ravel()
    s = np.asarray(sites).astype(int).ravel()
    if y.shape != s.shape or not set(np.unique(y)) <= {0, 1} or not set(np.unique(s)) <= {0, 1}:
        raise ValueError(f"labels and sites must be (n,) 0/1 each, got {np.shape(labels)}, {np.shape(sites)}")
    if not probs:
        raise ValueError("probs is empty: give at least one test set")
    groups = {**{name: s == k for k, name in enumerate(SITE_NAMES)}, "all": np.ones_like(s, bool)}
    rows = []
    for test, p in probs.items():
        p = _checks.probabilities(np.asarray(p, dtype=np.float64).ravel(), f"probs[{test!r}]")
        if p.shape != y.shape:
            raise ValueError(f"probs[{test!r}] has shape {p.shape}, labels {y.shape}")
        correct = (p > threshold) == (y == 1)
        for site, sel in groups.items():
            if not sel.any():
                continue
            acc = proportion(int(correct[sel].sum()), int(sel.sum()), confidence)
            pos, neg = sel & (y == 1), sel & (y == 0)
            rows.append({"test set": test, "site": site, "images": int(sel.sum()),
                         "COVID share": float(y[sel].mean()), "accuracy": acc.value,
                         "accuracy CI low": acc.lo, "accuracy CI high": acc.hi,
                         "sensitivity": float(correct[pos].mean()) if pos.any() else np.nan,
                         "specificity": float(correct[neg].mean()) if neg.any() else np.nan})
    return pd.DataFrame(rows).set_index(["test set", "site"])


def site_films(ps, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The films of :data:`SITE_TESTS` for rows of a phantom set with two acquisition sites.

    Args:
        ps: a :class:`course_utils.phantom.PhantomSet` made with ``site_strength`` > 0.
        indices: rows of ``ps`` (e.g. a test split); default all.

    Returns:
        test-set name -> ``(m, H, W, 1)`` float32 images in [0, 1], the same m patients in the
        same order: as filmed, filmed at the other site (:func:`phantom.other_site`) and
        without their opacities (:func:`phantom.remove_lesions`) -- exact re-renderings in
        which only the site's processing, or only the opacities, differ. Give each to a model
        and the probabilities to :func:`by_site`.
    """
    from . import phantom

    if ps.params.site_strength <= 0:
        raise ValueError("this phantom set has no sites (site_strength=0): make it with site_strength > 0")
    rows = np.arange(len(ps)) if indices is None else _checks.indices(indices, len(ps))
    return {SITE_TESTS[0]: ps.images[rows], SITE_TESTS[1]: phantom.other_site(ps, rows).images,
            SITE_TESTS[2]: phantom.remove_lesions(ps, rows).images}


def site_evidence(table: pd.DataFrame, *, margin: float = 0.05) -> list[str]:
    """Verdict sentences from a :func:`by_site` table of the :data:`SITE_TESTS` (notebook 03).

    ``margin``: the smallest change of accuracy or sensitivity (a proportion, e.g. 0.05 = 5
    points) called a change; smaller ones, or overlapping intervals for the two sites, are
    reported as no clear difference.
    """
    as_filmed, elsewhere, no_lesions = SITE_TESTS
    missing = {as_filmed, elsewhere, no_lesions} - set(table.index.get_level_values("test set"))
    if missing:
        raise ValueError(f"table lacks the test sets {sorted(missing)}: see site_films")
    a, b = (table.loc[(as_filmed, name)] for name in SITE_NAMES)
    out = []
    apart = a["accuracy CI low"] > b["accuracy CI high"] or b["accuracy CI low"] > a["accuracy CI high"]
    out.append(f"Accuracy is {a['accuracy']:.1%} at {SITE_NAMES[0]} (n={int(a['images'])}) and "
               f"{b['accuracy']:.1%} at {SITE_NAMES[1]} (n={int(b['images'])})"
               + (": the 95% intervals do not overlap — the model works better at one site." if apart
                  else ": the 95% intervals overlap — no clear difference."))
    before, after = table.loc[(as_filmed, "all")], table.loc[(elsewhere, "all")]
    drop = before["accuracy"] - after["accuracy"]
    out.append(f"Filmed at the other site, the same patients get {after['accuracy']:.1%} instead of "
               f"{before['accuracy']:.1%} ({-100 * drop:+.1f} points)"
               + (": the model's decisions depend on the site's processing — it reads the site."
                  if drop >= margin else ": the site's processing barely matters to it."))
    sens, sens_gone = before["sensitivity"], table.loc[(no_lesions, "all"), "sensitivity"]
    out.append(f"With the opacities removed, {sens_gone:.1%} of the COVID films are still called COVID "
               f"(against {sens:.1%} with them)"
               + (": the model also uses the opacities." if sens - sens_gone >= margin else
                  ": the opacities barely matter to it — something else, such as the site, carries its "
                  "COVID calls."))
    return out
