"""Tests for course_utils.shortcuts and the real-data additions of cxr/data (sources, patients,
adaptive split, lung-masked and lungs-hidden variants). Data: fake Kaggle trees (tests/fake_kaggle.py)."""
from __future__ import annotations

import dataclasses

import fake_kaggle
import numpy as np
import pandas as pd
import pytest

from course_utils import cxr, data, metrics, phantom, shortcuts


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("trees")
    return {layout: fake_kaggle.build(base / layout, layout, n_covid=24, n_normal=36, size=96)
            for layout in fake_kaggle.LAYOUTS}


def _load(monkeypatch, tree, **kw) -> data.CourseCXR:
    monkeypatch.setenv("COURSE_CXR_DIR", str(tree))
    return data.load_course_cxr(image_size=64, **kw)


# ------------------------------------------------------------------ metadata, patients, split

@pytest.mark.parametrize("url, expected", [
    ("https://github.com/ieee8023/covid-chestxray-dataset/blob/x.png", "github.com/ieee8023"),
    ("https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data", "kaggle.com"),
    ("sirm.org/category/covid-19", "sirm.org"),
    ("", "unknown"), ("nan", "unknown"), ("not a url", "unknown"),
])
def test_source_of(url, expected):
    assert cxr.source_of(url) == expected


