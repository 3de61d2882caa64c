"""Tests for the phantom's acquisition-site shortcut (``site_strength``; no TensorFlow)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from course_utils import data, shortcuts
from course_utils.phantom import (
    MASK_KEYS,
    SITE_STYLES,
    PhantomParams,
    PhantomSet,
    SiteStyle,
    make_phantom_cxr,
    other_site,
    remove_lesions,
    remove_marker,
    rerender,
)

# The phantom as it was before sites existed (main at 0dceac3), make_phantom_cxr(20, 128, seed=3).
# Its exact bytes depend on the CPU's SIMD kernels for exp/pow/matmul (a CI machine with the same
# numpy/scipy gave a different SHA-256), so the fingerprint is a tolerance check that holds on any
# machine: 8,192 seeded pixels (to 1e-5) and 8,192 seeded mask positions per structure (a boundary
# pixel may flip), recorded on x86_64 with numpy 2.4.6 / scipy 1.17.1 from the bytes whose SHA-256
# was 024c825c...7df5 (images) and f5b4a7de...5cca (masks).
_OLD_FINGERPRINT = Path(__file__).parent / "data" / "phantom_seed3_before_sites.npz"
_OLD_LABELS = [0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0]
_OLD_MEANS = [0.388401, 0.444521, 0.36381, 0.520484, 0.325539, 0.574396, 0.445322, 0.45814,
              0.496002, 0.457594, 0.412209, 0.465524, 0.512388, 0.344165, 0.507601, 0.50403,
              0.464555, 0.48906, 0.443195, 0.537458]
_OLD_MASK_PIXELS = {"lungs": 62446, "lesions": 3741, "heart": 16090, "spine": 18945,
                    "abdomen": 92668, "marker": 819, "body": 257949}
_OLD_REPR = ("PhantomParams(n=20, image_size=128, seed=3, covid_fraction=0.26187717265353416, "
             "marker_strength=1.0, abdomen_strength=1.0, flip_shortcuts=False, lesion_intensity=0.4, "
             "subtle_fraction=0.35, benign_blob_rate=0.35, marker_rate_normal=0.8, "
             "marker_rate_covid=0.1, abdomen_gain_delta=0.1, heart_scale=1.0, render_marker=True, "
             "render_lesions=True, abdomen_gain_override=None)")

def assert_is_the_phantom_from_before(ps: PhantomSet) -> None:
    """``ps`` (20 images, 128 px, seed 3) matches the recorded pre-sites phantom on any CPU."""
    assert ps.labels.tolist() == _OLD_LABELS
    np.testing.assert_allclose(ps.images.mean(axis=(1, 2, 3)), _OLD_MEANS, atol=2e-6)
    for key, pixels in _OLD_MASK_PIXELS.items():
        assert abs(int(ps.masks[key].sum()) - pixels) <= 20, key
    with np.load(_OLD_FINGERPRINT) as old:
        np.testing.assert_allclose(ps.images.reshape(-1)[old["pixel_index"]], old["pixels"],
                                   atol=1e-5, rtol=0)
        for key in MASK_KEYS:
            flips = int((ps.masks[key].reshape(-1)[old["mask_index"]] != old[f"mask_{key}"]).sum())
            assert flips <= 4, f"{key}: {flips} of {old['mask_index'].size} sampled mask pixels differ"


N_SITES = 900  # enough for per-site prevalences and a detector; ~2-4 s to generate at 128 px


@pytest.fixture(scope="module")
def sites() -> PhantomSet:
    """Two sites at strength 1, no marker or abdomen shortcut: the site is the only shortcut."""
    return make_phantom_cxr(N_SITES, 128, seed=21, site_strength=1.0, marker_strength=0.0,
                            abdomen_strength=0.0)


@pytest.fixture(scope="module")
def small_sites() -> PhantomSet:
    return make_phantom_cxr(96, 128, seed=8, site_strength=1.0)


def _detector_auc(images: np.ndarray, target: np.ndarray) -> float:
    """Test ROC AUC of a logistic regression on film statistics outside the lung box (2/3 train)."""
    feats = shortcuts.image_statistics(images, exclude=data.lung_proxy(images.shape[1])).to_numpy()
    train = np.arange(len(target)) % 3 != 0
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    clf.fit(feats[train], target[train])
    return float(roc_auc_score(target[~train], clf.predict_proba(feats[~train])[:, 1]))


# --------------------------------------------------------------------------- strength 0 = before
def test_strength_zero_reproduces_the_phantom_from_before_sites():
    ps = make_phantom_cxr(20, 128, seed=3)
    assert_is_the_phantom_from_before(ps)
    assert (ps.site == 0).all() and (ps.border_px == 0).all()


def test_site_knobs_change_nothing_at_strength_zero():
    base = make_phantom_cxr(40, 128, seed=3)
    other = make_phantom_cxr(40, 128, seed=3, site_strength=0.0, site_prevalence=(0.2, 0.3),
                             site_styles=SITE_STYLES[::-1], flip_site=True)
    assert np.array_equal(base.images, other.images)
    assert np.array_equal(base.masks.bits, other.masks.bits)
    assert np.array_equal(base.labels, other.labels) and (other.site == 0).all()


def test_params_repr_and_fingerprint_unchanged_without_sites():
    """Trained models are cached under a fingerprint of repr(params): site-free sets keep theirs."""
    p = PhantomParams(n=20, seed=3)
    assert repr(p) == _OLD_REPR == repr(make_phantom_cxr(20, 128, seed=3).params)
    with_sites = dataclasses.replace(p, site_strength=1.0)
    assert "site_strength=1.0" in repr(with_sites)
    assert repr(dataclasses.replace(with_sites, flip_site=True)) != repr(with_sites)
    assert repr(dataclasses.replace(with_sites, site_prevalence=(0.2, 0.5))) != repr(with_sites)
    fp = {data._fingerprint("phantom", q) for q in (p, with_sites)}
    assert len(fp) == 2


def test_sites_leave_everything_but_the_processing_unchanged(small_sites):
    plain = rerender(small_sites, site_strength=0.0)
    assert np.array_equal(plain.images, make_phantom_cxr(96, 128, seed=8).images)
    assert np.array_equal(small_sites.masks.bits, plain.masks.bits)
    for name in ("labels", "has_marker", "abdomen_gain", "lesion_extent", "subtle", "has_benign_blob"):
        np.testing.assert_array_equal(getattr(small_sites, name), getattr(plain, name), err_msg=name)
    assert not np.array_equal(small_sites.images, plain.images)


# --------------------------------------------------------------------------- what the sites look like
def test_sites_differ_in_global_statistics(sites):
    x = sites.images[..., 0]
    a, b = sites.site == 0, sites.site == 1
    frame = np.zeros(x.shape[1:], bool)
    frame[:2], frame[-2:], frame[:, :2], frame[:, -2:] = True, True, True, True
    edge = x[:, frame].mean(axis=1)
    assert edge[b].mean() - edge[a].mean() > 0.6               # bright collimation vs black shutter
    assert edge[b].min() > edge[a].max()
    lungs = sites.masks["lungs"]
    lung_mean = (x * lungs).sum(axis=(1, 2)) / lungs.sum(axis=(1, 2))
    assert lung_mean[b].mean() - lung_mean[a].mean() > 0.1     # tone curve: B brighter, flatter
    lap = np.array([np.abs(np.diff(im[20:-20, 20:-20], 2, axis=0)).mean() for im in x])
    assert lap[a].mean() > 1.5 * lap[b].mean()                 # A sharp and fine-grained, B soft
    hist = lambda m: np.histogram(x[m][:, 10:-10, 10:-10], bins=10, range=(0, 1))[0] / m.sum()  # noqa: E731
    assert 0.5 * np.abs(hist(a) - hist(b)).sum() / (118 * 118) > 0.2  # total variation of histograms


def test_images_stay_float32_in_unit_range_and_frames_clear_the_lungs(sites):
    assert sites.images.dtype == np.float32
    assert sites.images.min() >= 0.0 and sites.images.max() <= 1.0
    S = sites.images.shape[1]
    bp = sites.border_px
    assert bp.shape == (len(sites), 4) and (bp > 0).all() and bp.max() <= 0.07 * S
    rows = np.arange(S)
    lungs = sites.masks["lungs"]
    top = np.where(lungs.any(axis=2), rows, S).min(axis=1)
    bottom = S - 1 - np.where(lungs.any(axis=2), rows, -1).max(axis=1)
    left = np.where(lungs.any(axis=1), rows, S).min(axis=1)
    right = S - 1 - np.where(lungs.any(axis=1), rows, -1).max(axis=1)
    assert (np.stack([top, bottom, left, right], 1) >= bp).all(), "a frame covers lung pixels"


def test_marker_is_drawn_on_top_of_the_site_processing(small_sites):
    m = small_sites.masks["marker"]
    assert m.any() and small_sites.images[..., 0][m].min() >= 0.9
    cf = remove_marker(small_sites)
    assert not ((small_sites.images != cf.images)[..., 0] & ~m).any()


def test_prevalence_per_site_and_overall_fraction(sites):
    y, s = sites.labels, sites.site
    assert y.sum() == round(N_SITES * sites.params.covid_fraction)
    assert y[s == 0].mean() == pytest.approx(0.1, abs=0.01)
    assert y[s == 1].mean() == pytest.approx(0.6, abs=0.01)
    other = make_phantom_cxr(800, 64, seed=2, covid_fraction=0.5, site_strength=0.5,
                             site_prevalence=(0.7, 0.2))
    assert other.labels[other.site == 0].mean() == pytest.approx(0.7, abs=0.01)
    assert other.labels[other.site == 1].mean() == pytest.approx(0.2, abs=0.01)
    even = make_phantom_cxr(400, 64, seed=2, covid_fraction=0.25, site_strength=1.0,
                            site_prevalence=(0.25, 0.25))
    assert even.site.mean() == pytest.approx(0.5, abs=0.01)
    assert even.labels[even.site == 1].mean() == pytest.approx(0.25, abs=0.02)


# --------------------------------------------------------------------------- the exact counterfactual
def test_flip_site_changes_only_the_processing(small_sites):
    fl = rerender(small_sites, flip_site=True)
    assert np.array_equal(fl.site, 1 - small_sites.site)
    assert np.array_equal(fl.masks.bits, small_sites.masks.bits)
    for name in ("labels", "has_marker", "abdomen_gain", "lesion_extent", "subtle", "has_benign_blob"):
        np.testing.assert_array_equal(getattr(fl, name), getattr(small_sites, name), err_msg=name)
    changed = (fl.images != small_sites.images).mean(axis=(1, 2, 3))
    assert (changed > 0.5).all()
    # flipping back (and toggling twice) gives the very same images
    assert np.array_equal(rerender(fl, flip_site=False).images, small_sites.images)
    assert np.array_equal(other_site(other_site(small_sites)).images, small_sites.images)
    # a row subset re-renders exactly those rows
    rows = np.array([95, 0, 33, 33])
    part = other_site(small_sites, rows)
    np.testing.assert_array_equal(part.images, fl.images[rows])
    np.testing.assert_array_equal(part.site, fl.site[rows])
    np.testing.assert_array_equal(part.border_px, fl.border_px[rows])


def test_flip_site_makes_site_b_look_like_site_b(small_sites):
    """A patient from site A re-rendered at site B has B's frame (and vice versa)."""
    fl = other_site(small_sites)
    for ps in (small_sites, fl):
        corner = ps.images[:, 0, 0, 0]
        assert (corner[ps.site == 1] > 0.6).all() and (corner[ps.site == 0] < 0.1).all()


