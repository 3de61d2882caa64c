"""One plot style for the course: overlays, image/map grids and tables.

Every function returns the matplotlib Figure (or a pandas DataFrame) and never calls
``plt.show()`` itself, so notebooks stay in control and tests can save figures to PNG.
"""
from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.lines
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import metrics

#: The colour map for saliency: perceptually uniform, readable in grey print.
SALIENCY_CMAP = "inferno"

_STYLE = {
    "figure.dpi": 100, "savefig.dpi": 110, "figure.facecolor": "white",
    "axes.titlesize": 10, "axes.labelsize": 9, "font.size": 9,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "image.cmap": "gray", "figure.constrained_layout.use": True,
}


def use_style() -> None:
    """Apply the course's matplotlib style (called by ``course_utils.setup``)."""
    matplotlib.rcParams.update(_STYLE)


def _as_display(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) in [0, 1] or [0, 255] -> something imshow shows as-is."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.max() > 1.0:
        img = img / 255.0
    return np.clip(img, 0.0, 1.0)


def overlay(ax: plt.Axes, image: np.ndarray, saliency: np.ndarray | None = None, *,
            alpha: float = 0.5, cmap: str = SALIENCY_CMAP, title: str | None = None) -> None:
    """Draw ``image`` and, if given, a (H, W) saliency map in [0, 1] on top of it."""
    ax.imshow(_as_display(image), cmap="gray", vmin=0, vmax=1)
    if saliency is not None:
        ax.imshow(saliency, cmap=cmap, alpha=alpha, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def grid(images: Sequence[np.ndarray], maps: dict[str, np.ndarray] | None = None, *,
         row_titles: Sequence[str] | None = None, col_titles: Sequence[str] | None = None,
         alpha: float = 0.55, size: float = 2.3, overlay_maps: bool = True,
         outlines: dict[str, np.ndarray] | None = None,
         underlays: dict[str, np.ndarray] | None = None) -> plt.Figure:
    """Images in rows; column 0 the image, then one column per map set.

    ``maps``: {column title: (n, H, W) maps in [0, 1]}; ``overlay_maps=False`` shows the maps
    alone (no photo underneath), which is how noisy maps are best judged. ``outlines``:
    {region: (n, H, W) bool} contours drawn on every panel (e.g. the "L" marker). ``underlays``:
    {column title: (n, H, W[, C]) images} to draw that column's maps over instead of ``images``
    (e.g. the lungs-hidden images a probe model actually saw).
    """
    maps = maps or {}
    underlays = underlays or {}
    if set(underlays) - set(maps):
        raise ValueError(f"underlays for columns that have no maps: {sorted(set(underlays) - set(maps))}")
    n, cols = len(images), 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(size * cols, size * n), squeeze=False)
    titles = list(col_titles) if col_titles else ["image", *maps]
    for i in range(n):
        overlay(axes[i, 0], images[i], title=titles[0] if i == 0 else None)
        for j, (col, m) in enumerate(maps.items(), start=1):
            if overlay_maps:
                overlay(axes[i, j], underlays.get(col, images)[i], m[i], alpha=alpha)
            else:
                axes[i, j].imshow(m[i], cmap=SALIENCY_CMAP, vmin=0, vmax=1)
                axes[i, j].set_xticks([])
                axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(titles[j])
        if row_titles:
            axes[i, 0].set_ylabel(row_titles[i])
        for region, masks in (outlines or {}).items():
            for ax in axes[i]:
                outline(ax, masks[i], region)
    return fig


