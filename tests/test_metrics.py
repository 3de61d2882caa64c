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


# =========================================================================== notebooks 03-05
def _regions(n: int = 4, size: int = 10) -> dict[str, np.ndarray]:
    """Nested regions on a size x size grid: lesions (2x2) inside lungs (4x6) inside body (8x8)."""
    body = np.zeros((n, size, size), bool)
    body[:, 1:9, 1:9] = True
    lungs = np.zeros_like(body)
    lungs[:, 2:6, 2:8] = True
    lesions = np.zeros_like(body)
    lesions[:, 3:5, 3:5] = True
    return {"lungs": lungs, "lesions": lesions, "body": body}


def test_region_attribution_of_a_map_equal_to_one_region():
    masks = _regions()
    ra = metrics.region_attribution(masks["lungs"].astype(float) * 3.0, masks)
    np.testing.assert_allclose(ra.mass_share["lungs"], 1.0)
    np.testing.assert_allclose(ra.area_share["lungs"], 24 / 100)
    np.testing.assert_allclose(ra.enrichment["lungs"], 100 / 24)  # = 1 / area share
    np.testing.assert_allclose(ra.mass_share["lesions"], 4 / 24)  # lesions hold 4 of 24 lung pixels
    np.testing.assert_allclose(ra.mass_share["body"], 1.0)  # overlapping regions each count it
    np.testing.assert_allclose(ra.mass_share["outside body"], 0.0)
    np.testing.assert_allclose(ra.area_share["outside body"], 1 - 64 / 100)
    assert ra.regions == ["lungs", "lesions", "body", "outside body"]
    # signed maps: |map| by default; absolute=False refuses negative values
    np.testing.assert_allclose(metrics.region_attribution(-1.0 * masks["lungs"], masks).mass_share["lungs"], 1)
    with pytest.raises(ValueError, match="negative"):
        metrics.region_attribution(-1.0 * masks["lungs"], masks, absolute=False)


def test_region_attribution_of_a_uniform_map_is_enrichment_one_and_nan_for_empty_regions():
    masks = _regions()
    masks["lesions"][1] = False  # image 1 has no lesion
    ra = metrics.region_attribution(np.full((4, 10, 10), 0.5), masks)
    for region in ("lungs", "body", "outside body"):
        np.testing.assert_allclose(ra.enrichment[region], 1.0)
    np.testing.assert_allclose(ra.enrichment["lesions"][[0, 2, 3]], 1.0)
    assert np.isnan(ra.enrichment["lesions"][1]) and ra.mass_share["lesions"][1] == 0
    zero = metrics.region_attribution(np.zeros((4, 10, 10)), masks)  # no mass: shares undefined
    assert np.isnan(zero.mass_share["lungs"]).all() and np.isnan(zero.enrichment["lungs"]).all()


def test_region_attribution_table_per_class():
    masks = _regions()
    maps = np.stack([masks["lungs"][0], masks["lungs"][0], masks["body"][0], masks["body"][0]]).astype(float)
    ra = metrics.region_attribution(maps, masks)
    overall = ra.table()
    assert list(overall.columns) == ["mass_share", "area_share", "enrichment", "n_images"]
    assert overall.loc["lungs", "mass_share"] == pytest.approx((1 + 1 + 24 / 64 + 24 / 64) / 4)
    by_class = ra.table(labels=np.array([1, 1, 0, 0]))
    assert by_class.loc[("lungs", "COVID"), "mass_share"] == pytest.approx(1.0)
    assert by_class.loc[("lungs", "normal"), "mass_share"] == pytest.approx(24 / 64)
    assert by_class.loc[("outside body", "normal"), "enrichment"] == 0
    assert by_class.loc[("lesions", "COVID"), "n_images"] == 2
    named = ra.table(labels=np.array([True, True, False, False]), groups={True: "marker", False: "none"})
    assert named.loc[("lungs", "marker"), "mass_share"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="labels"):
        ra.table(labels=np.array([0, 1]))


def test_region_attribution_rejects_bad_masks():
    masks = _regions()
    with pytest.raises(ValueError, match="shape"):
        metrics.region_attribution(np.ones((4, 10, 11)), masks)
    with pytest.raises(ValueError, match="boolean"):
        metrics.region_attribution(np.ones((4, 10, 10)), {"soft": np.full((4, 10, 10), 0.3)})
    with pytest.raises(ValueError, match="empty"):
        metrics.region_attribution(np.ones((4, 10, 10)), {})
    with pytest.raises(ValueError, match=r"\(n, H, W\)"):
        metrics.region_attribution(np.ones((10, 10)), masks)