def test_sources_original_sizes_and_masks_are_read(trees, monkeypatch):
    d = _load(monkeypatch, trees["some-masks"])
    assert d.source == "real" and d.origins is not None
    assert set(d.origins[d.labels == 1]) == {"github.com/covid-collection"}
    assert set(d.origins[d.labels == 0]) == {"kaggle.com"}
    # COVID films were written landscape, normal films square
    assert (d.original_shapes[d.labels == 1] == [96, 96 + 96 // 5]).all()
    assert (d.original_shapes[d.labels == 0] == [96, 96]).all()
    assert d.has_lung_mask.sum() == 30 and "lung masks for 30 of 60" in d.description
    # a small set gets a 20 % test share, stratified
    assert len(d.test_idx) == 12 and d.labels[d.test_idx].sum() == round(0.2 * 24)


def test_unreadable_metadata_sheet_warns_and_is_ignored(tmp_path, monkeypatch):
    ds = fake_kaggle.build(tmp_path, "no-masks", n_covid=6, n_normal=6, size=72)
    (ds / "COVID.metadata.xlsx").write_bytes(b"PK\x03\x04 not really excel")
    with pytest.warns(UserWarning, match="COVID.metadata.xlsx"):
        result = cxr.load_radiography(ds, image_size=32)
    assert set(result.sources) == {"unknown", "kaggle.com"}  # the Normal sheet still counts


def test_no_metadata_gives_no_sources(tmp_path):
    ds = fake_kaggle.build(tmp_path, "no-masks", n_covid=4, n_normal=4, size=72, metadata=False)
    result = cxr.load_radiography(ds, image_size=32)
    assert result.sources is None and result.patients is None
    assert result.original_shapes.shape == (8, 2)


def test_split_by_patient_keeps_each_patient_in_one_part(tmp_path, monkeypatch):
    ds = fake_kaggle.build(tmp_path, "no-masks", n_covid=30, n_normal=40, size=72)
    names = sorted(p.stem for p in ds.glob("*/images/*.png"))
    patients = {n: f"{n.split('-')[0]}-{int(n.split('-')[1]) // 2}" for n in names}  # two films each
    pd.DataFrame({"file": [f"{n}.png" for n in names], "patient": [patients[n] for n in names]}).to_csv(
        ds / "patients.csv", index=False)
    d = _load(monkeypatch, ds)
    assert d.patients is not None and "split by patient" in d.description
    assert not set(d.patients[d.train_idx]) & set(d.patients[d.test_idx])
    assert set(np.unique(d.labels[d.test_idx])) == {0, 1}
    # without patients.csv the same data is split image by image (a different cache key)
    (ds / "patients.csv").unlink()
    assert _load(monkeypatch, ds).fingerprint != d.fingerprint


def test_grouped_split_validates():
    y = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="one entry per label"):
        cxr.stratified_split(y, 0.5, groups=["a", "b"])
    with pytest.raises(ValueError, match="both parts"):
        cxr.stratified_split(y, 0.5, groups=["a", "a", "b", "b"])  # one patient per class


def test_source_argument(trees, monkeypatch):
    monkeypatch.setenv("COURSE_CXR_DIR", str(trees["no-masks"]))
    assert data.load_course_cxr(image_size=64, n=200, source="phantom").source == "phantom"
    assert data.load_course_cxr(image_size=64, source="real").source == "real"
    monkeypatch.delenv("COURSE_CXR_DIR")
    monkeypatch.setenv("COURSE_DATA_DIR", str(trees["no-masks"].parent / "empty-data-dir"))
    with pytest.raises(cxr.DatasetError, match="COURSE_CXR_DIR"):
        data.load_course_cxr(source="real")
    with pytest.raises(ValueError, match="source"):
        data.load_course_cxr(source="kaggle")


# ------------------------------------------------------------------ variants

def test_mask_to_lungs_with_some_masks_keeps_only_masked_images(trees, monkeypatch):
    d = _load(monkeypatch, trees["some-masks"])
    m = data.mask_to_lungs(d)
    assert d.has_lung_mask[m.train_idx].all() and d.has_lung_mask[m.test_idx].all()
    assert set(m.test_idx) <= set(d.test_idx) and m.fingerprint != d.fingerprint
    from scipy import ndimage

    lungs = d.masks["lungs"][m.test_idx]
    far = ~ndimage.binary_dilation(lungs, ndimage.generate_binary_structure(2, 1)[None], iterations=4)
    assert (m.images[m.test_idx][..., 0][far] == 0).all()


def test_mask_to_lungs_refuses_masks_of_one_class(trees, monkeypatch):
    d = _load(monkeypatch, trees["some-masks"])
    one_class = d.has_lung_mask & (d.labels == 1)
    d = dataclasses.replace(d, has_lung_mask=one_class,
                            masks={"lungs": d.masks["lungs"] & one_class[:, None, None]})
    with pytest.raises(ValueError, match="both classes"):
        data.mask_to_lungs(d)
    with pytest.raises(ValueError, match="no lung masks"):
        data.mask_to_lungs(_load(monkeypatch, trees["no-masks"]))


def test_hide_lungs_uses_masks_only_when_every_image_has_one(trees, monkeypatch):
    full = _load(monkeypatch, trees["masks"])
    hidden = data.hide_lungs(full, dilate_px=0)
    assert (hidden.images[..., 0][full.masks["lungs"]] == 0).all()
    assert "masks" in hidden.description
    some = data.hide_lungs(_load(monkeypatch, trees["some-masks"]))
    box = data.lung_proxy(64)
    assert (some.images[:, box] == 0).all() and "central box" in some.description
    assert some.images[:, ~box].any()


def test_lung_proxy_and_keep_only():
    box = data.lung_proxy(100)
    assert box[50, 50] and not box[5, 5] and not box[95, 50] and 0.5 < box.mean() < 0.6
    d = data.load_course_cxr(image_size=64, n=200, source="phantom")
    corners = data.corner_masks(1, 64)["corners (marker proxy)"][0]
    kept = data.keep_only(d, corners, "corners only")
    assert (kept.images[:, ~corners] == 0).all()
    assert np.array_equal(kept.images[:, corners], d.images[:, corners])
    assert kept.phantom_set is None and kept.fingerprint != d.fingerprint
    with pytest.raises(ValueError, match="keep must be"):
        data.keep_only(d, np.ones((10, 10), bool), "wrong")


def test_with_training_cap_is_stratified_and_leaves_the_test_set():
    d = data.load_course_cxr(image_size=64, n=400, source="phantom")
    c = data.with_training_cap(d, 100)
    assert len(c.train_idx) == 100 and c.fingerprint != d.fingerprint
    assert abs(c.labels[c.train_idx].mean() - d.labels[d.train_idx].mean()) < 0.02
    # only the rows of the two splits are kept, renumbered: the same test images, in order
    assert len(c.labels) == 100 + len(d.test_idx) and c.phantom_set is None
    for part in ("test", "train"):
        assert c.split(part)[0].base is not d.images  # copies of the kept rows only
    np.testing.assert_array_equal(c.split("test")[0], d.split("test")[0])
    np.testing.assert_array_equal(c.split("test")[1], d.split("test")[1])
    train_images = c.split("train")[0]  # each one of d's training images
    assert all((d.split("train")[0] == img).all(axis=(1, 2, 3)).any() for img in train_images[:5])
    for region in ("lungs", "marker"):
        np.testing.assert_array_equal(c.masks[region][c.test_idx], d.masks[region][d.test_idx])
    assert data.with_training_cap(d, 10_000) is d


def test_variants_make_exactly_the_rows_read_as_the_whole_array_would():
    """The variants' images are made row by row when read: the same pixels as editing the
    whole array at once, for every way a notebook indexes them, and through a training cap."""
    from scipy import ndimage

    d = data.load_course_cxr(image_size=64, n=300, source="phantom")
    lungs = d.masks["lungs"]
    grown = ndimage.binary_dilation(lungs, ndimage.generate_binary_structure(2, 1)[None], iterations=3)
    corners = data.corner_masks(1, 64)["corners (marker proxy)"][0]
    expected = {  # the whole array edited at once, by hand
        "lungs": np.where(grown[..., None], d.images, 0),
        "hidden": np.where(~grown[..., None], d.images, 0),
        "corners": np.where(corners[None, ..., None], d.images, 0),
        "per image": np.where(grown[..., None], d.images, 0),
    }
    variants = {"lungs": data.mask_to_lungs(d), "hidden": data.hide_lungs(d),
                "corners": data.keep_only(d, corners, "corners only"),
                "per image": data.keep_only(d, grown, "grown lungs only")}
    rng = np.random.default_rng(0)
    rows = rng.choice(300, 40, replace=False)  # unsorted, as a caller may pass them
    for name, v in variants.items():
        x, want = v.images, expected[name]
        assert isinstance(x, data.RowwiseImages) and x.shape == d.images.shape and len(x) == 300
        np.testing.assert_array_equal(np.asarray(x), want)
        with pytest.raises(ValueError, match="cannot avoid a copy"):
            np.asarray(x, copy=False)
        np.testing.assert_array_equal(x[rows], want[rows])
        np.testing.assert_array_equal(x[7], want[7])
        np.testing.assert_array_equal(x[-3:], want[-3:])
        np.testing.assert_array_equal(x[d.labels == 1], want[d.labels == 1])
        np.testing.assert_array_equal(x[:, ~corners], want[:, ~corners])
        np.testing.assert_array_equal(x[5, 10:20, :, 0], want[5, 10:20, :, 0])
        np.testing.assert_array_equal(v.split("test")[0], want[d.test_idx])
        capped = data.with_training_cap(v, 120)  # rows of rows: still lazy, still the same pixels
        assert isinstance(capped.images, data.RowwiseImages)
        np.testing.assert_array_equal(capped.split("test")[0], want[d.test_idx])
    # a variant of a capped set edits only the capped rows, and the same way
    capped = data.with_training_cap(d, 120)
    hidden = data.hide_lungs(capped)
    np.testing.assert_array_equal(hidden.split("test")[0], expected["hidden"][d.test_idx])
    assert len(hidden.images) == 120 + len(d.test_idx) < len(d.labels)
    with pytest.raises(IndexError):
        variants["lungs"].images[300]
    with pytest.raises(ValueError, match="keep must be"):
        data.keep_only(d, grown[:10], "too few")


# ------------------------------------------------------------------ shortcuts

def test_image_statistics_known_values():
    x = np.zeros((2, 50, 50, 1), np.float32)
    x[1] = 1.0
    x[1, :3, :3] = 0.0  # a dark top-left corner patch
    f = shortcuts.image_statistics(x, np.array([[100, 200], [100, 100]]))
    assert f.loc[0, "hist 00"] == 1 and f.loc[1, "hist 15"] == pytest.approx(1 - 9 / 2500)
    assert f.loc[0, "mean"] == 0 and f.loc[1, "border mean"] < 1 and f.loc[1, "corner top-left"] < 1
    assert f.loc[1, "corner bottom-right"] == 1 and f.loc[0, "aspect"] == 2.0
    inside = np.zeros((50, 50), bool)
    inside[10:40, 10:40] = True
    x[0, 10:40, 10:40] = 1.0  # brightness inside the excluded box is invisible
    g = shortcuts.image_statistics(x, exclude=inside)
    assert g.loc[0, "mean"] == 0 and "aspect" not in g
    with pytest.raises(ValueError, match="original_shapes"):
        shortcuts.image_statistics(x, np.ones((3, 2)))
    with pytest.raises(ValueError, match="images must be"):
        shortcuts.image_statistics(np.zeros((2, 3, 4, 5)))


def test_statistics_only_finds_a_source_and_not_a_lung_only_signal(trees, monkeypatch):
    two_source = shortcuts.statistics_only(_load(monkeypatch, trees["no-masks"]), n_boot=50)
    assert two_source.report.auc.value > 0.95  # grain, borders, size: the source gives the label away
    d = data.load_course_cxr(image_size=64, n=300, source="phantom", marker_strength=0.0,
                             abdomen_strength=0.0)
    # lesions only inside the lungs, no shortcut: the film outside the lung box says little
    lungs_only = shortcuts.statistics_only(d, n_boot=50)
    assert lungs_only.report.auc.value < 0.8
    assert list(lungs_only.weights.abs()) == sorted(lungs_only.weights.abs(), reverse=True)


def test_by_origin_and_red_flag():
    table = shortcuts.by_origin(np.array(["a", "a", "b", "b", "b"]), np.array([1, 1, 0, 0, 1]),
                                np.array([0.9, 0.8, 0.1, 0.6, 0.7]))
    assert table.loc["b", "images"] == 3 and table.loc["b", "accuracy"] == pytest.approx(2 / 3)
    assert table.loc["a", "COVID share"] == 1 and list(table.index) == ["b", "a"]
    with pytest.raises(ValueError):
        shortcuts.by_origin(np.array(["a"]), np.array([1, 0]), np.array([0.5, 0.5]))
    y = np.r_[np.zeros(50), np.ones(50)].astype(int)
    perfect = metrics.binary_report(y, np.where(y == 1, 0.99, 0.01), n_boot=20)
    assert "RED FLAG" in shortcuts.red_flag(perfect)
    noisy = metrics.binary_report(y, np.random.default_rng(0).uniform(0.3, 0.7, 100) + 0.1 * y, n_boot=20)
    assert noisy.auc.value < 0.99 and shortcuts.red_flag(noisy) is None


def test_evidence_sentences_follow_the_numbers():
    high = shortcuts.evidence({"lungs hidden": 0.97, "corners only": 0.55, "full image": 0.99,
                               "lungs only": 0.80})
    assert "well (AUC 0.97)" in high[0] and "shortcut is available" in high[0]
    assert "no evidence" in high[1] and "0.19 of AUC came from outside" in high[2]
    assert "part of the label" in shortcuts.evidence({"lungs hidden": 0.8})[0]
    low = shortcuts.evidence({"lungs hidden": 0.6})
    assert "barely or not" in low[0] and "little of the label" in low[0]
    with pytest.raises(ValueError, match="no recognised probe"):
        shortcuts.evidence({"something": 0.5})


def test_frame_mask_is_the_outer_band():
    band = data.frame_mask(10, fraction=0.1)
    assert band.shape == (10, 10) and band.sum() == 100 - 8 * 8 and not band[1:9, 1:9].any()
    wide = data.frame_mask((10, 20), fraction=0.2)  # 2 px: set by the shorter side
    assert wide.shape == (10, 20) and wide.sum() == 200 - 6 * 16
    assert data.frame_mask(8, fraction=0.01).sum() == 64 - 36  # at least 1 px
    with pytest.raises(ValueError, match="fraction"):
        data.frame_mask(10, fraction=0.5)


# ------------------------------------------------------------------ two acquisition sites

def test_by_site_counts_by_hand():
    y = np.array([1, 1, 0, 0, 1, 0])
    s = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.9, 0.2, 0.1, 0.6, 0.7, 0.3])  # right, wrong, right | wrong, right, right
    t = shortcuts.by_site(y, s, {"x": p, "all right": y * 0.8 + 0.1})
    a, b, both = (t.loc[("x", k)] for k in (*shortcuts.SITE_NAMES, "all"))
    assert a["accuracy"] == pytest.approx(2 / 3) and b["accuracy"] == pytest.approx(2 / 3)
    assert both["accuracy"] == pytest.approx(4 / 6) and both["images"] == 6
    assert (a["sensitivity"], a["specificity"], b["sensitivity"], b["specificity"]) == (0.5, 1, 1, 0.5)
    assert a["COVID share"] == pytest.approx(2 / 3)
    assert a["accuracy CI low"] < a["accuracy"] < a["accuracy CI high"]
    assert (t.loc["all right", "accuracy"] == 1).all()
    only_a = shortcuts.by_site(y[:3], s[:3], {"x": p[:3]})  # no site-B films: no row for it
    assert list(only_a.index.get_level_values("site")) == [shortcuts.SITE_NAMES[0], "all"]
    assert np.isnan(shortcuts.by_site([0, 0], [0, 1], {"x": [0.2, 0.9]}).loc[("x", "all"), "sensitivity"])
    with pytest.raises(ValueError, match="0/1"):
        shortcuts.by_site(y, s + 1, {"x": p})
    with pytest.raises(ValueError, match="shape"):
        shortcuts.by_site(y, s, {"x": p[:5]})