def photo_panel(photos, *, size: float = 3.2, width: int = 48) -> plt.Figure:
    """The photos in a row, each with its title and credit (author, licence, source) below."""
    fig, axes = plt.subplots(1, len(photos), figsize=(size * len(photos), size * 1.25),
                             squeeze=False)
    for ax, photo in zip(axes[0], photos):
        overlay(ax, photo.pixels, title=textwrap.fill(photo.title, width // 1.3))
        ax.set_xlabel(textwrap.fill(photo.credit, width), fontsize=6.5)
    return fig


def topk_table(ours: list[tuple[int, str, float]], paper: list[tuple[str | None, float | None]],
               *, ours_label: str = "VGG16 (ours)") -> pd.DataFrame:
    """Side-by-side top-k table: our (class, %) beside the paper's (class, %)."""
    rows = []
    for rank, (mine, theirs) in enumerate(zip(ours, paper), start=1):
        rows.append({
            "rank": rank,
            f"{ours_label}: class": mine[1],
            f"{ours_label}: %": round(100 * mine[2], 1),
            "paper: class": theirs[0] if theirs[0] else "(not legible)",
            "paper: %": theirs[1] if theirs[1] is not None else float("nan"),
        })
    return pd.DataFrame(rows).set_index("rank")


#: Outline colours of the anatomical regions (phantom masks) in every figure of the course.
REGION_COLOURS = {"lungs": "tab:cyan", "lesions": "tab:red", "heart": "tab:pink",
                  "spine": "tab:olive", "abdomen": "tab:orange", "marker": "yellow",
                  "body": "tab:gray"}


def outline(ax: plt.Axes, mask: np.ndarray, region: str, linewidth: float = 0.8) -> None:
    """Draw the contour of a (H, W) boolean mask in the region's colour."""
    if mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors=[REGION_COLOURS.get(region, "w")],
                   linewidths=linewidth)


def cxr_grid(images: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray] | None = None,
             *, per_class: int = 4, regions=("lungs", "lesions", "heart", "marker"),
             seed: int = 0, size: float = 2.0) -> plt.Figure:
    """Two rows of chest X-rays (normal, then COVID); columns alternate plain / outlined masks.

    ``images``: (n, H, W, 1) in [0, 1]; ``labels``: (n,) 1 = COVID; ``masks``: region ->
    (n, H, W) bool. Images are drawn at random (seeded) from each class.
    """
    rng = np.random.default_rng(seed)
    masks = masks or {}
    shown = [r for r in regions if r in masks]
    cols = per_class * (2 if shown else 1)
    fig, axes = plt.subplots(2, cols, figsize=(size * cols, size * 2.15), squeeze=False)
    for row, cls in enumerate((0, 1)):
        picks = rng.choice(np.flatnonzero(labels == cls), per_class, replace=False)
        for j, i in enumerate(picks):
            plain = axes[row, j * (2 if shown else 1)]
            overlay(plain, images[i], title=f"{'COVID' if cls else 'normal'} #{i}")
            if shown:
                ax = axes[row, 2 * j + 1]
                overlay(ax, images[i], title="regions")
                for r in shown:
                    outline(ax, masks[r][i], r)
    if shown:
        handles = [matplotlib.lines.Line2D([], [], color=REGION_COLOURS[r], label=r) for r in shown]
        fig.legend(handles=handles, loc="outside lower center", ncol=len(shown), frameon=False)
    return fig


def learning_curves(history: dict[str, list[float]]) -> plt.Figure:
    """Loss and accuracy per epoch, training vs validation."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, history[key], "o-", label="training")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s--", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("binary cross-entropy" if key == "loss" else key)
        ax.set_xticks(epochs)
        ax.legend()
    return fig


def confusion_and_roc(labels: np.ndarray, probs: np.ndarray,
                      report: metrics.BinaryReport) -> plt.Figure:
    """Confusion matrix (counts) and ROC curve with the report's operating point."""
    from sklearn.metrics import roc_curve

    fig, (cm_ax, roc_ax) = plt.subplots(1, 2, figsize=(9, 3.8))
    threshold = report.threshold
    cm = np.array([[report.tn, report.fp], [report.fn, report.tp]])
    cm_ax.imshow(cm, cmap="Blues")
    for (r, c), v in np.ndenumerate(cm):
        cm_ax.text(c, r, f"{v:,}", ha="center", va="center",
                   color="white" if v > cm.max() / 2 else "black", fontsize=12)
    cm_ax.set_xticks([0, 1], ["predicted normal", "predicted COVID"])
    cm_ax.set_yticks([0, 1], ["normal", "COVID"])
    cm_ax.set_title(f"confusion matrix (p > {threshold:.0%} = COVID)")
    fpr, tpr, _ = roc_curve(labels, probs)
    roc_ax.plot(fpr, tpr, label=f"AUC = {report.auc.value:.3f}")
    roc_ax.plot([0, 1], [0, 1], ":", color="gray", label="chance")
    roc_ax.plot(1 - report.specificity.value, report.sensitivity.value, "o", color="tab:red",
                label=f"threshold {threshold:.0%}")
    roc_ax.set_xlabel("1 - specificity (false-positive rate)")
    roc_ax.set_ylabel("sensitivity (true-positive rate)")
    roc_ax.set_title("ROC curve")
    roc_ax.legend(loc="lower right")
    return fig


