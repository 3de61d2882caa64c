"""Tests for the synthetic phantom chest X-ray generator (no network, no TensorFlow)."""
from __future__ import annotations

import numpy as np
import pytest

from course_utils.phantom import (
    COVID_FRACTION,
    MASK_KEYS,
    PhantomSet,
    erase_marker,
    make_phantom_cxr,
    remove_lesions,
    remove_marker,
    rerender,
    set_abdomen_brightness,
)

N_BIG = 3000  # enough for class-rate comparisons, ~2-3 s to generate


@pytest.fixture(scope="module")
def big() -> PhantomSet:
    return make_phantom_cxr(N_BIG, 128, seed=11)


@pytest.fixture(scope="module")
def small() -> PhantomSet:
    return make_phantom_cxr(160, 128, seed=5)


def _rates(ps: PhantomSet) -> tuple[float, float]:
    """Marker rate among normals, among COVID."""
    return ps.has_marker[ps.labels == 0].mean(), ps.has_marker[ps.labels == 1].mean()


# --------------------------------------------------------------------------- determinism, shapes
def test_same_seed_is_bit_identical_and_other_seed_differs():
    a = make_phantom_cxr(40, 128, seed=3)
    b = make_phantom_cxr(40, 128, seed=3)
    c = make_phantom_cxr(40, 128, seed=4)
    assert np.array_equal(a.images, b.images)
    assert np.array_equal(a.labels, b.labels)
    for key in MASK_KEYS:
        assert np.array_equal(a.masks[key], b.masks[key]), key
    assert np.array_equal(a.abdomen_gain, b.abdomen_gain)
    assert not np.array_equal(a.images, c.images)


@pytest.mark.parametrize("site_strength", [0.0, 1.0])
def test_threads_do_not_change_a_pixel(monkeypatch, site_strength):
    """Chunks render in parallel threads; any number of them gives the same set, bit for bit."""
    from course_utils import phantom

    sets = []
    for workers in (1, 3):
        monkeypatch.setattr(phantom, "_WORKERS", workers)
        sets.append(make_phantom_cxr(100, 64, seed=5, site_strength=site_strength))  # 4 chunks
    a, b = sets
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.masks.bits, b.masks.bits) and np.array_equal(a.border_px, b.border_px)
    subset = phantom.rerender(a, np.array([1, 40, 99]))  # rows of three chunks, threads too
    assert np.array_equal(subset.images, a.images[[1, 40, 99]])


@pytest.mark.parametrize("site_strength", [0.0, 1.0])
def test_block_size_does_not_change_a_pixel(monkeypatch, site_strength):
    """Rows are composed in blocks of a few images (temporaries that stay in memory); any block
    size gives the same set, and the per-image facts counted per block match the masks."""
    from course_utils import phantom

    sets = []
    for block_bytes in (phantom._BLOCK_BYTES, 3 * 4 * 64 * 64, 1):  # the default, 3 images, 1 image
        monkeypatch.setattr(phantom, "_BLOCK_BYTES", block_bytes)
        sets.append(make_phantom_cxr(70, 64, seed=9, site_strength=site_strength))
    a = sets[0]
    for b in sets[1:]:
        assert np.array_equal(a.images, b.images) and np.array_equal(a.masks.bits, b.masks.bits)
        assert np.array_equal(a.border_px, b.border_px) and np.array_equal(a.lesion_extent, b.lesion_extent)
    lungs, lesions, marker = (a.masks[k].reshape(len(a.labels), -1) for k in ("lungs", "lesions", "marker"))
    assert np.array_equal(a.has_marker, marker.any(axis=1))
    expected = lesions.sum(axis=1) / np.maximum(lungs.sum(axis=1), 1)
    np.testing.assert_allclose(a.lesion_extent, expected, rtol=1e-6)
    assert a.lesion_extent[a.labels == 1].max() > 0