def test_lesion_removal_stays_local_with_sites(small_sites):
    """With sites the sharpness filter spreads a change by at most 2 px (at 128 px)."""
    from scipy import ndimage

    cf = remove_lesions(small_sites)
    les = small_sites.masks["lesions"]
    near = ndimage.binary_dilation(les, np.ones((1, 5, 5), bool))
    diff = (cf.images != small_sites.images)[..., 0]
    assert les.any() and diff[les].mean() > 0.5 and not (diff & ~near).any()


def test_course_data_passes_the_site_knobs_and_fingerprints_them():
    plain = data.load_course_cxr(n=60, source="phantom", marker_strength=0.0)
    two = data.load_course_cxr(n=60, source="phantom", marker_strength=0.0, site_strength=1.0)
    assert two.phantom_set.params.site_strength == 1.0 and set(two.phantom_set.site) == {0, 1}
    assert np.array_equal(plain.labels, two.labels) and plain.fingerprint != two.fingerprint
    assert np.array_equal(plain.train_idx, two.train_idx)


def test_other_site_needs_sites():
    with pytest.raises(ValueError, match="no sites"):
        other_site(make_phantom_cxr(4, 64, seed=0))


# --------------------------------------------------------------------------- the DeGrave test
def test_film_statistics_predict_the_site_and_through_it_the_label(sites):
    assert _detector_auc(sites.images, sites.site) > 0.95
    # prevalence 0.1 vs 0.6: knowing the site alone gives a label AUC of about 0.78
    assert 0.65 < _detector_auc(sites.images, sites.labels) < 0.92