def enrichment_bars(tables: dict[str, pd.DataFrame], regions: Sequence[str] | None = None
                    ) -> plt.Figure:
    """Saliency enrichment (mass share / area share) per region, per class, one panel per method.

    ``tables``: {method label: ``RegionAttribution.table(labels, n_boot=...)``}. Bars above the
    dashed line at 1 get more saliency than their area; error bars are the bootstrap CIs.
    """
    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 3.6), squeeze=False,
                             sharey=True)
    for ax, (method, table) in zip(axes[0], tables.items()):
        t = table.reset_index()
        names = list(regions or dict.fromkeys(t["region"]))
        classes = list(dict.fromkeys(t["class"]))
        width = 0.8 / len(classes)
        for k, cls in enumerate(classes):
            rows = t[t["class"] == cls].set_index("region").reindex(names)
            xs = np.arange(len(names)) + (k - (len(classes) - 1) / 2) * width
            err = None
            if "enrichment_lo" in rows:
                err = np.vstack([rows["enrichment"] - rows["enrichment_lo"],
                                 rows["enrichment_hi"] - rows["enrichment"]]).clip(min=0)
            ax.bar(xs, rows["enrichment"], width, yerr=err, capsize=2, label=cls,
                   color=("tab:blue", "tab:red", "tab:green")[k % 3])
        ax.axhline(1.0, ls="--", color="gray", lw=1)
        ax.set_xticks(np.arange(len(names)), names, rotation=35, ha="right")
        ax.set_yscale("log")
        ax.set_title(method)
    axes[0, 0].set_ylabel("enrichment (saliency share / area share)")
    axes[0, 0].legend()
    return fig


