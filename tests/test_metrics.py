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


def test_binary_report_counts_and_rates_match_a_hand_example():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    probs = np.array([0.9, 0.8, 0.6, 0.3, 0.1, 0.2, 0.4, 0.45, 0.7, 0.05])
    r = metrics.binary_report(labels, probs, n_boot=200)
    assert (r["tp"], r["fn"], r["tn"], r["fp"]) == (3, 1, 5, 1)
    assert r["accuracy"] == 0.8 and r["sensitivity"] == 0.75 and r["specificity"] == 5 / 6
    assert r["accuracy_lo"] < 0.8 < r["accuracy_hi"]
    # AUC by hand: of 24 positive/negative pairs, 20 are ordered correctly (0.3 loses to 0.4, 0.45
    # and 0.7; 0.6 loses to 0.7)
    assert r["auc"] == pytest.approx(20 / 24)
    assert r["auc_lo"] <= r["auc"] <= r["auc_hi"]


def test_binary_report_matches_the_articles_arithmetic():
    # 321 of 367 COVID and 991 of 1,014 normal correct -> 1,312 / 1,381 = 95.0 %
    labels = np.r_[np.ones(367), np.zeros(1014)]
    probs = np.r_[np.ones(321), np.zeros(46), np.zeros(991), np.ones(23)]
    r = metrics.binary_report(labels, probs, n_boot=10)
    assert r["tp"] == 321 and r["fp"] == 23 and r["accuracy"] == pytest.approx(1312 / 1381)


def test_binary_report_rejects_bad_labels():
    with pytest.raises(ValueError, match="both classes"):
        metrics.binary_report(np.ones(5), np.ones(5))
    with pytest.raises(ValueError, match="shape"):
        metrics.binary_report(np.array([0, 1]), np.array([0.5]))
