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


def test_mcnemar_identical_predictions_give_p_1():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 100)
    pred = np.where(rng.random(100) < 0.8, y, 1 - y)
    result = cstats.mcnemar(y, pred, pred.copy())
    assert (result.only_a, result.only_b) == (0, 0) and result.p_value == 1.0
    assert result.both_right + result.both_wrong == 100
    assert result.both_right == int((pred == y).sum())


def test_mcnemar_uses_only_the_discordant_pairs():
    y = np.ones(200, int)
    pred_a = np.ones(200, int)                 # A right on every image
    pred_b = pred_a.copy()
    pred_b[:20] = 0                            # B wrong on 20: all 20 discordant pairs go to A
    pred_a[100:150] = pred_b[100:150] = 0      # 50 images both get wrong: they must not matter
    result = cstats.mcnemar(y, pred_a, pred_b)
    assert result == (20, 0, 130, 50, pytest.approx(2 * 0.5**20))
    assert result.p_value < 1e-5
    swapped = cstats.mcnemar(y, pred_b, pred_a)  # symmetric: the same p, the counts swapped
    assert (swapped.only_a, swapped.only_b) == (0, 20) and swapped.p_value == result.p_value
    # 8 against 2 discordant pairs: the exact two-sided binomial p-value is 112 / 1024
    pred_c = np.ones(200, int)
    pred_c[:8] = 0
    pred_d = np.ones(200, int)
    pred_d[8:10] = 0
    assert cstats.mcnemar(y, pred_d, pred_c).p_value == pytest.approx(112 / 1024)
    # a tie among the discordant pairs is no evidence at all
    pred_e = np.ones(200, int)
    pred_e[10:18] = 0
    assert cstats.mcnemar(y, pred_c, pred_e).p_value == pytest.approx(1.0)


def test_mcnemar_checks_its_inputs():
    y = np.array([0, 1, 1, 0])
    assert cstats.mcnemar(y, np.array([0.0, 1, 1, 1]), y > 0).only_b == 1  # floats/bools 0/1 are labels
    with pytest.raises(ValueError, match="paired"):
        cstats.mcnemar(y, y[:3], y)
    with pytest.raises(ValueError, match="coded 0 and 1"):
        cstats.mcnemar(y, np.array([0.2, 0.9, 0.7, 0.1]), y)


def _scores(rng, y, separation):
    """Scores with a known population AUC: positives ~ N(separation, 1), negatives ~ N(0, 1)."""
    return rng.normal(size=len(y)) + separation * y


def test_paired_bootstrap_auc_identical_models_give_zero():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 150)
    p = _scores(rng, y, 1.0)
    assert cstats.paired_bootstrap_auc(y, p, p.copy(), n_boot=200) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_auc_covers_the_true_difference_and_is_paired():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = (rng.random(800) < 0.3).astype(int)
    p_a, p_b = _scores(rng, y, 2.0), _scores(rng, y, 1.0)
    true_diff = stats.norm.cdf(2.0 / np.sqrt(2)) - stats.norm.cdf(1.0 / np.sqrt(2))  # about 0.16
    est, lo, hi = cstats.paired_bootstrap_auc(y, p_a, p_b, n_boot=500, seed=0)
    assert est == pytest.approx(roc_auc_score(y, p_a) - roc_auc_score(y, p_b))
    assert lo < true_diff < hi and lo > 0  # the better model is detected
    assert cstats.paired_bootstrap_auc(y, p_b, p_a, n_boot=500, seed=0)[0] == pytest.approx(-est)
    assert cstats.paired_bootstrap_auc(y, p_a, p_b, n_boot=500, seed=0) == (est, lo, hi)  # seeded
    # Two nearly identical models: resampling both on the same images cancels the shared
    # uncertainty, so the interval of the difference is far narrower than that of one AUC.
    p_c = p_b + rng.normal(0, 0.2, len(y))
    _, lo_d, hi_d = cstats.paired_bootstrap_auc(y, p_b, p_c, n_boot=500, seed=0)
    single = cstats.bootstrap(len(y), 500, 0, 2, lambda idx: np.array([roc_auc_score(y[i], p_b[i])
                                                                       for i in idx]))
    lo_s, hi_s = cstats.percentile_ci(single, 0.95)
    assert (hi_d - lo_d) < 0.5 * (hi_s - lo_s)


