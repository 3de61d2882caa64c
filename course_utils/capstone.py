"""The capstone's case (notebook 06): a published claim about a chest X-ray model, to audit.

**Learners: don't read this file before you finish notebook 06** -- it holds the answer.

The "authors" claim that their CNN detects COVID-19 on chest radiographs with a high test
accuracy and show a figure of Grad-CAM maps on confident COVID cases that sit on the lungs.
:func:`case` hands the reviewer what a reviewer of a real paper could ask for: the films, their
labels, the trained model, the figure, expert annotations (lung, lesion, heart, abdomen, marker
and body masks) and metadata naming the hospital each film came from (``data.origins``, as
real data's sources). It keeps back what no reviewer gets: the generator and its knobs.

The recipe: phantom films (:mod:`course_utils.phantom`) from two simulated hospitals whose
processing differs over the whole film (``site_strength=1``), with COVID concentrated at one of
them (``site_prevalence``: 5 % at the first, 80 % at the second, as in collections pooled from a
COVID ward and a general clinic), and the marker and abdomen shortcuts switched off. The site
alone then predicts the label about as well as the claim's accuracy, so the CNN learns the
hospital; the figure is cherry-picked: of the confident true positives, the cases whose Grad-CAM
puts the most mass on the lungs.
Its own seed (:data:`SEED`), not notebook 03's, so its numbers differ from 03's two-sites section.
With ``COURSE_CXR_DIR`` set the case is still this made-up one: it never reads real data.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np

from . import config, cxr, data, metrics, models, phantom, saliency

__all__ = ["HOSPITALS", "REGIONS", "SEED", "Case", "case"]

#: The case's seed (notebook 03's two-sites section uses :data:`config.SEED`).
SEED: int = 7
#: Films in full / fast mode, and the training epochs (early stopping may stop sooner).
N_FILMS: tuple[int, int] = (3000, 1000)
EPOCHS: tuple[int, int] = (12, 4)
#: The authors' held-out test share.
TEST_FRACTION: float = 0.2
#: The phantom's knobs: the hidden shortcut.
_KNOBS: Mapping[str, object] = {
    "marker_strength": 0.0, "abdomen_strength": 0.0, "site_strength": 1.0, "site_prevalence": (0.05, 0.8),
    "site_styles": tuple(dataclasses.replace(style, border=0.0) for style in phantom.SITE_STYLES)}
#: Hospital names of the phantom's sites 0 and 1 (the per-film metadata a reviewer gets).
HOSPITALS: tuple[str, str] = ("Ashford General Hospital", "Bellmont University Hospital")
#: The annotations handed over with the films (regions of :data:`phantom.MASK_KEYS`).
REGIONS: tuple[str, ...] = ("lungs", "lesions", "heart", "abdomen", "marker", "body")
#: The published figure: Grad-CAM at this layer, for the COVID class, on this many cases.
FIGURE_METHOD, FIGURE_LAYER, FIGURE_CASES = "gradcam", "last_conv", 4


class _Annotations(Mapping):
    """A read-only view of some regions of a phantom set's masks (unpacked on lookup)."""

    def __init__(self, masks: Mapping[str, np.ndarray], keys: tuple[str, ...]):
        self._masks, self._keys = masks, keys

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._keys:
            raise KeyError(f"no annotation {key!r}; the authors shared {', '.join(self._keys)}")
        return self._masks[key]

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


@dataclass(frozen=True, eq=False)
class Case:
    """What the reviewer gets (see :func:`case`).

    Attributes:
        data: the films as a :class:`data.CourseCXR` with the authors' train/test split,
            ``origins`` ``(n,)`` the hospital of each film (:data:`HOSPITALS`) and ``masks``
            the annotations of :data:`REGIONS`; no generator (``phantom_set`` is None).
        model: the authors' trained CNN (the course architecture; Grad-CAM layer "last_conv").
        trained_now: False when the model came from the cache.
        p_test: ``(n_test,)`` the model's p(COVID) on the test split.
        figure_idx: ``(k,)`` positions in the test split of the figure's cases.
    """

    data: data.CourseCXR
    model: keras.Model
    trained_now: bool
    p_test: np.ndarray
    figure_idx: np.ndarray

    def claim(self) -> str:
        """The paper's claim, with its numbers computed on the test split (as the authors did)."""
        _, y = self.data.split("test")
        report = metrics.binary_report(y, self.p_test, n_boot=200, seed=SEED)
        return (f"\"Our CNN detects COVID-19 on chest radiographs with an accuracy of "
                f"{report.accuracy:.1%} and a ROC AUC of {report.auc.value:.2f} on a held-out test set "
                f"of {report.n} films from two hospitals. Grad-CAM (Figure 3) confirms that the model "
                "bases its decisions on the lung fields.\"")

    def figure(self, size: float = 2.6):
        """The published Figure 3: the image and its Grad-CAM overlay for each chosen case.

        Rendered as papers often do: each map min-max scaled on its own, a jet colour map over
        the film. Returns the matplotlib figure.
        """
        import matplotlib.pyplot as plt

        from . import plots

        x, _ = self.data.split("test")
        x = x[self.figure_idx]
        cams = saliency.compute(self.model, x, FIGURE_METHOD, np.ones(len(x), int),
                                layer=FIGURE_LAYER).normalised
        fig, axes = plt.subplots(2, len(x), figsize=(size * len(x), 2 * size), squeeze=False)
        for j, i in enumerate(self.figure_idx):
            plots.overlay(axes[0, j], x[j], title=f"test film {i}, p = {self.p_test[i]:.2f}")
            plots.overlay(axes[1, j], x[j], cams[j], cmap="jet")
        fig.suptitle("Figure 3. Grad-CAM (last convolutional layer, class COVID-19) of four COVID-19 "
                     "cases:\nthe model attends to the lung fields")
        return fig


