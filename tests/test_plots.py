"""Every plotting helper draws without error and returns something a notebook can show/save."""
from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from course_utils import __main__ as cli  # noqa: E402
from course_utils import images, metrics, plots  # noqa: E402


def test_overlay_and_grid(saved):
    plots.use_style()
    imgs = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3))
    maps = {"a": np.random.default_rng(1).uniform(size=(2, 16, 16))}
    fig = plots.grid(imgs, maps, row_titles=["x", "y"])
    assert len(fig.axes) == 4 and fig.axes[1].get_title() == "a"
    assert saved(fig, "grid")
    fig = plots.grid(imgs, maps, overlay_maps=False)
    assert saved(fig, "grid_plain")


def test_grid_draws_a_column_over_its_own_underlay():
    imgs = np.zeros((1, 8, 8, 3))
    other = np.full((1, 8, 8, 3), 255.0)
    maps = {"a": np.zeros((1, 8, 8)), "b": np.zeros((1, 8, 8))}
    fig = plots.grid(imgs, maps, underlays={"b": other})
    shown = [np.asarray(ax.get_images()[0].get_array()).mean() for ax in fig.axes]
    assert shown[0] == shown[1] and shown[2] > shown[1]  # column b sits on the white image
    with pytest.raises(ValueError, match="no maps"):
        plots.grid(imgs, maps, underlays={"c": other})


def test_photo_panel_shows_credits(saved):
    photos = [images.fallback_photo("dog"), images.fallback_photo("dome")]
    fig = plots.photo_panel(photos)
    assert "CC0" in fig.axes[0].get_xlabel()
    assert saved(fig, "panel")


def test_topk_table_marks_missing_paper_rows():
    ours = [(1, "a", 0.5), (2, "b", 0.25)]
    table = plots.topk_table(ours, [("A", 50.0), (None, None)])
    assert isinstance(table, pd.DataFrame) and list(table.index) == [1, 2]
    assert table.iloc[0, 1] == 50.0 and table.iloc[1, 2] == "(not legible)"


def test_cxr_figures(saved):
    rng = np.random.default_rng(0)
    imgs = rng.uniform(size=(8, 32, 32, 1)).astype(np.float32)
    labels = np.array([0, 1] * 4)
    masks = {"lungs": rng.uniform(size=(8, 32, 32)) > 0.5, "marker": np.zeros((8, 32, 32), bool)}
    assert saved(plots.cxr_grid(imgs, labels, masks, per_class=2), "cxr")
    history = {"loss": [0.6, 0.4], "accuracy": [0.7, 0.8], "val_loss": [0.5, 0.45],
               "val_accuracy": [0.75, 0.8]}
    assert saved(plots.learning_curves(history), "curves")
    probs = np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.6, 0.3, 0.4])
    report = metrics.binary_report(labels, probs, n_boot=20)
    fig = plots.confusion_and_roc(labels, probs, report)
    roc = fig.axes[1]
    assert roc.get_legend().get_texts()[0].get_text() == f"AUC = {report.auc.value:.3f}"
    assert saved(fig, "roc")


def _one_cell_notebook(tmp_path, name: str, source: str):
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": source, "outputs": [],
                     "execution_count": None, "id": "c1"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / f"{name}.ipynb"
    path.write_text(json.dumps(nb))
    return path


def test_render_executes_a_notebook_to_html(tmp_path):
    src = _one_cell_notebook(tmp_path, "tiny", "print(6 * 7)")
    assert cli.main(["render", str(src), "--out", str(tmp_path / "build")]) == 0
    assert "42" in (tmp_path / "build" / "tiny.html").read_text()
    executed = json.loads((tmp_path / "build" / "tiny.ipynb").read_text())
    assert "".join(executed["cells"][0]["outputs"][0]["text"]).strip() == "42"


def test_render_reports_a_failing_notebook(tmp_path, capsys):
    src = _one_cell_notebook(tmp_path, "bad", "assert 1 == 2, 'boom'")
    assert cli.main(["render", str(src), "--out", str(tmp_path / "build")]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert (tmp_path / "build" / "bad.html").exists()  # the learner can still read what happened


def test_enrichment_bars(saved):
    from course_utils import metrics

    rng = np.random.default_rng(0)
    maps = rng.uniform(size=(10, 8, 8))
    masks = {"a": np.zeros((10, 8, 8), bool), "body": np.ones((10, 8, 8), bool)}
    masks["a"][:, :2] = True
    masks["body"][:, 0] = False
    table = metrics.region_attribution(maps, masks).table(np.r_[np.zeros(5, int), np.ones(5, int)],
                                                          n_boot=50)
    fig = plots.enrichment_bars({"m1": table, "m2": table})
    assert len(fig.axes) == 2 and fig.axes[0].get_yscale() == "log"
    assert saved(fig, "enrichment")