@pytest.fixture(scope="module")
def two_sites():
    return phantom.make_phantom_cxr(80, image_size=64, seed=3, marker_strength=0.0, abdomen_strength=0.0,
                                    site_strength=1.0)


def _reads_the_frame(x: np.ndarray) -> np.ndarray:
    """A "model" that calls COVID every film with site B's bright frame (site A's is black)."""
    return (x[:, 0, :, 0].mean(axis=1) > 0.4).astype(float)


def test_site_films_with_a_model_that_reads_only_the_site(two_sites):
    ps = two_sites
    assert np.array_equal(_reads_the_frame(ps.images), ps.site)  # the toy model sees the site exactly
    rows = np.arange(10, 70)
    films = shortcuts.site_films(ps, rows)
    assert list(films) == list(shortcuts.SITE_TESTS)
    assert all(f.shape == (60, 64, 64, 1) for f in films.values())
    as_filmed, elsewhere, no_lesions = shortcuts.SITE_TESTS
    assert np.array_equal(films[as_filmed], ps.images[rows])
    assert np.array_equal(_reads_the_frame(films[elsewhere]), 1 - ps.site[rows])
    outside = ~ps.masks["lesions"][rows]  # only opacities differ (sharpness spreads them by <= 2 px at 128)
    assert np.abs(films[no_lesions] - films[as_filmed])[..., 0][outside].mean() < 1e-3
    t = shortcuts.by_site(ps.labels[rows], ps.site[rows], {k: _reads_the_frame(v) for k, v in films.items()})
    right = ps.site[rows] == ps.labels[rows]
    assert t.loc[(as_filmed, "all"), "accuracy"] == pytest.approx(right.mean())
    # at the other site every call flips: accuracy 1 - a, at each site
    for site in (*shortcuts.SITE_NAMES, "all"):
        assert t.loc[(elsewhere, site), "accuracy"] == pytest.approx(1 - t.loc[(as_filmed, site), "accuracy"])
    # the opacities are not read: removing them changes nothing
    pd.testing.assert_series_equal(t.loc[no_lesions, "accuracy"], t.loc[as_filmed, "accuracy"])
    lines = shortcuts.site_evidence(t)
    assert "reads the site" in lines[1] and "opacities barely matter" in lines[2]
    with pytest.raises(ValueError, match="no sites"):
        shortcuts.site_films(phantom.make_phantom_cxr(4, image_size=64))