def _figure_cases(model: keras.Model, x: np.ndarray, y: np.ndarray, p: np.ndarray,
                  lungs: np.ndarray, marker: np.ndarray, k: int) -> np.ndarray:
    """The authors' pick: k clean, confident COVID films whose Grad-CAM looks most like the lungs.

    Candidates: the true positives (all COVID films if fewer than k), without a burnt-in marker
    where k of them have none; their more probable half (at least k); of these, the k whose
    Grad-CAM puts the largest share of its mass on the lungs. ``x`` (n, H, W, 1); ``y``, ``p``
    (n,); ``lungs``, ``marker`` (n, H, W) bool. Returns positions in ``x``, sorted.
    """
    covid = np.flatnonzero(y == 1)
    if len(covid) < k:
        raise ValueError(f"the test set has {len(covid)} COVID films, fewer than the figure's {k}")
    tp = covid[p[covid] > 0.5]
    pool = tp if len(tp) >= k else covid
    clean = pool[~marker[pool].any(axis=(1, 2))]
    pool = clean if len(clean) >= k else pool
    confident = pool[np.argsort(-p[pool], kind="stable")][:max(k, len(pool) // 2)]
    cams = saliency.compute(model, x[confident], FIGURE_METHOD, np.ones(len(confident), int),
                            layer=FIGURE_LAYER).raw
    share = metrics.region_attribution(cams, {"lungs": lungs[confident]}).mass_share["lungs"]
    return np.sort(confident[np.argsort(-np.nan_to_num(share, nan=-1.0), kind="stable")[:k]])


def case(*, n: int | None = None, epochs: int | None = None, image_size: int = 128) -> Case:
    """Build the case: the authors' data, their trained model (cached) and their figure's cases.

    ``n`` films (default :data:`N_FILMS` by mode), ``epochs`` (default :data:`EPOCHS`) and
    ``image_size`` are for tests; the notebook uses the defaults. The model is trained by
    :func:`models.load_or_train_cxr_model`, so it is cached (and staged) like the course's other
    models. Always phantom data, also when ``COURSE_CXR_DIR`` is set.
    """
    n = n if n is not None else config.pick(*N_FILMS)
    raw = data.load_course_cxr(image_size, seed=SEED, n=n, source="phantom", **_KNOBS)
    train_idx, test_idx = cxr.stratified_split(raw.labels, TEST_FRACTION, seed=SEED)
    ps = raw.phantom_set
    covid = int(raw.labels.sum())
    authors = dataclasses.replace(
        raw, train_idx=train_idx, test_idx=test_idx,
        masks=_Annotations(raw.masks, REGIONS), phantom_set=None,
        origins=np.asarray(HOSPITALS, dtype=object)[ps.site],
        description=(f"the authors' chest X-rays: {covid:,} COVID and {n - covid:,} normal films from "
                     f"{len(HOSPITALS)} hospitals; test share {TEST_FRACTION:.0%}"),
        fingerprint=data._fingerprint(raw.fingerprint, "capstone split", TEST_FRACTION, SEED))
    trained = models.load_or_train_cxr_model(
        authors, seed=SEED, epochs=epochs if epochs is not None else config.pick(*EPOCHS))
    x, y = authors.split("test")
    p = models.predict_p(trained.model, x)
    idx = _figure_cases(trained.model, x, y, p, authors.masks["lungs"][test_idx],
                        authors.masks["marker"][test_idx], FIGURE_CASES)
    return Case(authors, trained.model, trained.trained_now, p, idx)
