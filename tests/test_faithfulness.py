"""Deletion/insertion, ROAD and the random baseline on a model that reads one known region."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import linear_model
from scipy.special import expit

from course_utils import faithfulness

SIDE, N = 16, 4
REGION = np.zeros((SIDE, SIDE), bool)
REGION[3:7, 9:13] = True  # 16 of 256 pixels: one deletion step of 1/16 removes exactly them
GAIN, CUT = 10.0, 0.5  # p = sigmoid(GAIN * (mean of the region - CUT))


def _p(region_mean) -> np.ndarray:
    return expit(GAIN * (np.asarray(region_mean, np.float64) - CUT))


@pytest.fixture(scope="module")
def case():
    """A sigmoid model that reads only the mean of REGION, and images with a bright REGION."""
    model = linear_model(REGION / REGION.sum() * GAIN, "sigmoid", bias=-GAIN * CUT)
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 0.5, (N, SIDE, SIDE, 1)).astype(np.float32)
    x[:, REGION] = rng.uniform(0.6, 1.0, (N, REGION.sum(), 1))
    return model, x


def _maps(where: np.ndarray) -> np.ndarray:
    return np.broadcast_to(where, (N, SIDE, SIDE)).astype(np.float32)


@pytest.fixture(scope="module")
def curves(case):
    model, x = case
    maps = {"region": _maps(REGION), "elsewhere": _maps(~REGION),
            "random": faithfulness.random_maps(x, seed=0)}
    return {k: faithfulness.deletion_insertion(model, x, m, steps=16, baseline=("zero", "mean"))
            for k, m in maps.items()}


def test_the_map_of_the_read_region_beats_random_and_the_wrong_map(curves):
    region, random, elsewhere = curves["region"], curves["random"], curves["elsewhere"]
    assert (region.deletion_auc < random.deletion_auc).all()
    assert (random.deletion_auc < elsewhere.deletion_auc).all()
    assert (region.insertion_auc > random.insertion_auc).all()
    assert (random.insertion_auc > elsewhere.insertion_auc).all()
    for res in curves.values():
        assert res.deletion_curve.shape == res.insertion_curve.shape == (N, 17)
        assert res.fractions.shape == (17,) and res.fractions[0] == 0 and res.fractions[-1] == 1
        assert ((0 <= res.deletion_auc) & (res.deletion_auc <= 1)).all()


def test_curves_have_the_analytic_values(case, curves):
    _, x = case
    res = curves["region"]
    p_image = _p(x[:, REGION].mean(axis=(1, 2)))
    p_black = _p(0.0)
    p_mean = _p(x.mean(axis=(1, 2, 3)))  # the "mean" baseline: every pixel at the image's mean
    # deletion: starts at p(image); after step 1 (16 pixels = the region) and to the end, p(black)
    np.testing.assert_allclose(res.deletion_curve[:, 0], p_image, rtol=1e-5)
    np.testing.assert_allclose(res.deletion_curve[:, 1:], p_black, rtol=1e-4)
    # insertion: starts at p(mean image); the region back after step 1 gives p(image) already
    np.testing.assert_allclose(res.insertion_curve[:, 0], p_mean, rtol=1e-5)
    np.testing.assert_allclose(res.insertion_curve[:, 1:], p_image[:, None] * np.ones(16), rtol=1e-5)
    # trapezoid over the 17 fractions: the first interval is a slope, the rest are flat
    np.testing.assert_allclose(res.deletion_auc, (p_image + p_black) / 32 + p_black * 15 / 16, rtol=1e-4)
    np.testing.assert_allclose(res.insertion_auc, (p_mean + p_image) / 32 + p_image * 15 / 16, rtol=1e-4)


def test_a_constant_map_is_the_random_baseline_in_expectation(case):
    """All pixels tie, so the seeded tie-break orders them at random: the same distribution of
    orders as a random map. Averaged over 16 seeds x 4 images the two means must agree within
    4 standard errors of their difference (a z-test that fails by chance with p < 1e-4)."""
    model, x = case
    flat = np.zeros((N, SIDE, SIDE))
    constant = np.concatenate([faithfulness.deletion_insertion(model, x, flat, steps=16, seed=s)
                               .deletion_auc for s in range(16)])
    random = np.concatenate([faithfulness.deletion_insertion(
        model, x, faithfulness.random_maps(x, seed=s), steps=16).deletion_auc for s in range(16)])
    se = np.sqrt(constant.var(ddof=1) / constant.size + random.var(ddof=1) / random.size)
    assert abs(constant.mean() - random.mean()) < 4 * se
    # ...and the test can fail: ties broken in raster order (a plain stable sort) remove the
    # region (rows 3-6 of 16) early, which lies outside that band (about 7 standard errors).
    raster = -np.arange(SIDE * SIDE, dtype=np.float64).reshape(1, SIDE, SIDE).repeat(N, 0)
    in_order = faithfulness.deletion_insertion(model, x, raster, steps=16).deletion_auc
    assert abs(in_order.mean() - random.mean()) > 4 * se
    again = faithfulness.deletion_insertion(model, x, flat, steps=16, seed=3)
    np.testing.assert_array_equal(again.deletion_auc, constant[3 * N:4 * N])  # seeded


def test_a_softmax_head_with_targets_gives_the_same_probabilities(case, curves):
    model, x = case
    w = (REGION / REGION.sum() * GAIN).reshape(-1, 1).astype(np.float32)
    softmax = linear_model(np.hstack([np.zeros_like(w), w]), "softmax", bias=0.0,
                           input_shape=(SIDE, SIDE, 1))
    softmax.layers[-1].set_weights([np.hstack([np.zeros_like(w), w]),
                                    np.array([0.0, -GAIN * CUT], np.float32)])  # p1 = sigmoid
    targets = np.array([1, 0, 1, 0])
    res = faithfulness.deletion_insertion(softmax, x, _maps(REGION), targets, steps=16,
                                          baseline=("zero", "mean"))
    expected = curves["region"].deletion_curve
    expected = np.where(targets[:, None] == 1, expected, 1 - expected)
    np.testing.assert_allclose(res.deletion_curve, expected, rtol=1e-4, atol=1e-6)
    sigmoid_0 = faithfulness.deletion_insertion(model, x, _maps(REGION), 0, steps=16,
                                                baseline=("zero", "mean"))  # 1 - p
    np.testing.assert_allclose(sigmoid_0.deletion_curve, 1 - curves["region"].deletion_curve,
                               rtol=1e-5)
    with pytest.raises(ValueError, match="needs targets"):
        faithfulness.deletion_insertion(softmax, x, _maps(REGION))


def test_channel_maps_baselines_and_batches(case, curves):
    model, x = case
    signed = -_maps(REGION)[..., None]  # (n, H, W, C): negative inside the region, and the
    # sum of |.| over the channels still ranks the region first
    res = faithfulness.deletion_insertion(model, x, signed, steps=16, baseline=("zero", "mean"),
                                          batch_size=5)  # 5 does not divide 4 x 17 copies
    np.testing.assert_allclose(res.deletion_curve, curves["region"].deletion_curve, rtol=1e-6)
    np.testing.assert_allclose(res.insertion_curve, curves["region"].insertion_curve, rtol=1e-6)
    one = faithfulness.deletion_insertion(model, x, _maps(REGION), steps=16, baseline=0.25)
    np.testing.assert_allclose(one.deletion_curve[:, -1], _p(0.25), rtol=1e-5)
    np.testing.assert_allclose(one.insertion_curve[:, 0], _p(0.25), rtol=1e-5)
    blur = faithfulness.deletion_insertion(model, x, _maps(REGION), steps=4)  # defaults: RISE's
    assert blur.settings["baseline"] == ("zero", "blur")
    np.testing.assert_allclose(blur.deletion_curve[:, -1], _p(0.0), rtol=1e-5)


def test_bad_inputs_are_explained(case):
    model, x = case
    maps = _maps(REGION)
    cases = [
        (dict(maps=maps[:, :8, :8]), r"expected maps of shape \(4, 16, 16\)"),
        (dict(maps=maps[:3]), r"expected maps of shape \(4, 16, 16\)"),
        (dict(maps=np.where(REGION, np.nan, 0.0)[None].repeat(N, 0)), "NaN"),
        (dict(maps=np.zeros((N, SIDE, SIDE, 3))), "same shape"),
        (dict(steps=0), "steps must be a positive integer"),
        (dict(baseline="black"), "must be \"zero\", \"mean\", \"blur\""),
        (dict(baseline=("zero", "mean", "blur")), "a pair"),
        (dict(baseline=np.zeros((8, 8, 1))), "one image"),
        (dict(targets=2), r"class indices in \[0, 1\]"),
        (dict(targets=[1, 0]), "2 entries for 4 images"),
    ]
    for kwargs, message in cases:
        args = {"maps": maps, "targets": None, **kwargs}
        m, t = args.pop("maps"), args.pop("targets")
        with pytest.raises(ValueError, match=message):
            faithfulness.deletion_insertion(model, x, m, t, **args)
    logits = linear_model(REGION.astype(np.float32) * 40, "linear", bias=0.0)
    with pytest.raises(ValueError, match="not probabilities"):
        faithfulness.deletion_insertion(logits, x, maps, steps=2)
    with pytest.raises(ValueError, match="increasing shares"):
        faithfulness.road(model, x, maps, fractions=(0.5, 1.0))
    with pytest.raises(ValueError, match="morf"):
        faithfulness.road(model, x, maps, order="up")


# --------------------------------------------------------------------------- ROAD
def test_linear_imputation_reproduces_a_linear_ramp_exactly():
    """ROAD fills a pixel with the weighted mean of its 8 neighbours; symmetric weights
    reproduce any linear function, so interior holes in a ramp are filled exactly."""
    rows, cols = np.mgrid[0:SIDE, 0:SIDE]
    ramp = np.stack([0.02 * rows + 0.01 * cols + 0.1, 0.03 * cols - 0.01 * rows + 0.5], -1)
    ramp = ramp[None].astype(np.float32)
    removed = np.zeros((1, SIDE, SIDE), bool)
    removed[0, 1:-1, 1:-1] = np.random.default_rng(0).random((SIDE - 2, SIDE - 2)) < 0.7
    exact = faithfulness.impute(ramp, removed, noise=0.0)
    np.testing.assert_allclose(exact, ramp, atol=1e-5)
    noisy = faithfulness.impute(ramp, removed, noise=0.01, seed=1)
    assert (noisy[~removed] == ramp[~removed]).all()  # known pixels are never touched
    assert 0.0085 < (noisy - ramp)[removed].std() < 0.0115  # ~270 draws of s.d. 0.01


def test_imputation_stays_within_the_known_values():
    """A weighted mean of neighbours obeys the maximum principle: no imputed value leaves the
    range of the known ones (a sign error in the system would break this at once)."""
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, (2, SIDE, SIDE, 1)).astype(np.float32)
    removed = rng.random((2, SIDE, SIDE)) < 0.8
    out = faithfulness.impute(x, removed, noise=0.0)
    for image, filled, gone in zip(x, out, removed):
        assert image[~gone].min() - 1e-6 <= filled[gone].min()
        assert filled[gone].max() <= image[~gone].max() + 1e-6
    with pytest.raises(ValueError, match="every pixel"):
        faithfulness.impute(x, np.ones((2, SIDE, SIDE), bool))


def test_road_morf_falls_faster_than_lerf_and_is_seeded(case):
    model, x = case
    morf = faithfulness.road(model, x, _maps(REGION), order="morf")
    lerf = faithfulness.road(model, x, _maps(REGION), order="lerf", batch_size=5)
    assert morf.curve.shape == lerf.curve.shape == (N, 9)
    assert (morf.curve < lerf.curve).all() and (morf.auc < lerf.auc - 0.5).all()
    # LeRF removes background only, up to 90 % of it: the model never notices
    np.testing.assert_allclose(lerf.curve, _p(x[:, REGION].mean(axis=(1, 2)))[:, None]
                               * np.ones(9), rtol=1e-5)
    again = faithfulness.road(model, x, _maps(REGION), order="morf", batch_size=1)
    np.testing.assert_allclose(again.curve, morf.curve, rtol=1e-6)
    other = faithfulness.road(model, x, _maps(REGION), order="morf", seed=1)
    assert not np.allclose(other.curve, morf.curve)  # other tie-breaks and noise


def test_road_gives_the_same_curves_with_any_number_of_threads(case, monkeypatch):
    model, x = case
    curves = []
    for workers in (1, 3):
        monkeypatch.setattr(faithfulness, "_WORKERS", workers)
        curves.append(faithfulness.road(model, x, faithfulness.random_maps(x), batch_size=4).curve)
    np.testing.assert_array_equal(curves[0], curves[1])


def test_summarise_puts_each_method_beside_random(case, curves):
    model, x = case
    road = faithfulness.road(model, x, _maps(REGION), fractions=(0.2, 0.5))
    road_random = faithfulness.road(model, x, faithfulness.random_maps(x), fractions=(0.2, 0.5))
    table = faithfulness.summarise({"region": [curves["region"], road],
                                    "elsewhere": curves["elsewhere"]},
                                   random=[curves["random"], road_random], n_boot=200)
    assert list(table.columns) == list(faithfulness.COLUMNS)
    assert table[["method", "measure"]].values.tolist() == [
        ["region", "deletion"], ["region", "insertion"], ["region", "road_morf"],
        ["elsewhere", "deletion"], ["elsewhere", "insertion"],
        ["random", "deletion"], ["random", "insertion"], ["random", "road_morf"]]
    row = table.set_index(["method", "measure"])
    gap = curves["region"].deletion_auc - curves["random"].deletion_auc
    assert row.loc[("region", "deletion"), "minus random"] == pytest.approx(gap.mean())
    assert row.loc[("region", "deletion"), "minus random CI high"] < 0  # clearly below random
    assert row.loc[("elsewhere", "deletion"), "minus random CI low"] > 0
    assert row.loc[("region", "deletion"), "better"] == "lower"
    assert np.isnan(row.loc[("random", "insertion"), "minus random"])
    assert (table["CI low"] <= table["AUC"]).all() and (table["AUC"] <= table["CI high"]).all()
    with pytest.raises(ValueError, match="same images"):
        faithfulness.summarise({"region": curves["region"]},
                               random=faithfulness.deletion_insertion(model, x[:2], _maps(REGION)[:2]))