def test_pointing_game_hit_miss_and_empty_mask():
    maps = np.zeros((3, 8, 8))
    maps[:, 2, 3] = 1.0  # the maximum
    masks = np.zeros((3, 8, 8), bool)
    masks[0, 1:4, 2:5] = True  # contains (2, 3): hit
    masks[1, 5:, 5:] = True  # elsewhere: miss
    result = metrics.pointing_game(maps, masks)  # image 2: empty mask
    assert result[0] == 1.0 and result[1] == 0.0 and np.isnan(result[2])
    tied = np.zeros((1, 8, 8))
    tied[0, 7, 7] = tied[0, 0, 1] = 5.0  # ties go to the first pixel in row-major order
    corner = np.zeros((1, 8, 8), bool)
    corner[0, 0, 1] = True
    assert metrics.pointing_game(tied, corner)[0] == 1.0


def test_iou_identical_disjoint_half_overlap_and_empty():
    a = np.zeros((4, 10, 10), bool)
    b = np.zeros_like(a)
    a[:, 2:6, 2:6] = True
    b[0] = a[0]  # identical
    b[1, 6:, 6:] = True  # disjoint
    b[2, 2:6, 4:8] = True  # same-size square shifted by half its width: 8 / 24 = 1/3
    a[3] = False  # both empty
    result = metrics.iou(a, b)
    np.testing.assert_allclose(result[:3], [1.0, 0.0, 1 / 3])
    assert np.isnan(result[3])
    with pytest.raises(ValueError, match="shape"):
        metrics.iou(a, b[:, :5])


def test_binarise_quantile_otsu_and_threshold():
    maps = np.random.default_rng(0).permutation(100).reshape(1, 10, 10).astype(float)
    top = metrics.binarise(maps, "quantile", 0.9)
    assert top.sum() == 10 and (maps[top] >= 90).all()
    two_level = np.zeros((2, 12, 12))
    two_level[0, 3:7, 2:9] = 2.0
    two_level[1, 5:, :4] = 0.7
    truth = two_level > 0
    np.testing.assert_array_equal(metrics.binarise(two_level + 0.1), truth)  # Otsu is the default
    ramp = np.linspace(-1, 3, 100).reshape(1, 10, 10)  # min-max normalised: k / 99
    assert metrics.binarise(ramp, "threshold", 0.5).sum() == 50  # k / 99 > 0.5 for k = 50..99
    assert not metrics.binarise(np.ones((1, 10, 10)), "otsu").any()  # constant map: empty
    plateau = np.zeros((1, 10, 10))
    plateau[0, 0, :5] = 1.0  # 95% zeros: the 0.9 quantile is 0 and ties with it are dropped
    np.testing.assert_array_equal(metrics.binarise(plateau, "quantile", 0.9), plateau > 0)
    from skimage.filters import threshold_otsu  # per image: each map gets its own threshold
    rng = np.random.default_rng(1)
    bimodal = np.where(rng.random((3, 16, 16)) < 0.3, 3.0, 1.0) + rng.normal(0, 0.4, (3, 16, 16))
    bimodal *= np.array([1.0, 10.0, 0.1])[:, None, None]
    expected = np.stack([m > threshold_otsu(m) for m in bimodal])
    np.testing.assert_array_equal(metrics.binarise(bimodal), expected)
    assert not metrics.binarise(np.ones((1, 10, 10)), "threshold", 0.0).any()
    for method, value, message in (("otsu", 0.5, "None"), ("quantile", 1.0, "0 < value < 1"),
                                   ("threshold", None, r"\[0, 1\]"), ("median", None, "method")):
        with pytest.raises(ValueError, match=message):
            metrics.binarise(maps, method, value)


def test_saliency_iou_is_iou_of_the_binarised_map():
    truth = np.zeros((2, 12, 12), bool)
    truth[:, 2:6, 2:6] = True
    maps = truth * 1.0 + 0.05
    np.testing.assert_allclose(metrics.saliency_iou(maps, truth), 1.0)
    maps[1] = 0.05
    maps[1, 6:10, 2:6] = 1.0  # the map lights up the square below
    np.testing.assert_allclose(metrics.saliency_iou(maps, truth, "quantile", 1 - 16 / 144), [1.0, 0.0])


