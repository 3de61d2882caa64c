"""PSC (Zhang et al. 2024) as the authors' code computes it, on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from course_utils import metrics, psc


def test_prediction_and_saliency_divergence():
    np.testing.assert_allclose(psc.prediction_divergence([0.3, 1.0, 0.5], [0.3, 0.0, 0.9]),
                               [0.0, np.log(2), metrics.jensen_shannon([0.5, 0.5], [0.9, 0.1])])
    a = np.random.default_rng(1).random((3, 6, 6))
    b = a.copy()
    b[1] = np.roll(a[1], 3, axis=0)
    b[2] = 0.0  # all-zero map: no distribution
    d = psc.saliency_divergence(a, 7 * b)  # scale does not matter: maps are divided by their sum
    assert d[0] == pytest.approx(0.0, abs=1e-12) and d[1] > 0.01 and np.isnan(d[2])
    disjoint = np.zeros((1, 4, 4, 3))
    disjoint2 = disjoint.copy()
    disjoint[0, :2, :, 0] = 1.0
    disjoint2[0, 2:, :, 2] = -1.0  # |map|, summed over channels
    assert psc.saliency_divergence(disjoint, disjoint2)[0] == pytest.approx(np.log(2))
    split, moved = np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2))
    split[0, 0, 0], split[0, 0, 1] = [1.0, 1.0], [2.0, 0.0]  # channels are summed, not maxed:
    moved[0, 0, 0], moved[0, 0, 1] = [2.0, 0.0], [1.0, -1.0]  # both pixels hold mass 2 in both maps
    assert psc.saliency_divergence(split, moved)[0] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        psc.saliency_divergence(a, a[:, :5])


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
    result = psc.psc(pb, pa, mb, ma, n_boot=200)
    np.testing.assert_allclose(result.d_sal, result.d_pred, rtol=1e-9, atol=1e-15)
    assert result.r == pytest.approx(1.0) and result.ci_low == pytest.approx(1.0)
    assert str(result).startswith("PSC = 1.00 (95% CI 1.00\u20131.00, n = 50)")
    result4 = psc.psc(pb, pa, *_coupled_case(50, channels=3)[2:], n_boot=50)  # (n, H, W, C)
    assert result4.r == pytest.approx(1.0)


def test_psc_equals_pearson_of_the_divergences_with_a_sane_ci():
    rng = np.random.default_rng(2)
    n = 200
    pb, pa = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    mb, ma = rng.random((n, 8, 8)), rng.random((n, 8, 8))
    result = psc.psc(pb, pa, mb, ma, n_boot=300, seed=1)
    d_pred, d_sal = psc.prediction_divergence(pb, pa), psc.saliency_divergence(mb, ma)
    expected = stats.pearsonr(d_pred, d_sal)
    assert result.r == pytest.approx(expected.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-8)
    assert -1 <= result.ci_low <= result.r <= result.ci_high <= 1
    assert result.n == n and result.d_pred.shape == result.d_sal.shape == (n,)
    assert result.n_boot_valid == 300 and result.n_filled == 0
    again = psc.psc(pb, pa, mb, ma, n_boot=300, seed=1)
    assert (again.r, again.ci_low, again.ci_high) == (result.r, result.ci_low, result.ci_high)
    other = psc.psc(pb, pa, mb, ma, n_boot=300, seed=2)
    assert (other.ci_low, other.ci_high) != (result.ci_low, result.ci_high)


def test_psc_of_shuffled_pairs_is_near_zero():
    pb, pa, mb, ma = _coupled_case(2000, seed=3)
    perm = np.random.default_rng(4).permutation(2000)
    result = psc.psc(pb, pa, mb[perm], ma[perm], n_boot=200)  # maps now belong to other images
    assert abs(result.r) < 0.15
    assert result.ci_low < 0 < result.ci_high


def test_psc_replaces_nan_saliency_divergences_by_their_mean():
    pb, pa, mb, ma = _coupled_case(20)
    ma[4] = 0.0  # an all-zero map after the perturbation
    result = psc.psc(pb, pa, mb, ma, n_boot=50)
    d_sal = psc.saliency_divergence(mb, ma)
    assert np.isnan(d_sal[4]) and result.n_filled == 1
    assert result.d_sal[4] == pytest.approx(np.nanmean(d_sal))
    assert result.r == pytest.approx(stats.pearsonr(result.d_pred, result.d_sal).statistic)


def test_psc_constant_sides_raise():
    pb, pa, mb, ma = _coupled_case(10)
    with pytest.raises(ValueError, match="D_pred is constant"):
        psc.psc(pb, pb, mb, mb)  # nothing changed
    with pytest.raises(ValueError, match="D_sal is constant"):
        psc.psc(pb, pa, mb, mb)  # the prediction moved, the maps did not
    with pytest.raises(ValueError, match="all-zero"):
        psc.psc(pb, pa, mb, np.zeros_like(ma))


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
            psc.psc(*args, n_boot=10)
    with pytest.raises(ValueError, match="n_boot"):
        psc.psc(pb, pa, mb, ma, n_boot=0)
    assert psc.psc(pb[:, None], pa[:, None], mb, ma, n_boot=10).n == 10  # (n, 1) model output