def named(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with method and measure ids replaced by their display names, for showing it.

    Renames index and column labels (every level) and the values of "method" and "measure"
    columns, using :data:`course_utils.saliency.NAMES` and :data:`course_utils.metrics.MEASURES`.
    Compute with ids; call this last, where the table is displayed.
    """
    from .saliency import NAMES

    names = {**NAMES, **metrics.MEASURES}
    out = table.rename(index=names, columns=names)
    for col in ("method", "measure"):
        if col in out.columns:
            out[col] = out[col].map(lambda v: names.get(v, v))
    return out


def save(fig: plt.Figure, path) -> None:
    """Save a figure as PNG (used by tests and the benchmark to look at what learners see)."""
    fig.savefig(path, bbox_inches="tight")


# --------------------------------------------------------------------------- rendering choices
def render_variants(saliency_map: np.ndarray) -> dict[str, np.ndarray]:
    """One (H, W) raw map, scaled to [0, 1] in six common ways: name -> (H, W) float32.

    ``min-max`` (the default everywhere), ``clip at 99th pct`` (the top 1 % saturate),
    ``square root`` (gamma 0.5: faint areas brighten), ``log`` (log1p of the map scaled so its
    99th percentile is 100: everything above noise looks hot), and two thresholds on the
    min-max map, ``top 5 %`` and ``Otsu`` (1 above the threshold, 0 below). Min-max, square
    root and log are strictly increasing transforms: the pixels' ranks, so every rank statistic,
    are unchanged (clipping ties the top 1 %). Signed maps are shown as |map|.
    """
    m = np.abs(np.asarray(saliency_map, np.float64))
    if m.ndim != 2:
        raise ValueError(f"expected one (H, W) map, got shape {m.shape}")
    mm = metrics.minmax(m[None])[0]
    p99 = np.percentile(m, 99)
    clipped = np.clip(m / p99, 0, 1) if p99 > 0 else mm
    logged = metrics.minmax(np.log1p(100 * m / p99)[None])[0] if p99 > 0 else mm
    out = {"min-max": mm, "clip at 99th pct": clipped, "square root": np.sqrt(mm), "log": logged,
           "top 5 %": metrics.binarise(m[None], "quantile", 0.95)[0].astype(float),
           "Otsu": metrics.binarise(m[None], "otsu")[0].astype(float)}
    return {k: v.astype(np.float32) for k, v in out.items()}


def rendering_panels(image: np.ndarray, panels: dict[str, tuple[np.ndarray, str]], *,
                     outlines: dict[str, np.ndarray] | None = None, ncols: int = 3,
                     size: float = 2.4) -> plt.Figure:
    """The image, then one panel per rendering of a saliency map, without the image underneath.

    ``image``: (H, W) or (H, W, 1) in [0, 1]; ``panels``: {title: ((H, W) map in [0, 1], colour
    map name)}; ``outlines``: {region: (H, W) bool} contours drawn on every panel (so the eye
    can tell lungs from marker). Each panel has its own colour bar.
    """
    n = 1 + len(panels)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols * 1.12, size * nrows),
                             squeeze=False)
    flat = axes.ravel()
    overlay(flat[0], image, title="image")
    for ax, (title, (values, cmap)) in zip(flat[1:], panels.items()):
        shown = ax.imshow(values, cmap=cmap, vmin=0, vmax=1)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title)
    for ax in flat[:n]:
        for region, mask in (outlines or {}).items():
            outline(ax, mask, region)
    for ax in flat[n:]:
        ax.axis("off")
    return fig


def similarity_bars(table: pd.DataFrame, *, baseline: str = "random pairs") -> plt.Figure:
    """Mean map similarity per method, one panel per measure, one bar per comparison.

    ``table``: long format with columns ``method``, ``comparison``, ``measure`` and ``mean``
    (optionally ``lo``/``hi`` for error bars). The ``baseline`` comparison is drawn in grey
    with hatching: a comparison whose bar is not clearly above it shows no agreement beyond
    what any two maps of this model share. Method and measure ids are shown by their names.
    """
    table = named(table)
    measures = list(dict.fromkeys(table["measure"]))
    methods = list(dict.fromkeys(table["method"]))
    comparisons = list(dict.fromkeys(table["comparison"]))
    fig, axes = plt.subplots(1, len(measures), figsize=(max(5.0, 0.9 * len(methods)) * len(measures),
                                                        3.6), squeeze=False, sharey=True)
    width = 0.8 / len(comparisons)
    colours = iter(("tab:blue", "tab:orange", "tab:green", "tab:purple"))
    style = {c: ({"color": "0.7", "hatch": "//", "edgecolor": "0.4"} if c == baseline
                 else {"color": next(colours)}) for c in comparisons}
    for ax, measure in zip(axes[0], measures):
        t = table[table["measure"] == measure]
        for k, comp in enumerate(comparisons):
            rows = t[t["comparison"] == comp].set_index("method").reindex(methods)
            xs = np.arange(len(methods)) + (k - (len(comparisons) - 1) / 2) * width
            err = None
            if {"lo", "hi"} <= set(rows.columns):
                err = np.vstack([rows["mean"] - rows["lo"], rows["hi"] - rows["mean"]]).clip(min=0)
            ax.bar(xs, rows["mean"], width, yerr=err, capsize=2, label=comp, **style[comp])
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(np.arange(len(methods)), methods, rotation=30, ha="right")
        ax.set_title(measure)
    axes[0, 0].set_ylabel("mean similarity to the baseline model's map")
    axes[0, -1].legend(loc="upper right", fontsize=7)
    return fig


def randomisation_curves(result, *, measures: Mapping[str, str] = metrics.MEASURES,
                         ncols: int = 4) -> plt.Figure:
    """Cascading randomisation: similarity to the original map against the randomised layers.

    ``result``: a :class:`course_utils.sanity.CascadeResult` (``steps``, ``scores`` with columns
    method, step_index, measure, mean, lo, hi; ``baseline`` method -> measure -> value). One
    panel per method (titled with its display name); a line with its 95 % band per measure of
    ``measures`` (id -> display name); dashed lines: the random-pair baselines. A method passes
    when its curves fall below their dashed lines.
    """
    from .saliency import NAMES

    methods = list(dict.fromkeys(result.scores["method"]))
    nrows = -(-len(methods) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 2.9 * nrows), squeeze=False,
                             sharex=True, sharey=True)
    colours = dict(zip(measures, ("tab:blue", "tab:orange", "tab:green")))
    x = np.arange(len(result.steps))
    for ax, method in zip(axes.ravel(), methods):
        t = result.scores[result.scores["method"] == method]
        for measure, name in measures.items():
            s = t[t["measure"] == measure].sort_values("step_index")
            ax.plot(s["step_index"], s["mean"], "o-", ms=3, color=colours[measure], label=name)
            ax.fill_between(s["step_index"], s["lo"], s["hi"], color=colours[measure], alpha=0.2)
            ax.axhline(result.baseline[method][measure], ls="--", lw=1, color=colours[measure])
        ax.set_title(NAMES.get(method, method))
        ax.set_ylim(-0.5, 1.05)
        ax.axhline(0, color="black", lw=0.5)
    for ax in axes.ravel()[len(methods):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xticks(x, result.steps, rotation=45, ha="right")
        ax.tick_params(axis="x", labelbottom=True)
    for ax in axes[:, 0]:
        ax.set_ylabel("similarity to original")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    return fig


def smoothgrad_curve(curve: pd.DataFrame, *, reference: dict[str, float] | None = None
                     ) -> plt.Figure:
    """SmoothGrad's stability (left) and cost (right) against its number of samples n.

    ``curve``: DataFrame indexed by n with columns "run to run", optionally "clean vs noisy"
    (mean Spearman) and "seconds per image" (as :func:`course_utils.sanity.smoothgrad_curve`
    returns). ``reference``: {label: value} horizontal lines on the left panel (e.g. the vanilla
    gradient's clean-vs-noisy Spearman).
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.3))
    n = curve.index.to_numpy()
    for col, marker in (("run to run", "o-"), ("clean vs noisy", "s--")):
        if col in curve:
            left.plot(n, curve[col], marker, label=f"SmoothGrad, {col}")
    for (label, value), colour in zip((reference or {}).items(), ("tab:red", "tab:gray")):
        left.axhline(value, ls=":", color=colour, label=label)
    left.set_xscale("log")
    left.set_xlabel("samples n (log scale)")
    left.set_ylabel("mean Spearman correlation")
    left.set_ylim(top=1.0)
    left.legend(fontsize=7)
    right.plot(n, 1000 * curve["seconds per image"], "o-", color="tab:purple")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("samples n (log scale)")
    right.set_ylabel("milliseconds per image (log scale)")
    right.set_title("cost")
    left.set_title("stability")
    return fig