def test_ssim_and_spearman_of_a_map_with_itself():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(3, 16, 16))
    np.testing.assert_allclose(metrics.ssim_maps(a, a), 1.0)
    np.testing.assert_allclose(metrics.ssim_maps(a, 5 * a + 2), 1.0, atol=1e-12)  # min-max scaled
    assert (metrics.ssim_maps(a, rng.normal(size=a.shape)) < 0.5).all()
    np.testing.assert_allclose(metrics.spearman_maps(a, a), 1.0)
    np.testing.assert_allclose(metrics.spearman_abs(a, a), 1.0)
    np.testing.assert_allclose(metrics.spearman_abs(a, -a), 1.0)  # a sign flip is no change with abs
    np.testing.assert_allclose(metrics.spearman_maps(a, -a), -1.0)  # ... but is without
    with pytest.raises(ValueError, match="7 x 7"):
        metrics.ssim_maps(a[:, :5, :5], a[:, :5, :5])
    with pytest.raises(ValueError, match="same shape"):
        metrics.ssim_maps(a, a[:2])


def test_jensen_shannon_known_values():
    assert metrics.jensen_shannon([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == pytest.approx(0.0, abs=1e-15)
    assert metrics.jensen_shannon([1.0, 0.0], [0.0, 1.0]) == pytest.approx(np.log(2), rel=1e-12)
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    m = (p + q) / 2
    by_hand = 0.5 * (np.sum(p * np.log(p / m)) + np.sum(q * np.log(q / m)))
    assert metrics.jensen_shannon(p, q) == pytest.approx(by_hand, rel=1e-12)
    from scipy.spatial.distance import jensenshannon  # natural log by default; returns sqrt(JSD)
    assert metrics.jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q) ** 2, rel=1e-9)
    # batched along an axis
    np.testing.assert_allclose(metrics.jensen_shannon(np.stack([p, p]).T, np.stack([p, q]).T, axis=0),
                               [0.0, by_hand], atol=1e-15)


def test_jensen_shannon_clamp_follows_the_dial_code():
    # M = [1 - 2e-8, 2e-8]: its second entry is clamped to 1e-7 before the log
    p, q = np.array([1.0, 0.0]), np.array([1 - 4e-8, 4e-8])
    m0 = 1 - 2e-8
    clamped = 0.5 * (np.log(1 / m0) + (1 - 4e-8) * np.log((1 - 4e-8) / m0) + 4e-8 * np.log(4e-8 / 1e-7))
    exact = 0.5 * (np.log(1 / m0) + (1 - 4e-8) * np.log((1 - 4e-8) / m0) + 4e-8 * np.log(4e-8 / 2e-8))
    assert metrics.jensen_shannon(p, q) == pytest.approx(clamped, rel=1e-9)
    assert metrics.jensen_shannon(p, q, clamp=0.0) == pytest.approx(exact, rel=1e-9)
    assert clamped < 0 < exact  # the clamp biases tiny-mass differences down, here below zero
    tiny = np.full(1000, 1e-8)
    tiny[0] = 1 - tiny[1:].sum()
    assert metrics.jensen_shannon(tiny, tiny, clamp=0.0) == 0.0
    # identical, yet below zero with the clamp: 999 entries of 1e-8 * log(1e-8 / 1e-7)
    assert metrics.jensen_shannon(tiny, tiny) == pytest.approx(999 * 1e-8 * np.log(0.1), rel=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        metrics.jensen_shannon([1.5, -0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="same shape"):
        metrics.jensen_shannon([1.0, 0.0], [1.0, 0.0, 0.0])


def test_prediction_and_saliency_divergence():
    np.testing.assert_allclose(metrics.prediction_divergence([0.3, 1.0, 0.5], [0.3, 0.0, 0.9]),
                               [0.0, np.log(2), metrics.jensen_shannon([0.5, 0.5], [0.9, 0.1])])
    a = np.random.default_rng(1).random((3, 6, 6))
    b = a.copy()
    b[1] = np.roll(a[1], 3, axis=0)
    b[2] = 0.0  # all-zero map: no distribution
    d = metrics.saliency_divergence(a, 7 * b)  # scale does not matter: maps are divided by their sum
    assert d[0] == pytest.approx(0.0, abs=1e-12) and d[1] > 0.01 and np.isnan(d[2])
    disjoint = np.zeros((1, 4, 4, 3))
    disjoint2 = disjoint.copy()
    disjoint[0, :2, :, 0] = 1.0
    disjoint2[0, 2:, :, 2] = -1.0  # |map|, summed over channels
    assert metrics.saliency_divergence(disjoint, disjoint2)[0] == pytest.approx(np.log(2))
    split, moved = np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2))
    split[0, 0, 0], split[0, 0, 1] = [1.0, 1.0], [2.0, 0.0]  # channels are summed, not maxed:
    moved[0, 0, 0], moved[0, 0, 1] = [2.0, 0.0], [1.0, -1.0]  # both pixels hold mass 2 in both maps
    assert metrics.saliency_divergence(split, moved)[0] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        metrics.saliency_divergence(a, a[:, :5])