def test_site_evidence_for_a_model_that_reads_the_opacities():
    y = np.r_[np.ones(40), np.zeros(40)].astype(int)
    s = np.tile([0, 1], 40)
    right = np.where(y == 1, 0.9, 0.1)
    table = shortcuts.by_site(y, s, dict(zip(shortcuts.SITE_TESTS, (right, right, np.full(80, 0.1)))))
    lines = shortcuts.site_evidence(table)
    assert "intervals overlap" in lines[0] and "barely matters to it." in lines[1]
    assert "0.0% of the COVID films" in lines[2] and "also uses the opacities" in lines[2]
    lopsided = np.where(s == 0, right, 1 - right)  # perfect at site A, always wrong at site B
    lines = shortcuts.site_evidence(shortcuts.by_site(y, s, dict(zip(shortcuts.SITE_TESTS, (lopsided,) * 3))))
    assert "do not overlap" in lines[0] and "(n=40)" in lines[0]
    with pytest.raises(ValueError, match="lacks the test sets"):
        shortcuts.site_evidence(shortcuts.by_site(y, s, {"as filmed": right}))


def test_statistics_only_predicts_another_target():
    d = data.load_course_cxr(image_size=64, n=300, source="phantom", marker_strength=0.0,
                             abdomen_strength=0.0, site_strength=1.0)
    site = shortcuts.statistics_only(d, target=d.phantom_set.site, n_boot=20)
    assert site.report.auc.value > 0.95  # tone, grain and frame: the site is plain to see
    assert site.report.n == len(d.test_idx)
    with pytest.raises(ValueError, match="target must be"):
        shortcuts.statistics_only(d, target=d.phantom_set.site[:10])
