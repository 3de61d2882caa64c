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
    assert (r.tp, r.fn, r.tn, r.fp) == (3, 1, 5, 1)
    assert r.accuracy.value == 0.8 and r.sensitivity.value == 0.75
    assert r.specificity.value == 5 / 6
    assert r.accuracy.lo < 0.8 < r.accuracy.hi
    # AUC by hand: of 24 positive/negative pairs, 20 are ordered correctly (0.3 loses to 0.4, 0.45
    # and 0.7; 0.6 loses to 0.7)
    assert r.auc.value == pytest.approx(20 / 24)
    assert r.auc.lo <= r.auc.value <= r.auc.hi
    assert f"{r.accuracy:.1%}" == f"80.0% ({r.accuracy.lo:.1%}\u2013{r.accuracy.hi:.1%})"


def test_binary_report_matches_the_articles_arithmetic():
    # 321 of 367 COVID and 991 of 1,014 normal correct -> 1,312 / 1,381 = 95.0 %
    labels = np.r_[np.ones(367), np.zeros(1014)]
    probs = np.r_[np.ones(321), np.zeros(46), np.zeros(991), np.ones(23)]
    r = metrics.binary_report(labels, probs, n_boot=10)
    assert r.tp == 321 and r.fp == 23 and r.accuracy.value == pytest.approx(1312 / 1381)


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
    signed = metrics.region_attribution(-1.0 * masks["lungs"], masks)
    np.testing.assert_allclose(signed.mass_share["lungs"], 1)
    with pytest.raises(ValueError, match="negative"):
        metrics.region_attribution(-1.0 * masks["lungs"], masks, absolute=False)


def test_region_attribution_of_a_uniform_map_is_enrichment_one_and_nan_for_empty_regions():
    masks = _regions()
    masks["lesions"][1] = False  # image 1 has no lesion
    ra = metrics.region_attribution(np.full((4, 10, 10), 0.5), masks)
    for region in ("lungs", "body", "outside body"):
        np.testing.assert_allclose(ra.enrichment[region], 1.0)
    np.testing.assert_allclose(ra.enrichment["lesions"][[0, 2, 3]], 1.0)
    assert np.isnan(ra.enrichment["lesions"][1]) and np.isnan(ra.mass_share["lesions"][1])
    # an absent region is undefined, not "no mass": a mean over images skips it
    np.testing.assert_allclose(ra.mass_share["lesions"][[0, 2, 3]], ra.area_share["lesions"][[0, 2, 3]])
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


def test_binary_report_skill_names_the_majority_floor_and_one_class_models():
    y = np.r_[np.ones(30), np.zeros(10)]
    everything_covid = metrics.binary_report(y, np.full(40, 0.9), n_boot=50)
    assert everything_covid.majority_rate == 0.75
    text = everything_covid.skill()
    assert "'COVID' would score 75.0%" in text and "calls every case 'COVID'" in text
    everything_normal = metrics.binary_report(y, np.full(40, 0.1), n_boot=50)
    assert "calls every case 'normal'" in everything_normal.skill()
    perfect = metrics.binary_report(y, y * 0.8 + 0.1, n_boot=50)
    assert "clearly above that floor" in perfect.skill() and "calls every" not in perfect.skill()
    one_off = metrics.binary_report(y, np.r_[np.full(29, 0.9), 0.1, np.full(10, 0.9) * np.r_[0, np.ones(9)]],
                                    n_boot=50)  # 31 of 40 right, barely above 75 %
    assert "no better than the floor" in one_off.skill()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_map_ranks_equal_scipy_rankdata_with_ties_and_nan(dtype):
    """metrics._ranks: scipy.stats.rankdata's average ranks, row by row (ties, constant maps, NaN)."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(0)
    maps = rng.integers(0, 5, (6, 9, 11)).astype(dtype)  # many ties
    maps[1] = 3  # a constant map: every pixel the mean rank
    maps[2] = rng.normal(size=(9, 11)).astype(dtype) if dtype != np.int64 else maps[2]
    if dtype != np.int64:
        maps[3, 4, 5] = np.nan
    expected = rankdata(maps.reshape(6, -1).astype(np.float64), axis=-1)
    np.testing.assert_array_equal(metrics._ranks(maps), expected)
