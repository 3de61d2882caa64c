"""The capstone's case (notebook 06) and the region edit its audit uses."""
from __future__ import annotations

import numpy as np
import pytest

from course_utils import capstone, config, data, models, phantom


# ------------------------------------------------------------------ data.equalise_region
def test_equalise_region_sets_every_region_mean_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    images = rng.uniform(0.2, 0.6, (4, 16, 16, 1)).astype(np.float32)
    masks = np.zeros((4, 16, 16), bool)
    masks[:, 10:, :] = True
    images[0, 10:] += 0.3  # one bright "abdomen"
    masks[3] = False  # an image without the region
    out = data.equalise_region(images, masks)
    assert out.shape == images.shape and out.dtype == np.float32
    means = [out[i, ..., 0][masks[i]].mean() for i in range(3)]
    assert np.allclose(means, means[0], atol=1e-6)
    target = np.mean([images[i, ..., 0][masks[i]].mean() for i in range(3)])
    assert means[0] == pytest.approx(target, abs=1e-6)
    assert np.array_equal(out[~masks], images[~masks]) and np.array_equal(out[3], images[3])
    # texture inside the region is kept: the edit is one constant shift per image
    diff = (out - images)[0, ..., 0][masks[0]]
    assert np.ptp(diff) < 1e-6


def test_equalise_region_takes_a_value_clips_and_checks_shapes():
    images = np.full((2, 8, 8), 0.9, np.float32)
    masks = np.zeros((2, 8, 8), bool)
    masks[:, :4] = True
    images[1, 0, 0] = 1.0
    out = data.equalise_region(images, masks, value=0.95)
    assert out.shape == (2, 8, 8) and out.max() <= 1.0 and out[0, 0, 0] == pytest.approx(0.95)
    assert np.array_equal(data.equalise_region(images, np.zeros_like(masks)), images)
    with pytest.raises(ValueError, match="must match"):
        data.equalise_region(images, masks[:1])
    with pytest.raises(ValueError, match="value must be in"):
        data.equalise_region(images, masks, value=1.5)


# ------------------------------------------------------------------ the case
def test_the_case_is_not_notebook_03s_and_hides_the_generator():
    assert capstone.SEED != config.SEED
    assert capstone._KNOBS["site_strength"] > 0
    assert capstone._KNOBS["marker_strength"] == capstone._KNOBS["abdomen_strength"] == 0
    assert set(capstone.REGIONS) <= set(phantom.MASK_KEYS)


def test_figure_cases_prefer_clean_confident_lung_heavy_true_positives():
    size = 32
    x = np.zeros((10, size, size, 1), np.float32)
    y = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 1])
    p = np.array([0.9, 0.8, 0.95, 0.7, 0.99, 0.6, 0.9, 0.1, 0.2, 0.3])
    marker = np.zeros((10, size, size), bool)
    marker[4, :3, :3] = True  # the most confident one has a marker
    lungs = np.ones((10, size, size), bool)
    picked = capstone._figure_cases(models.build_cxr_cnn(size, seed=0), x, y, p, lungs, marker, 2)
    assert len(picked) == 2 and (picked == np.sort(picked)).all()
    assert set(picked) <= {0, 1, 2, 3, 5}  # clean true positives only
    few = capstone._figure_cases(models.build_cxr_cnn(size, seed=0), x, y, p, lungs, marker, 8)
    assert set(few) <= set(np.flatnonzero(y == 1)) and len(few) == 8  # falls back to every COVID film
    with pytest.raises(ValueError, match="fewer than the figure's"):
        capstone._figure_cases(models.build_cxr_cnn(size, seed=0), x, y, p, lungs, marker, 9)


@pytest.fixture(scope="module")
def small_case(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_DATA_DIR", str(tmp_path_factory.mktemp("capstone")))
        mp.setenv("COURSE_CXR_DIR", str(tmp_path_factory.mktemp("no-real-data-here")))  # ignored
        return capstone.case(n=240, epochs=1, image_size=64)


def test_the_case_gives_what_a_reviewer_gets(small_case, saved):
    c = small_case
    d = c.data
    assert d.source == "phantom" and d.phantom_set is None and d.image_size == 64
    assert set(d.origins) == set(capstone.HOSPITALS) and d.origins.shape == d.labels.shape
    assert d.test_fraction == pytest.approx(capstone.TEST_FRACTION, abs=0.01)
    assert list(d.masks) == list(capstone.REGIONS) and d.masks["lungs"].shape == d.images.shape[:3]
    with pytest.raises(KeyError, match="the authors shared"):
        d.masks["spine"]
    assert c.p_test.shape == d.test_idx.shape and ((0 <= c.p_test) & (c.p_test <= 1)).all()
    y_test = d.labels[d.test_idx]
    assert len(c.figure_idx) == capstone.FIGURE_CASES and (y_test[c.figure_idx] == 1).all()
    assert "accuracy of" in c.claim() and f"{len(d.test_idx)} films" in c.claim()
    fig = c.figure()
    assert len(fig.axes) == 2 * capstone.FIGURE_CASES and saved(fig, "capstone-figure")


def test_the_case_is_deterministic_and_cached(small_case, monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    again = capstone.case(n=240, epochs=1, image_size=64)
    assert again.trained_now and np.array_equal(again.data.origins, small_case.data.origins)
    assert np.array_equal(again.data.test_idx, small_case.data.test_idx)
    assert not capstone.case(n=240, epochs=1, image_size=64).trained_now
