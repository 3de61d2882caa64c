"""One plot style for the course: overlays, image/map grids and tables.

Every function returns the matplotlib Figure (or a pandas DataFrame) and never calls
``plt.show()`` itself, so notebooks stay in control and tests can save figures to PNG.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib
import matplotlib.lines
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

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
         outlines: dict[str, np.ndarray] | None = None) -> plt.Figure:
    """Images in rows; column 0 the image, then one column per map set.

    ``maps``: {column title: (n, H, W) maps in [0, 1]}; ``overlay_maps=False`` shows the maps
    alone (no photo underneath), which is how noisy maps are best judged. ``outlines``:
    {region: (n, H, W) bool} contours drawn on every panel (e.g. the "L" marker).
    """
    maps = maps or {}
    n, cols = len(images), 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(size * cols, size * n), squeeze=False)
    titles = list(col_titles) if col_titles else ["image", *maps]
    for i in range(n):
        overlay(axes[i, 0], images[i], title=titles[0] if i == 0 else None)
        for j, (name, m) in enumerate(maps.items(), start=1):
            if overlay_maps:
                overlay(axes[i, j], images[i], m[i], alpha=alpha)
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
    import textwrap

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


def confusion_and_roc(labels: np.ndarray, probs: np.ndarray, report: dict,
                      threshold: float = 0.5) -> plt.Figure:
    """Confusion matrix (counts) and ROC curve with the operating point at ``threshold``."""
    from sklearn.metrics import roc_curve

    fig, (cm_ax, roc_ax) = plt.subplots(1, 2, figsize=(9, 3.8))
    cm = np.array([[report["tn"], report["fp"]], [report["fn"], report["tp"]]])
    cm_ax.imshow(cm, cmap="Blues")
    for (r, c), v in np.ndenumerate(cm):
        cm_ax.text(c, r, f"{v:,}", ha="center", va="center",
                   color="white" if v > cm.max() / 2 else "black", fontsize=12)
    cm_ax.set_xticks([0, 1], ["predicted normal", "predicted COVID"])
    cm_ax.set_yticks([0, 1], ["normal", "COVID"])
    cm_ax.set_title(f"confusion matrix (p > {threshold:.0%} = COVID)")
    fpr, tpr, _ = roc_curve(labels, probs)
    roc_ax.plot(fpr, tpr, label=f"AUC = {report['auc']:.3f}")
    roc_ax.plot([0, 1], [0, 1], ":", color="gray", label="chance")
    roc_ax.plot(1 - report["specificity"], report["sensitivity"], "o", color="tab:red",
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


def save(fig: plt.Figure, path) -> None:
    """Save a figure as PNG (used by tests and the benchmark to look at what learners see)."""
    fig.savefig(path, bbox_inches="tight")