@pytest.mark.parametrize("size", [128, 224])
def test_shapes_dtypes_and_ranges(size):
    n = 12
    ps = make_phantom_cxr(n, size, seed=1)
    assert ps.images.shape == (n, size, size, 1) and ps.images.dtype == np.float32
    assert ps.images.min() >= 0.0 and ps.images.max() <= 1.0
    assert ps.images.std() > 0.1  # not blank
    assert ps.labels.shape == (n,) and np.issubdtype(ps.labels.dtype, np.integer)
    assert set(np.unique(ps.labels)) <= {0, 1}
    assert tuple(ps.masks) == MASK_KEYS
    for key, m in ps.masks.items():
        assert m.shape == (n, size, size) and m.dtype == bool, key
    for arr in (ps.has_marker, ps.abdomen_gain, ps.lesion_extent, ps.subtle, ps.has_benign_blob):
        assert arr.shape == (n,)
    assert ps.has_marker.dtype == bool and ps.abdomen_gain.dtype == np.float32
    assert ((ps.lesion_extent >= 0) & (ps.lesion_extent <= 1)).all()
    assert ps.params.image_size == size and ps.params.n == n and len(ps) == n


@pytest.mark.parametrize("n, frac, expected", [(1000, COVID_FRACTION, 262), (37, 0.5, 18), (5, 0.5, 2),
                                               (10, 0.0, 0), (10, 1.0, 10), (7, 0.3, 2)])
def test_class_count_is_exact(n, frac, expected):
    ps = make_phantom_cxr(n, 64, seed=2, covid_fraction=frac)
    assert ps.labels.sum() == expected == round(n * frac)


def test_default_fraction_matches_database(small):
    assert small.params.covid_fraction == pytest.approx(3616 / 13808)
    assert small.labels.sum() == round(160 * 3616 / 13808)


# --------------------------------------------------------------------------- masks and anatomy
def test_mask_containment(big):
    m = big.masks
    assert not (m["lesions"] & ~m["lungs"]).any(), "lesions must lie inside the lungs"
    assert not (m["lungs"] & ~m["body"]).any(), "lungs must lie inside the body"
    assert not (m["heart"] & m["lungs"]).any(), "heart and lungs must not overlap"
    area = {k: v.mean(axis=(1, 2)) for k, v in m.items()}
    assert (area["lungs"] > 0.12).all() and (area["body"] > 0.5).all()
    assert (area["heart"] > 0.01).all() and (area["spine"] > 0.02).all() and (area["abdomen"] > 0.05).all()


def test_heart_is_on_image_right(big):
    w = big.images.shape[2]
    cols = np.arange(w)[None, None, :]
    heart = big.masks["heart"]
    centre_x = (heart * cols).sum(axis=(1, 2)) / heart.sum(axis=(1, 2))
    assert centre_x.mean() > w / 2 + 0.03 * w
    assert (centre_x > w / 2).mean() > 0.99


def test_lesions_only_in_covid_and_lower_peripheral(big):
    les, lungs = big.masks["lesions"], big.masks["lungs"]
    normal, covid = big.labels == 0, big.labels == 1
    assert not les[normal].any() and (big.lesion_extent[normal] == 0).all()
    assert les[covid & ~big.subtle].any(axis=(1, 2)).mean() > 0.98
    rows = np.arange(les.shape[1])[None, :, None]
    cols = np.abs(np.arange(les.shape[2]) - (les.shape[2] - 1) / 2)[None, None, :]
    c = covid & les.any(axis=(1, 2))
    les_y = (les[c] * rows).sum() / les[c].sum()
    lung_y = (lungs[c] * rows).sum() / lungs[c].sum()
    les_x = (les[c] * cols).sum() / les[c].sum()
    lung_x = (lungs[c] * cols).sum() / lungs[c].sum()
    assert les_y > lung_y + 3, "opacities should be lower-zone predominant"
    assert les_x > lung_x + 3, "opacities should be peripheral"
    half = les.shape[2] // 2
    severe = covid & ~big.subtle
    bilateral = les[severe][:, :, :half].any(axis=(1, 2)) & les[severe][:, :, half:].any(axis=(1, 2))
    assert bilateral.mean() > 0.8


def test_marker_mask_matches_flag_and_is_bright(big):
    marker = big.masks["marker"]
    assert np.array_equal(marker.any(axis=(1, 2)), big.has_marker)
    assert 0.2 < big.has_marker.mean() < 0.9
    img = big.images[..., 0]
    assert img[marker].min() >= 0.85
    # an "L": more pixels in the bottom row of its box than a thin vertical bar alone
    i = int(np.flatnonzero(big.has_marker)[0])
    ys, xs = np.nonzero(marker[i])
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert height > width > 3
    assert marker[i, ys.max()].sum() == width and marker[i, ys.min()].sum() < width