def _coupled_case(n: int, seed: int = 0, channels: int | None = None):
    """Maps whose pixel distribution is [p, 1 - p, 0, ...]: D_sal equals D_pred exactly."""
    rng = np.random.default_rng(seed)
    p_before, p_after = rng.uniform(0.05, 0.95, n), rng.uniform(0.05, 0.95, n)

    def maps(p):
        m = np.zeros((n, 4, 4, channels or 1))
        m[:, 0, 0, 0], m[:, 3, 3, -1] = 5 * p, 5 * (1 - p)  # in different channels when C > 1
        return m if channels else m[..., 0]
    return p_before, p_after, maps(p_before), maps(p_after)


def test_psc_of_perfectly_coupled_changes_is_one():
    pb, pa, mb, ma = _coupled_case(50)
    result = metrics.psc(pb, pa, mb, ma, n_boot=200)
    np.testing.assert_allclose(result.d_sal, result.d_pred, rtol=1e-9, atol=1e-15)
    assert result.r == pytest.approx(1.0) and result.ci_low == pytest.approx(1.0)
    assert str(result).startswith("PSC = 1.00 (95% CI 1.00\u20131.00, n = 50)")
    result4 = metrics.psc(pb, pa, *_coupled_case(50, channels=3)[2:], n_boot=50)  # (n, H, W, C)
    assert result4.r == pytest.approx(1.0)


def test_psc_equals_pearson_of_the_divergences_with_a_sane_ci():
    rng = np.random.default_rng(2)
    n = 200
    pb, pa = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    mb, ma = rng.random((n, 8, 8)), rng.random((n, 8, 8))
    result = metrics.psc(pb, pa, mb, ma, n_boot=300, seed=1)
    d_pred, d_sal = metrics.prediction_divergence(pb, pa), metrics.saliency_divergence(mb, ma)
    expected = stats.pearsonr(d_pred, d_sal)
    assert result.r == pytest.approx(expected.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-8)
    assert -1 <= result.ci_low <= result.r <= result.ci_high <= 1
    assert result.n == n and result.d_pred.shape == result.d_sal.shape == (n,)
    assert result.n_boot_valid == 300 and result.n_filled == 0
    again = metrics.psc(pb, pa, mb, ma, n_boot=300, seed=1)
    assert (again.r, again.ci_low, again.ci_high) == (result.r, result.ci_low, result.ci_high)
    other = metrics.psc(pb, pa, mb, ma, n_boot=300, seed=2)
    assert (other.ci_low, other.ci_high) != (result.ci_low, result.ci_high)


def test_psc_of_shuffled_pairs_is_near_zero():
    pb, pa, mb, ma = _coupled_case(2000, seed=3)
    perm = np.random.default_rng(4).permutation(2000)
    result = metrics.psc(pb, pa, mb[perm], ma[perm], n_boot=200)  # maps now belong to other images
    assert abs(result.r) < 0.15
    assert result.ci_low < 0 < result.ci_high


def test_psc_replaces_nan_saliency_divergences_by_their_mean():
    pb, pa, mb, ma = _coupled_case(20)
    ma[4] = 0.0  # an all-zero map after the perturbation
    result = metrics.psc(pb, pa, mb, ma, n_boot=50)
    d_sal = metrics.saliency_divergence(mb, ma)
    assert np.isnan(d_sal[4]) and result.n_filled == 1
    assert result.d_sal[4] == pytest.approx(np.nanmean(d_sal))
    assert result.r == pytest.approx(stats.pearsonr(result.d_pred, result.d_sal).statistic)


def test_psc_constant_sides_raise():
    pb, pa, mb, ma = _coupled_case(10)
    with pytest.raises(ValueError, match="D_pred is constant"):
        metrics.psc(pb, pb, mb, mb)  # nothing changed
    with pytest.raises(ValueError, match="D_sal is constant"):
        metrics.psc(pb, pa, mb, mb)  # the prediction moved, the maps did not
    with pytest.raises(ValueError, match="all-zero"):
        metrics.psc(pb, pa, mb, np.zeros_like(ma))


