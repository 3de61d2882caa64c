"""Map similarity metrics against cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from course_utils import metrics


def test_spearman_identity_reversal_and_scipy_agreement():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 6, 7))
    np.testing.assert_allclose(metrics.spearman_maps(a, a), 1.0)
    np.testing.assert_allclose(metrics.spearman_maps(a, -a), -1.0)
    np.testing.assert_allclose(metrics.spearman_maps(a, np.exp(a)), 1.0)  # ranks only
    b = rng.normal(size=a.shape)
    b[0, 0, :3] = b[0, 0, 0]  # ties
    expected = [stats.spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(metrics.spearman_maps(a, b), expected, rtol=1e-10)


def test_spearman_of_a_constant_map_is_nan_and_shapes_are_checked():
    a = np.zeros((1, 4, 4))
    assert np.isnan(metrics.spearman_maps(a, np.random.default_rng(1).normal(size=a.shape))[0])
    with pytest.raises(ValueError, match="same shape"):
        metrics.spearman_maps(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))


def test_top_fraction_overlap():
    a = np.arange(100.0).reshape(1, 10, 10)
    assert metrics.top_fraction_overlap(a, a, 0.1)[0] == 1.0
    assert metrics.top_fraction_overlap(a, -a, 0.1)[0] == 0.0
    b = a.copy()
    b[0, 9, 5:] = -1  # half of a's top-10 pixels drop out of b's top 10
    assert metrics.top_fraction_overlap(a, b, 0.1)[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="fraction"):
        metrics.top_fraction_overlap(a, a, 0)