def test_paired_bootstrap_auc_checks_its_inputs():
    y = np.array([0, 1, 1, 0, 1])
    p = np.linspace(0, 1, 5)
    with pytest.raises(ValueError, match="both classes"):
        cstats.paired_bootstrap_auc(np.ones(5, int), p, p)
    with pytest.raises(ValueError, match="paired"):
        cstats.paired_bootstrap_auc(y, p, p[:4])
    with pytest.raises(ValueError, match="finite"):
        cstats.paired_bootstrap_auc(y, p, np.r_[p[:4], np.nan])
    # few images: resamples with one class are skipped, the interval still exists
    est, lo, hi = cstats.paired_bootstrap_auc(y, p, p[::-1], n_boot=200)
    assert est == pytest.approx(4 / 6 - 2 / 6) and -1 <= lo <= hi <= 1


def test_compare_paired_runs_both_tests_and_reads_them_out():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(60, int), np.ones(60, int)]
    good = np.clip(y * 0.6 + rng.uniform(0, 0.4, 120), 0, 1)   # perfectly separated
    poor = rng.uniform(0, 1, 120)                              # chance
    c = cstats.compare_paired(y, good, poor, n_boot=200, seed=1)
    assert c.accuracy_a == 1.0 and 0.3 < c.accuracy_b < 0.7
    assert c.mcnemar == cstats.mcnemar(y, (good > 0.5).astype(int), (poor > 0.5).astype(int))
    assert c.mcnemar.p_value < 1e-6 and c.auc_difference.lo > 0
    text = c.summary("A", "B")
    assert "the accuracies differ" in text and "the AUCs differ" in text and "McNemar p = " in text
    same = cstats.compare_paired(y, poor, poor, n_boot=50)
    assert same.mcnemar.p_value == 1.0 and same.auc_difference.value == 0.0
    assert "no evidence" in same.summary("A", "A") and "includes 0" in same.summary("A", "A")


def test_resampled_auc_is_sklearns_roc_auc_per_resample_with_ties_and_one_class_resamples():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = (rng.random(60) < 0.3).astype(int)
    scores = np.round(rng.random(60) + 0.3 * y, 1)  # many ties, within and across classes
    idx = rng.integers(0, 60, (200, 60))
    idx[0] = np.flatnonzero(y == 0)[0]  # one class only: no AUC
    got = cstats.resampled_auc(y, scores, idx)
    want = np.array([roc_auc_score(y[i], scores[i]) if y[i].min() != y[i].max() else np.nan for i in idx])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.isnan(got[0]) and np.isfinite(got[1:]).all()


def test_bootstrap_auc_intervals_equal_those_of_sklearn_called_per_resample():
    from sklearn.metrics import roc_auc_score

    from course_utils import metrics

    rng = np.random.default_rng(4)
    y = (rng.random(120) < 0.4).astype(int)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    q = np.clip(p + rng.normal(0, 0.15, 120), 0, 1)

    def looped(stat):
        boot = cstats.bootstrap(len(y), 300, 9, 2, lambda idx: np.array(
            [stat(i) if y[i].min() != y[i].max() else np.nan for i in idx]))
        return cstats.percentile_ci(boot, 0.95)

    report = metrics.binary_report(y, p, n_boot=300, seed=9)
    lo, hi = looped(lambda i: roc_auc_score(y[i], p[i]))
    assert (report.auc.lo, report.auc.hi) == pytest.approx((lo, hi), abs=1e-12)
    paired = cstats.paired_bootstrap_auc(y, p, q, n_boot=300, seed=9)
    lo, hi = looped(lambda i: roc_auc_score(y[i], p[i]) - roc_auc_score(y[i], q[i]))
    assert (paired.lo, paired.hi) == pytest.approx((lo, hi), abs=1e-12)
    assert paired.value == pytest.approx(roc_auc_score(y, p) - roc_auc_score(y, q))
