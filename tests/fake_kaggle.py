"""Fake two-source chest X-ray trees in the Kaggle layout, for tests of the real-data path.

Real collections cannot be downloaded in CI, so the tests write look-alikes: phantom chest
films (:mod:`course_utils.phantom`, shortcuts switched off) whose two classes come from two
simulated *sources* — as in the COVID-19 Radiography Database, where COVID and normal films
were gathered from different hospitals and web collections:

* COVID films: darker, contrast-stretched, grainy, with a bright collimation border and a
  different size (like adult films scanned from one collection);
* normal films: smooth, brighter, square, with an "R" burnt into a top corner.

``build(root, layout)`` writes ``root/COVID-19_Radiography_Dataset/`` with ``<Class>/images``,
optional ``<Class>/masks`` (lung masks from the phantom) and ``<Class>.metadata.xlsx``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from course_utils import phantom

DS_NAME = "COVID-19_Radiography_Dataset"
#: layout name -> which images get a lung mask ("none", "all", "some": every other image)
LAYOUTS = ("no-masks", "masks", "some-masks")


def _source_a(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """COVID collection: gamma 1.4, grain, a bright 6 % collimation border."""
    out = np.clip(img, 0, 1) ** 1.4 + rng.normal(0, 0.04, img.shape)
    b = max(2, int(0.06 * img.shape[0]))
    out[:b], out[-b:], out[:, :b], out[:, -b:] = 0.95, 0.95, 0.95, 0.95
    return np.clip(out, 0, 1)


def _source_b(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Normal collection: gamma 0.8, no grain, an "R" marker in the top-right corner."""
    out = np.clip(img, 0, 1) ** 0.8 + rng.normal(0, 0.005, img.shape)
    s = img.shape[0]
    r0, c0, h = int(0.05 * s), int(0.82 * s), max(6, int(0.09 * s))
    out[r0:r0 + h, c0:c0 + 2] = 1.0                              # the R's stem
    out[r0:r0 + 2, c0:c0 + h // 2] = 1.0                         # top of the bowl
    out[r0 + h // 2:r0 + h // 2 + 2, c0:c0 + h // 2] = 1.0      # middle of the bowl
    out[r0:r0 + h // 2, c0 + h // 2:c0 + h // 2 + 2] = 1.0      # right of the bowl
    for k in range(h // 2):                                      # the leg
        out[r0 + h // 2 + k, min(s - 1, c0 + k)] = 1.0
    return np.clip(out, 0, 1)


def build(root: Path, layout: str = "no-masks", n_covid: int = 60, n_normal: int = 90,
          size: int = 160, seed: int = 0, metadata: bool = True) -> Path:
    """Write a fake two-source data set under ``root``; return the data set folder.

    COVID films are ``size`` x ``size + size // 5`` (landscape, like scanned films), normal
    films ``size`` x ``size``; lung masks (same size as their image, 0/255) for every image
    (``"masks"``), every other image (``"some-masks"``) or none (``"no-masks"``).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    rng = np.random.default_rng(seed)
    ps = phantom.make_phantom_cxr(n_covid + n_normal, image_size=size, seed=seed,
                                  covid_fraction=n_covid / (n_covid + n_normal),
                                  marker_strength=0.0, abdomen_strength=0.0, render_marker=False)
    ds = Path(root) / DS_NAME
    counters = {"COVID": 0, "Normal": 0}
    sheets: dict[str, list[dict[str, str]]] = {"COVID": [], "Normal": []}
    for i in range(len(ps.labels)):
        cls = "COVID" if ps.labels[i] == 1 else "Normal"
        counters[cls] += 1
        name = f"{cls}-{counters[cls]}"
        img = ps.images[i, ..., 0].astype(np.float64)
        lungs = ps.masks["lungs"][i]
        if cls == "COVID":
            img = _source_a(img, rng)
            width = size + size // 5
            pil = Image.fromarray((img * 255).astype(np.uint8)).resize((width, size), Image.BILINEAR)
            mask = Image.fromarray(lungs.astype(np.uint8) * 255).resize((width, size), Image.NEAREST)
            url = f"https://github.com/covid-collection/images/{name}"
        else:
            img = _source_b(img, rng)
            pil = Image.fromarray((img * 255).astype(np.uint8))
            mask = Image.fromarray(lungs.astype(np.uint8) * 255)
            url = "https://www.kaggle.com/c/normal-films-challenge"
        (ds / cls / "images").mkdir(parents=True, exist_ok=True)
        pil.save(ds / cls / "images" / f"{name}.png")
        if layout == "masks" or (layout == "some-masks" and counters[cls] % 2 == 0):
            (ds / cls / "masks").mkdir(parents=True, exist_ok=True)
            mask.save(ds / cls / "masks" / f"{name}.png")
        sheets[cls].append({"FILE NAME": name, "FORMAT": "PNG", "SIZE": f"{pil.width}*{pil.height}",
                            "URL": url})
    if metadata:
        for cls, rows in sheets.items():
            pd.DataFrame(rows).to_excel(ds / f"{cls}.metadata.xlsx", index=False)
    return ds