def importance_bars(table: pd.DataFrame, errors: pd.DataFrame | None = None, *,
                    top: int | None = None) -> plt.Figure:
    """Feature importances side by side, one panel per column of ``table``.

    ``table``: features (index) x methods (columns), any non-negative units; ``errors``: the
    same shape (e.g. standard deviations over repeats) or None. Features are ordered by the
    first column (largest on top); ``top`` keeps only the most important ones by that column.
    """
    order = table.iloc[:, 0].sort_values(ascending=False).index
    if top is not None:
        order = order[:top]
    fig, axes = plt.subplots(1, table.shape[1], figsize=(3.6 * table.shape[1], 0.22 * len(order) + 1),
                             squeeze=False, sharey=True)
    ys = np.arange(len(order))[::-1]
    for ax, (colour, col) in zip(axes[0], zip(("tab:blue", "tab:orange", "tab:green"), table)):
        err = None if errors is None else errors.loc[order, col]
        ax.barh(ys, table.loc[order, col], xerr=err, color=colour, capsize=2)
        ax.set_title(col)
        ax.set_yticks(ys, order)
        ax.axvline(0, color="black", lw=0.6)
    return fig


# --------------------------------------------------------------------------- perturbations and PSC
def attack_examples(x: np.ndarray, x_adv: np.ndarray, p_before: np.ndarray, p_after: np.ndarray,
                    maps_before: dict[str, np.ndarray], maps_after: dict[str, np.ndarray], *,
                    row_titles: Sequence[str] | None = None, target: np.ndarray | None = None,
                    size: float = 1.9) -> plt.Figure:
    """Clean image, perturbed twin, amplified difference, then each method's map before/after.

    ``x``, ``x_adv``: (k, H, W, C) in [0, 1]; ``p_before``/``p_after``: (k,) p(positive class);
    ``maps_before``/``maps_after``: {method label: (k, H, W) maps in [0, 1]} (normalise each
    map for display); ``target``: optional (H, W) bool region outlined on every map (e.g. the
    explanation attack's target patch). The difference ``x_adv - x`` is shown as
    0.5 + A (x_adv - x) in grey, with A chosen so the largest change spans the grey scale.
    """
    x, x_adv = np.asarray(x, np.float32), np.asarray(x_adv, np.float32)
    diff = (x_adv - x).mean(axis=-1) if x.ndim == 4 else x_adv - x  # (k, H, W)
    largest = float(np.abs(diff).max())
    amp = 0.5 / largest if largest > 0 else 1.0
    k, cols = len(x), 3 + 2 * len(maps_before)
    fig, axes = plt.subplots(k, cols, figsize=(size * cols, size * k * 1.08), squeeze=False)
    for i in range(k):
        overlay(axes[i, 0], x[i], title=f"clean\np = {p_before[i]:.3f}")
        overlay(axes[i, 1], x_adv[i], title=f"perturbed\np = {p_after[i]:.3f}")
        overlay(axes[i, 2], np.clip(0.5 + amp * diff[i], 0, 1),
                title=f"difference ×{amp:.0f}\nmax |Δx| = {np.abs(diff[i]).max():.3f}")
        for j, name in enumerate(maps_before):
            for col, (maps, when) in enumerate(((maps_before, "clean"), (maps_after, "perturbed"))):
                ax = axes[i, 3 + 2 * j + col]
                ax.imshow(maps[name][i], cmap=SALIENCY_CMAP, vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"{name}\n{when}")
                if target is not None:
                    outline(ax, np.asarray(target, bool), "target", linewidth=1.0)
        if row_titles:
            axes[i, 0].set_ylabel(row_titles[i])
    return fig