def test_intensity_ordering(big):
    img = big.images[..., 0]
    m = big.masks
    lungs = np.array([img[i][m["lungs"][i]].mean() for i in range(200)])
    spine = np.array([img[i][m["spine"][i]].mean() for i in range(200)])
    heart = np.array([img[i][m["heart"][i]].mean() for i in range(200)])
    outside = np.array([img[i][~m["body"][i] & ~m["marker"][i]].mean() for i in range(200)])
    assert (lungs < spine).all() and (lungs < heart).all()
    assert (outside < lungs).mean() > 0.95
    assert spine.mean() - lungs.mean() > 0.2


# --------------------------------------------------------------------------- shortcuts
def test_marker_strength_zero_is_class_independent():
    ps = make_phantom_cxr(N_BIG, 64, seed=12, marker_strength=0.0)
    rn, rc = _rates(ps)
    assert abs(rn - rc) < 0.06
    assert 0.3 < rn < 0.7


def test_default_marker_mostly_in_normals_and_flip_reverses(big):
    rn, rc = _rates(big)
    assert rn - rc > 0.5
    flipped = make_phantom_cxr(N_BIG, 64, seed=11, flip_shortcuts=True)
    frn, frc = _rates(flipped)
    assert frc - frn > 0.5
    assert np.array_equal(flipped.labels, big.labels)


def _abdomen_mean(ps: PhantomSet) -> np.ndarray:
    m = ps.masks["abdomen"]
    return (ps.images[..., 0] * m).sum(axis=(1, 2)) / m.sum(axis=(1, 2))


def test_abdomen_brightness_depends_on_class_by_default(big):
    g, y = big.abdomen_gain, big.labels
    assert g[y == 1].mean() - g[y == 0].mean() > 0.05
    pix = _abdomen_mean(big)
    assert pix[y == 1].mean() - pix[y == 0].mean() > 0.02


def test_abdomen_strength_zero_and_flip():
    ps = make_phantom_cxr(N_BIG, 64, seed=13, abdomen_strength=0.0)
    g, y = ps.abdomen_gain, ps.labels
    assert abs(g[y == 1].mean() - g[y == 0].mean()) < 0.01
    pix = _abdomen_mean(ps)
    assert abs(pix[y == 1].mean() - pix[y == 0].mean()) < 0.01
    fl = make_phantom_cxr(N_BIG, 64, seed=13, flip_shortcuts=True)
    assert fl.abdomen_gain[y == 0].mean() - fl.abdomen_gain[y == 1].mean() > 0.05


def test_flip_changes_only_shortcut_regions(small):
    fl = rerender(small, flip_shortcuts=True)
    changed = np.any(small.images[..., 0] != fl.images[..., 0], axis=0)
    allowed = np.any(small.masks["marker"] | fl.masks["marker"] | small.masks["abdomen"], axis=0)
    assert not (changed & ~allowed).any()
    assert np.array_equal(small.masks["lesions"], fl.masks["lesions"])


# --------------------------------------------------------------------------- counterfactuals
def test_remove_marker_changes_only_marker_pixels(small):
    cf = remove_marker(small)
    mk = small.masks["marker"]
    diff = small.images[..., 0] != cf.images[..., 0]
    assert mk.any() and not (diff & ~mk).any()
    assert diff[mk].mean() > 0.99
    assert not cf.has_marker.any() and not cf.masks["marker"].any()
    assert cf.images[..., 0][mk].mean() < small.images[..., 0][mk].mean() - 0.3
    assert np.array_equal(cf.labels, small.labels)


def test_remove_lesions_changes_only_lesion_pixels(small):
    cf = remove_lesions(small)
    les = small.masks["lesions"]
    before, after = small.images[..., 0], cf.images[..., 0]
    assert les.any() and not (before != after)[~les].any()
    assert after[les].mean() < before[les].mean()
    assert not cf.masks["lesions"].any() and (cf.lesion_extent == 0).all()
    assert np.array_equal(cf.labels, small.labels)


def test_set_abdomen_brightness_changes_only_abdomen(small):
    bright = set_abdomen_brightness(small, 1.3)
    dark = set_abdomen_brightness(small, 0.8)
    ab = small.masks["abdomen"]
    assert not (bright.images != small.images)[..., 0][~ab].any()
    assert (bright.abdomen_gain == np.float32(1.3)).all()
    assert (_abdomen_mean(bright) > _abdomen_mean(dark) + 0.05).all()


