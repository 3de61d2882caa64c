"""Bootstrap intervals, correlations along an axis and the Estimate type."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from course_utils import stats as cstats


def test_bootstrap_ci_constant_shrinking_and_deterministic():
    assert cstats.bootstrap_ci(np.full(30, 2.5)) == (2.5, 2.5, 2.5)
    rng = np.random.default_rng(5)
    small, large = rng.normal(1, 1, 50), rng.normal(1, 1, 5000)
    est_s, lo_s, hi_s = cstats.bootstrap_ci(small, n_boot=500)
    est_l, lo_l, hi_l = cstats.bootstrap_ci(large, n_boot=500)
    assert lo_s <= est_s <= hi_s and lo_l <= est_l <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5  # width ~ 1 / sqrt(n): 10x fewer -> about 1/10
    assert (hi_l - lo_l) == pytest.approx(2 * 1.96 / np.sqrt(5000), rel=0.2)
    assert cstats.bootstrap_ci(small, n_boot=500) == (est_s, lo_s, hi_s)
    with_nan = np.r_[small, np.nan, np.nan]  # NaNs are ignored by the default nanmean
    assert cstats.bootstrap_ci(with_nan, n_boot=500)[0] == pytest.approx(est_s)
    est, lo, hi = cstats.bootstrap_ci(np.stack([small, small + 10], 1), n_boot=200)  # per column
    assert est.shape == lo.shape == hi.shape == (2,) and est[1] == pytest.approx(est[0] + 10)
    est_med = cstats.bootstrap_ci(small, statistic=np.nanmedian, n_boot=200)[0]
    assert est_med == pytest.approx(np.median(small))
    with pytest.raises(ValueError, match="confidence"):
        cstats.bootstrap_ci(small, confidence=95)
    with pytest.raises(ValueError, match="non-empty"):
        cstats.bootstrap_ci(np.array([]))


def test_bootstrap_ci_paired_correlations():
    rng = np.random.default_rng(6)
    x = rng.normal(size=300)
    y = x + rng.normal(size=300)
    est, lo, hi = cstats.bootstrap_ci_paired(x, y, n_boot=400)
    assert est == pytest.approx(stats.pearsonr(x, y).statistic) and lo < est < hi
    assert est == pytest.approx(1 / np.sqrt(2), abs=0.1)
    rho = cstats.bootstrap_ci_paired(x, np.exp(y), "spearman", n_boot=100)[0]
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert cstats.bootstrap_ci_paired(x, 2 * x + 1, n_boot=100) == pytest.approx((1.0, 1.0, 1.0))
    diff = cstats.bootstrap_ci_paired(x, y, lambda a, b: (b - a).mean(-1), n_boot=100)
    assert diff[0] == pytest.approx((y - x).mean())
    # three images: many resamples repeat one image (a constant side) and are skipped
    assert cstats.bootstrap_ci_paired(x[:3], y[:3], n_boot=200)[1] >= -1
    with pytest.raises(ValueError, match="finite"):
        cstats.bootstrap_ci_paired(np.r_[x[:5], np.nan], y[:6])
    with pytest.raises(ValueError, match="paired"):
        cstats.bootstrap_ci_paired(x, y[:10])


def test_estimate_formats_itself_and_unpacks():
    est = cstats.Estimate(0.25, 0.12, 0.38)
    value, lo, hi = est
    assert (value, lo, hi) == (0.25, 0.12, 0.38)
    assert f"{est:.2f}" == "0.25 (0.12\u20130.38)"
    assert str(est) == "0.25 (0.12\u20130.38)"
    assert f"{cstats.Estimate(0.95, 0.931, 0.964):.1%}" == "95.0% (93.1%\u201396.4%)"


def test_proportion_is_wilson():
    est = cstats.proportion(8, 10)
    assert est.value == 0.8 and est.lo < 0.8 < est.hi < 1
    ci = stats.binomtest(8, 10).proportion_ci(method="wilson")
    assert (est.lo, est.hi) == pytest.approx((ci.low, ci.high))


def test_spearman_and_pearson_along_the_last_axis_match_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 40)), rng.normal(size=(3, 40))
    for i in range(3):
        assert cstats.pearson(x, y)[i] == pytest.approx(stats.pearsonr(x[i], y[i]).statistic)
        assert cstats.spearman(x, y)[i] == pytest.approx(stats.spearmanr(x[i], y[i]).statistic)
    assert np.isnan(cstats.spearman(np.ones(5), np.arange(5.0)))