def test_psc_rejects_bad_inputs():
    pb, pa, mb, ma = _coupled_case(10)
    cases = [
        ((pb, pa[:9], mb, ma), "same shape"),
        ((pb, pa, mb, ma[:, :3]), "same shape"),
        ((pb, pa, mb[:9], ma[:9]), "10 images but maps_before has 9"),
        ((pb[:2], pa[:2], mb[:2], ma[:2]), "at least 3"),
        ((pb * 3, pa, mb, ma), r"probabilities in \[0, 1\]"),
        ((np.where(pb > 0.5, np.nan, pb), pa, mb, ma), "finite"),
        ((pb, pa, mb[:, 0], ma[:, 0]), r"\(n, H, W\) or \(n, H, W, C\)"),
        ((pb, pa, np.where(mb > 1, np.inf, mb), ma), "NaN or inf"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            metrics.psc(*args, n_boot=10)
    with pytest.raises(ValueError, match="n_boot"):
        metrics.psc(pb, pa, mb, ma, n_boot=0)
    assert metrics.psc(pb[:, None], pa[:, None], mb, ma, n_boot=10).n == 10  # (n, 1) model output


def test_bootstrap_ci_constant_shrinking_and_deterministic():
    assert metrics.bootstrap_ci(np.full(30, 2.5)) == (2.5, 2.5, 2.5)
    rng = np.random.default_rng(5)
    small, large = rng.normal(1, 1, 50), rng.normal(1, 1, 5000)
    est_s, lo_s, hi_s = metrics.bootstrap_ci(small, n_boot=500)
    est_l, lo_l, hi_l = metrics.bootstrap_ci(large, n_boot=500)
    assert lo_s <= est_s <= hi_s and lo_l <= est_l <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5  # width ~ 1 / sqrt(n): 10x fewer -> about 1/10
    assert (hi_l - lo_l) == pytest.approx(2 * 1.96 / np.sqrt(5000), rel=0.2)
    assert metrics.bootstrap_ci(small, n_boot=500) == (est_s, lo_s, hi_s)
    with_nan = np.r_[small, np.nan, np.nan]  # NaNs are ignored by the default nanmean
    assert metrics.bootstrap_ci(with_nan, n_boot=500)[0] == pytest.approx(est_s)
    est, lo, hi = metrics.bootstrap_ci(np.stack([small, small + 10], 1), n_boot=200)  # per column
    assert est.shape == lo.shape == hi.shape == (2,) and est[1] == pytest.approx(est[0] + 10)
    est_med = metrics.bootstrap_ci(small, statistic=np.nanmedian, n_boot=200)[0]
    assert est_med == pytest.approx(np.median(small))
    with pytest.raises(ValueError, match="confidence"):
        metrics.bootstrap_ci(small, confidence=95)
    with pytest.raises(ValueError, match="non-empty"):
        metrics.bootstrap_ci(np.array([]))


def test_bootstrap_ci_paired_correlations():
    rng = np.random.default_rng(6)
    x = rng.normal(size=300)
    y = x + rng.normal(size=300)
    est, lo, hi = metrics.bootstrap_ci_paired(x, y, n_boot=400)
    assert est == pytest.approx(stats.pearsonr(x, y).statistic) and lo < est < hi
    assert est == pytest.approx(1 / np.sqrt(2), abs=0.1)
    rho = metrics.bootstrap_ci_paired(x, np.exp(y), "spearman", n_boot=100)[0]
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert metrics.bootstrap_ci_paired(x, 2 * x + 1, n_boot=100) == pytest.approx((1.0, 1.0, 1.0))
    diff = metrics.bootstrap_ci_paired(x, y, lambda a, b: (b - a).mean(-1), n_boot=100)
    assert diff[0] == pytest.approx((y - x).mean())
    # three images: many resamples repeat one image (a constant side) and are skipped
    assert metrics.bootstrap_ci_paired(x[:3], y[:3], n_boot=200)[1] >= -1
    with pytest.raises(ValueError, match="finite"):
        metrics.bootstrap_ci_paired(np.r_[x[:5], np.nan], y[:6])
    with pytest.raises(ValueError, match="paired"):
        metrics.bootstrap_ci_paired(x, y[:10])


def test_region_table_bootstrap_interval_brackets_the_mean():
    rng = np.random.default_rng(3)
    maps = rng.uniform(size=(40, 8, 8))
    region = np.zeros((40, 8, 8), bool)
    region[:, :4] = True
    table = metrics.region_attribution(maps, {"left": region}).table(
        labels=np.r_[np.zeros(20, int), np.ones(20, int)], n_boot=200, seed=1)
    for _, row in table.iterrows():
        assert row["enrichment_lo"] <= row["enrichment"] <= row["enrichment_hi"]
        assert row["enrichment_hi"] - row["enrichment_lo"] < 0.2
