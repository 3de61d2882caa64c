"""Shared fixtures: every test gets its own empty course cache and is offline."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """A fresh COURSE_DATA_DIR and KERAS_HOME per test; the network is off by default."""
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "course-data"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))  # the per-user fallback
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.delenv("COURSE_VGG16_WEIGHTS", raising=False)
    from course_utils import assets

    assets._verified.clear()
    return tmp_path / "course-data"


@pytest.fixture
def saved(tmp_path):
    """saved(fig, name) -> True if the figure was written as a non-trivial PNG (and closed)."""
    import matplotlib.pyplot as plt

    from course_utils import plots

    def save(fig, name: str) -> bool:
        path = tmp_path / f"{name}.png"
        plots.save(fig, path)
        plt.close(fig)
        return path.stat().st_size > 1000

    return save
