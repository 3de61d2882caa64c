"""Tests for metrics.region_edit: what a counterfactual edit of one region did (no TensorFlow)."""
from __future__ import annotations

import numpy as np
import pytest

from course_utils import metrics


def _band(n: int, col: int) -> np.ndarray:
    m = np.zeros((n, 16, 16), bool)
    m[:, :, col:col + 2] = True
    return m


def test_region_edit_counts_moves_flips_and_mass():
    n = 4
    before, after = _band(n, 7), _band(n, 9)
    maps_b = before.astype(float)            # all the mass on the region
    maps_a = np.ones((n, 16, 16))            # uniform: mass share = area share
    p_b = np.array([0.1, 0.4, 0.6, 0.9])
    p_a = np.array([0.1, 0.6, 0.6, 0.8])     # one flip, |Δp| 0, 0.2, 0, 0.1
    r = metrics.region_edit(p_b, p_a, maps_b, maps_a, before, after)
    assert r.n == n and r.mean_abs_dp == pytest.approx(0.075) and r.flipped == pytest.approx(0.25)
    assert r.mass_before == pytest.approx(1.0) and r.mass_after == pytest.approx(2 / 16)
    assert r.area_before == pytest.approx(2 / 16) == r.area_after
    assert not r.ignored() and "moves" in r.verdict("the spine", "scoliosis")
    away = metrics.region_edit(p_b, p_a, maps_b, (~after) * 1.0, before, after)  # no mass on it
    assert away.mass_after == 0 and "does not point at it" in away.verdict("the spine", "scoliosis")


def test_region_edit_verdict_when_nothing_moves():
    m = _band(3, 4)
    p = np.array([0.2, 0.5001, 0.9])
    r = metrics.region_edit(p, p + 0.001, m * 1.0, m * 1.0, m, m)
    assert r.ignored() and r.flipped == 0
    text = r.verdict("the spine", "scoliosis")
    assert "barely moves" in text and "blind to this change of the spine" in text
    assert "0.0010" in text
    assert "does weight it" in text and "8.00x" in text  # all mass on a band of 1/8 of the image
    assert not r.ignored(tolerance=0.0005)


def test_region_edit_rejects_unpaired_inputs():
    m = _band(3, 4)
    with pytest.raises(ValueError, match="paired"):
        metrics.region_edit(np.zeros(3), np.zeros(2), m * 1.0, m * 1.0, m, m)
    with pytest.raises(ValueError, match="expected 3 maps"):
        metrics.region_edit(np.zeros(3), np.zeros(3), m[:2] * 1.0, m * 1.0, m, m)