def psc_scatter(results: dict[str, dict[str, object]], *, size: float = 2.4) -> plt.Figure:
    """D_sal against D_pred per image: one row per perturbation, one column per method.

    ``results``: {perturbation: {method id: psc.PSCResult}} (anything with ``d_pred``,
    ``d_sal``, ``r``, ``ci_low``, ``ci_high``). Each panel
    shows the least-squares line and PSC with its CI; the axes are per panel (the methods'
    D_sal differ by orders of magnitude), so compare the *shape* of the clouds, not their height.
    """
    rows = list(results)
    from .saliency import NAMES

    methods = list(dict.fromkeys(m for r in results.values() for m in r))
    fig, axes = plt.subplots(len(rows), len(methods), squeeze=False,
                             figsize=(size * len(methods), size * 1.05 * len(rows)))
    for i, row in enumerate(rows):
        for j, method in enumerate(methods):
            ax = axes[i, j]
            res = results[row].get(method)
            if res is None:
                ax.set_axis_off()
                continue
            if getattr(res, "undefined", ""):
                ax.set_title(f"{NAMES.get(method, method)}\nPSC undefined")
                # ~12 characters of 7-pt text per inch keep the reason inside its panel
                reason = textwrap.fill(res.undefined.split(";")[0], max(12, int(size * 12)))
                ax.text(0.5, 0.5, reason, ha="center", va="center", fontsize=7,
                        transform=ax.transAxes)
                ax.set_xticks([]), ax.set_yticks([])
                continue
            dp, ds = np.asarray(res.d_pred), np.asarray(res.d_sal)
            ax.scatter(dp, ds, s=9, alpha=0.55, color="tab:blue", linewidths=0)
            if np.ptp(dp) > 0:
                slope, icpt = np.polyfit(dp, ds, 1)
                xs = np.array([dp.min(), dp.max()])
                ax.plot(xs, icpt + slope * xs, color="tab:red", lw=1)
            ax.set_title(f"{NAMES.get(method, method)}\nPSC = {res.r:.2f} "
                         f"[{res.ci_low:.2f}, {res.ci_high:.2f}]")
            ax.ticklabel_format(axis="both", style="sci", scilimits=(-2, 3))
            if j == 0:
                ax.set_ylabel(f"{row}\nD_sal (nats)")
            if i == len(rows) - 1:
                ax.set_xlabel("D_pred (nats)")
    return fig


def quiz_pairs(left: np.ndarray, right: np.ndarray, *, perturbed_right: np.ndarray | None = None,
               kinds: Sequence[str] | None = None, pairs_per_row: int = 3,
               size: float = 2.0) -> plt.Figure:
    """The "spot the perturbed image" pairs side by side (L and R), ``pairs_per_row`` per row.

    ``left``/``right``: (k, H, W, C) in [0, 1]. For the reveal pass ``perturbed_right`` ((k,)
    bool): the perturbed image of each pair is framed in red and labelled (with ``kinds``).
    """
    k = len(left)
    n_rows = -(-k // pairs_per_row)
    fig, axes = plt.subplots(n_rows, 2 * pairs_per_row, squeeze=False,
                             figsize=(size * 2 * pairs_per_row, size * 1.1 * n_rows))
    for ax in axes.ravel():
        ax.set_axis_off()
    for i in range(k):
        for side, image in enumerate((left[i], right[i])):
            ax = axes[i // pairs_per_row, 2 * (i % pairs_per_row) + side]
            ax.set_axis_on()
            title = f"pair {i + 1}: {'LR'[side]}"
            if perturbed_right is not None and bool(perturbed_right[i]) == bool(side):
                title += " = perturbed" + (f"\n({kinds[i]})" if kinds is not None else "")
                for spine in ax.spines.values():
                    spine.set_visible(True)
                    spine.set_color("tab:red")
                    spine.set_linewidth(2.5)
            overlay(ax, image)
            ax.set_title(title, color="tab:red" if "perturbed" in title else "black")
    return fig
