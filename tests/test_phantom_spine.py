"""Tests for the phantom's scoliosis-like spine bend (``spine_curve``; no TensorFlow)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage
from test_phantom_sites import _OLD_REPR, assert_is_the_phantom_from_before

from course_utils import data
from course_utils.phantom import (
    SPINE_SHIFT,
    PhantomParams,
    PhantomSet,
    make_phantom_cxr,
    rerender,
    spine_cobb_angle,
)


@pytest.fixture(scope="module")
def straight() -> PhantomSet:
    return make_phantom_cxr(40, 128, seed=5)


def _centre_x(masks: np.ndarray, rows: slice) -> np.ndarray:
    """Mean column (pixels) of the mask within the given rows, per image."""
    m = masks[:, rows]
    return (m * np.arange(m.shape[2])).sum(axis=(1, 2)) / m.sum(axis=(1, 2))


def test_default_is_the_phantom_from_before_the_knob():
    ps = make_phantom_cxr(20, 128, seed=3)
    assert ps.params.spine_curve == 0.0
    assert_is_the_phantom_from_before(ps)
    explicit = make_phantom_cxr(20, 128, seed=3, spine_curve=0.0)
    assert np.array_equal(ps.images, explicit.images) and np.array_equal(ps.masks.bits, explicit.masks.bits)


def test_repr_and_fingerprint_unchanged_at_default():
    """Trained models are cached under a fingerprint of repr(params): straight spines keep theirs."""
    p = PhantomParams(n=20, seed=3)
    assert repr(p) == _OLD_REPR == repr(make_phantom_cxr(20, 128, seed=3, spine_curve=0.0).params)
    bent = dataclasses.replace(p, spine_curve=0.5)
    assert "spine_curve=0.5" in repr(bent)
    assert data._fingerprint("phantom", p) != data._fingerprint("phantom", bent)


@pytest.mark.parametrize("curve", [0.5, 1.0, -1.0])
def test_bend_changes_pixels_only_near_the_old_and_new_spine(straight, curve):
    bent = rerender(straight, spine_curve=curve)
    old, new = straight.masks["spine"], bent.masks["spine"]
    changed = (bent.images != straight.images)[..., 0]
    near = ndimage.binary_dilation(old | new, np.ones((1, 5, 5), bool))  # soft edges: ~1-2 px
    assert changed.any(axis=(1, 2)).all() and not (changed & ~near).any()
    for key in ("lungs", "lesions", "heart", "abdomen", "marker", "body"):
        assert np.array_equal(bent.masks[key], straight.masks[key]), key
    for name in ("labels", "has_marker", "abdomen_gain", "lesion_extent", "subtle", "has_benign_blob"):
        np.testing.assert_array_equal(getattr(bent, name), getattr(straight, name), err_msg=name)


def test_spine_mask_moves_with_the_bend(straight):
    """The mask keeps its size and shifts sideways mid-chest, towards +u for a positive curve."""
    mid, top = slice(55, 75), slice(0, 8)   # about halfway down the bend; the neck, above it
    px_per_unit = straight.params.image_size / 2  # at pose scale 1 (0.90-1.04 here)
    for curve in (1.0, -1.0, 0.5):
        bent = rerender(straight, spine_curve=curve)
        old, new = straight.masks["spine"], bent.masks["spine"]
        shift = _centre_x(new, mid) - _centre_x(old, mid)
        expected = curve * SPINE_SHIFT * px_per_unit
        assert (np.sign(shift) == np.sign(curve)).all()
        assert 0.6 * abs(expected) < np.abs(shift).mean() < 1.2 * abs(expected)
        assert np.abs(_centre_x(new, top) - _centre_x(old, top)).max() < 0.5
        area0, area1 = old.sum(axis=(1, 2)), new.sum(axis=(1, 2))
        assert (np.abs(area1 - area0) <= 0.05 * area0).all()
        assert (new & ~old).sum() > 0.1 * old.sum() * abs(curve)
    back = rerender(rerender(straight, spine_curve=1.0), spine_curve=0.0)
    assert np.array_equal(back.images, straight.images)


def test_bend_works_on_a_row_subset(straight):
    rows = np.array([39, 0, 7])
    part = rerender(straight, rows, spine_curve=0.8)
    whole = rerender(straight, spine_curve=0.8)
    np.testing.assert_array_equal(part.images, whole.images[rows])
    np.testing.assert_array_equal(part.masks["spine"], whole.masks["spine"][rows])


@pytest.mark.parametrize("value", [1.5, -1.01, float("nan"), "0.5", True])
def test_spine_curve_out_of_range_raises(value):
    with pytest.raises(ValueError, match="spine_curve"):
        make_phantom_cxr(4, 64, spine_curve=value)


def test_cobb_angle_of_the_bend_matches_the_mask():
    assert spine_cobb_angle(0.0) == 0.0 and spine_cobb_angle(-1.0) == spine_cobb_angle(1.0)
    assert 30 < spine_cobb_angle(1.0) < 40 and 10 < spine_cobb_angle(0.3) < spine_cobb_angle(0.5)
    # measured on the masks: the sideways shift of the spine's centre per row, and the angle of
    # its tangent at each end of the bend (pose rotation, at most 5 degrees, is ignored)
    straight = make_phantom_cxr(4, 256, seed=1)
    bent = rerender(straight, spine_curve=1.0)
    for i in range(4):
        old, new = straight.masks["spine"][i], bent.masks["spine"][i]
        rows = np.flatnonzero(old.any(axis=1) & new.any(axis=1))
        x = np.arange(old.shape[1])
        shift = (new[rows] * x).sum(1) / new[rows].sum(1) - (old[rows] * x).sum(1) / old[rows].sum(1)
        bend = rows[np.abs(shift) > 0.5]
        top, bottom = bend.min(), bend.max()
        k = max(6, (bottom - top) // 8)
        ends = [np.polyfit(rows[(rows >= a) & (rows < a + k)], shift[(rows >= a) & (rows < a + k)], 1)[0]
                for a in (top, bottom - k + 1)]
        angle = np.degrees(np.arctan(abs(ends[0])) + np.arctan(abs(ends[1])))
        assert 0.75 * spine_cobb_angle(1.0) < angle < 1.15 * spine_cobb_angle(1.0), (i, angle)