def _same_rows(part: PhantomSet, whole: PhantomSet, rows: np.ndarray) -> None:
    np.testing.assert_array_equal(part.images, whole.images[rows])
    for key in MASK_KEYS:
        np.testing.assert_array_equal(part.masks[key], whole.masks[key][rows])
    for name in ("labels", "has_marker", "marker_corner", "abdomen_gain", "lesion_extent",
                 "subtle", "has_benign_blob"):
        np.testing.assert_array_equal(getattr(part, name), getattr(whole, name)[rows], err_msg=name)


def test_rendering_only_some_rows_gives_exactly_those_rows(small):
    rows = np.array([150, 3, 40, 41, 97, 3])  # unsorted, repeated, across chunks
    part = rerender(small, rows)
    assert len(part) == len(rows) and np.array_equal(part.indices, rows) and small.indices is None
    _same_rows(part, small, rows)
    _same_rows(rerender(small, rows, flip_shortcuts=True), rerender(small, flip_shortcuts=True), rows)
    _same_rows(remove_marker(small, rows), remove_marker(small), rows)
    _same_rows(remove_lesions(small, rows), remove_lesions(small), rows)
    _same_rows(set_abdomen_brightness(small, 1.2, rows), set_abdomen_brightness(small, 1.2), rows)
    # a part of a part refers to rows of the part; re-rendering a part keeps its rows
    _same_rows(rerender(part, [1, 0]), small, rows[[1, 0]])
    _same_rows(remove_marker(part), remove_marker(small), rows)
    assert len(rerender(small, np.array([], dtype=int))) == 0


@pytest.mark.parametrize("bad", [[-1], [160], [[1, 2]], [0.5]])
def test_rendering_rows_outside_the_set_is_refused(small, bad):
    with pytest.raises(ValueError, match="indices"):
        rerender(small, np.array(bad))


def test_erase_marker_inpaints_with_background(small):
    mk = small.masks["marker"]
    out = erase_marker(small.images, mk)
    assert out.shape == small.images.shape and out.dtype == np.float32
    assert np.array_equal(out[..., 0][~mk], small.images[..., 0][~mk])
    truth = remove_marker(small).images[..., 0][mk]
    assert np.abs(out[..., 0][mk] - truth).mean() < 0.1
    assert out[..., 0][mk].mean() < small.images[..., 0][mk].mean() - 0.3
    with pytest.raises(ValueError, match="shape"):
        erase_marker(small.images, mk[:, :10])


def test_enlarged_heart_increases_heart_area():
    base = make_phantom_cxr(100, 128, seed=7)
    big_heart = make_phantom_cxr(100, 128, seed=7, heart_scale=1.3)
    a0 = base.masks["heart"].sum(axis=(1, 2))
    a1 = big_heart.masks["heart"].sum(axis=(1, 2))
    assert (a1 > a0).all() and a1.mean() > 1.3 * a0.mean()
    assert np.array_equal(base.labels, big_heart.labels)


# --------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "n must be a positive integer"),
        ({"n": -5}, "n must be a positive integer"),
        ({"n": 2.5}, "n must be a positive integer"),
        ({"image_size": 32}, "image_size must be an integer >= 64"),
        ({"covid_fraction": 1.5}, "covid_fraction must be a number in \\[0, 1\\]"),
        ({"covid_fraction": -0.1}, "covid_fraction"),
        ({"marker_strength": 1.2}, "marker_strength"),
        ({"abdomen_strength": -0.5}, "abdomen_strength"),
        ({"lesion_intensity": 2.0}, "lesion_intensity"),
        ({"heart_scale": 5.0}, "heart_scale"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    args = {"n": 4, "image_size": 64, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_phantom_cxr(**args)


def test_masks_are_packed_one_byte_per_pixel_and_read_only(small):
    m = small.masks
    assert list(m) == list(MASK_KEYS) and len(m) == len(MASK_KEYS)
    assert m.bits.dtype == np.uint8 and m.bits.nbytes == small.images[..., 0].size
    lungs = m["lungs"]
    assert lungs.dtype == bool and lungs.shape == small.images.shape[:3] and lungs.any()
    lungs[:] = False  # a lookup is a fresh array: the set itself is unchanged
    assert m["lungs"].any()
    with pytest.raises(KeyError):
        m["liver"]
    with pytest.raises(TypeError):
        m["lungs"] = lungs  # no item assignment