def test_film_statistics_see_no_site_at_strength_zero(sites):
    plain = rerender(sites, site_strength=0.0)
    assert (plain.site == 0).all()
    assert 0.38 < _detector_auc(plain.images, sites.site) < 0.62
    assert 0.38 < _detector_auc(plain.images, plain.labels) < 0.65


# --------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("kwargs, match", [
    ({"site_strength": 1.5}, "site_strength"),
    ({"site_strength": -0.1}, "site_strength"),
    ({"site_prevalence": (0.1,)}, "site_prevalence"),
    ({"site_prevalence": (0.1, 1.2)}, r"site_prevalence\[1\]"),
    ({"site_strength": 1.0, "covid_fraction": 0.8}, "between the site prevalences"),
    ({"site_styles": (SiteStyle(),)}, "site_styles"),
    ({"site_styles": (SiteStyle(border=0.2), SiteStyle())}, r"site_styles\[0\].border"),
    ({"site_styles": (SiteStyle(), SiteStyle(gamma=3.0))}, r"site_styles\[1\].gamma"),
])
def test_bad_site_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_phantom_cxr(4, 64, **kwargs)


def test_mask_keys_unchanged():
    assert MASK_KEYS == ("lungs", "lesions", "heart", "spine", "abdomen", "marker", "body")
