"""Tests for course_utils.cxr: the COVID-19 Radiography Database loader and the stratified split.

All data is a tiny fake data set written to a temporary folder in the Kaggle layout;
nothing touches the network or the real data.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from course_utils.cxr import (
    ENV_VAR,
    KAGGLE_DATASET,
    DatasetError,
    load_radiography,
    read_xray,
    real_data_dir,
    stratified_split,
)

SIZE = 32  # image_size used throughout: small and fast
DS_NAME = "COVID-19_Radiography_Dataset"
LUMA_RGB = (0.299 * 10 + 0.587 * 200 + 0.114 * 50) / 255  # luminance of RGB (10, 200, 50)


# --------------------------------------------------------------------------- fake data set


def _save(path: Path, array: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


def _const(h: int, w: int, value, dtype=np.uint8, channels: int | None = None) -> np.ndarray:
    shape = (h, w) if channels is None else (h, w, channels)
    return np.full(shape, value, dtype=dtype)


def _half_mask(h: int, w: int, where: str, channels: int | None = None) -> np.ndarray:
    """255 on one half (left/right/top/bottom) of an h x w mask, 0 elsewhere."""
    m = np.zeros((h, w), np.uint8)
    sl = {"left": np.s_[:, : w // 2], "right": np.s_[:, w // 2:],
          "top": np.s_[: h // 2, :], "bottom": np.s_[h // 2:, :]}[where]
    m[sl] = 255
    return m if channels is None else np.repeat(m[..., None], channels, axis=2)


#: COVID image file name -> (expected constant value after loading, absolute tolerance)
COVID_VALUES = {
    "COVID-1.png": (1.0, 1e-6),            # 8-bit L 299x299, 255
    "COVID-2.png": (32768 / 65535, 1e-4),  # 16-bit I;16 180x240, 32768 -> 0.5 (not 1.0!)
    "COVID-3.png": (LUMA_RGB, 1e-4),       # RGB 299x299
    "COVID-4.png": (LUMA_RGB, 1e-4),       # RGBA 180x240, alpha ignored
    "COVID-5.jpg": (100 / 255, 3 / 255),   # 8-bit JPEG 299x299
}
#: COVID image -> which half of its lung mask is set (COVID-6.PNG has no mask)
COVID_MASKS = {"COVID-1.png": "left", "COVID-2.png": "right", "COVID-3.png": "top",
               "COVID-4.png": "bottom", "COVID-5.jpg": "left"}
NORMAL_VALUES = {
    "Normal-1.jpg": (50 / 255, 3 / 255),   # L JPEG
    "Normal-2.jpeg": (LUMA_RGB, 4 / 255),  # RGB JPEG
    "Normal-3.JPG": (200 / 255, 3 / 255),  # upper-case suffix
    "Normal-4.png": (1.0, 1e-6),           # 16-bit 65535
    "Normal-5.png": (0.0, 1e-6),           # 8-bit 0
}


def build_fake_dataset(base: Path) -> Path:
    """Write a small Kaggle-layout data set under ``base``; return the dataset folder."""
    ds = base / DS_NAME
    img = ds / "COVID" / "images"
    _save(img / "COVID-1.png", _const(299, 299, 255))
    _save(img / "COVID-2.png", _const(180, 240, 32768, np.uint16))
    _save(img / "COVID-3.png", _const(299, 299, (10, 200, 50), channels=3))
    _save(img / "COVID-4.png", _const(180, 240, (10, 200, 50, 128), channels=4))
    _save(img / "COVID-5.jpg", _const(299, 299, 100), quality=95)
    block = np.zeros((200, 200), np.uint8)
    block[:, 100:] = 255
    _save(img / "COVID-6.PNG", block)  # dark left, bright right; no mask
    masks = ds / "COVID" / "masks"
    _save(masks / "COVID-1.png", _half_mask(256, 256, "left"))
    _save(masks / "COVID-2.png", _half_mask(299, 299, "right", channels=3))
    _save(masks / "COVID-3.png", _half_mask(180, 240, "top"))
    _save(masks / "COVID-4.png", _half_mask(256, 256, "bottom"))
    soft = np.where(_half_mask(256, 256, "left") > 0, 200, 60).astype(np.uint8)  # 0.78 / 0.24
    _save(masks / "COVID-5.png", soft)  # .png mask for a .jpg image; binarised at 0.5

    img = ds / "Normal" / "images"
    _save(img / "Normal-1.jpg", _const(240, 180, 50), quality=95)
    _save(img / "Normal-2.jpeg", _const(299, 299, (10, 200, 50), channels=3), quality=95)
    _save(img / "Normal-3.JPG", _const(100, 100, 200), quality=95)
    _save(img / "Normal-4.png", _const(64, 64, 65535, np.uint16))
    _save(img / "Normal-5.png", _const(299, 299, 0))
    stripes = np.zeros((200, 200), np.uint8)
    stripes[:, ::2] = 255  # 1-pixel stripes: antialiased resizing averages them to ~0.5
    _save(img / "Normal-6.png", stripes)

    img = ds / "Viral Pneumonia" / "images"
    _save(img / "Viral Pneumonia-1.png", _const(64, 64, 128))
    _save(img / "Viral Pneumonia-2.png", _const(64, 64, 64))

    # Stray non-image files that must be ignored.
    (ds / "README.md.txt").write_text("readme")
    (ds / "COVID.metadata.xlsx").write_bytes(b"PK\x03\x04 not really excel")
    for folder in (ds, ds / "COVID", ds / "COVID" / "images", ds / "COVID" / "masks"):
        (folder / ".DS_Store").write_bytes(os.urandom(64))
    (ds / "COVID" / "images" / "._COVID-1.png").write_bytes(os.urandom(64))  # macOS junk
    (ds / "Normal" / "images" / "notes.txt").write_text("not an image")
    return ds


@pytest.fixture(scope="module")
def fake_ds(tmp_path_factory) -> Path:
    return build_fake_dataset(tmp_path_factory.mktemp("kaggle"))


@pytest.fixture(scope="module")
def data(fake_ds):
    return load_radiography(fake_ds.parent, image_size=SIZE)


def _names(result) -> list[str]:
    return [p.name for p in result.paths]


def _tiny_tree(base: Path, files: dict[str, np.ndarray]) -> Path:
    """A minimal data set: relative path -> array (saved as an image)."""
    for rel, arr in files.items():
        _save(base / rel, arr)
    return base


# --------------------------------------------------------------------------- loading


def test_shapes_dtypes_ranges_and_order(data):
    n = len(COVID_VALUES) + 1 + len(NORMAL_VALUES) + 1
    assert data.images.shape == (n, SIZE, SIZE, 1) and data.images.dtype == np.float32
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    assert data.labels.shape == (n,) and data.labels.dtype == np.int64
    assert len(data.paths) == n and all(isinstance(p, Path) for p in data.paths)
    assert _names(data) == sorted(COVID_VALUES) + ["COVID-6.PNG"] + sorted(NORMAL_VALUES) + ["Normal-6.png"]
    assert data.skipped == []


def test_labels_first_class_is_positive(data):
    covid = np.array([p.parent.parent.name == "COVID" for p in data.paths])
    np.testing.assert_array_equal(data.labels, covid.astype(np.int64))
    assert data.labels.sum() == 6


def test_classes_order_changes_labels(fake_ds, data):
    swapped = load_radiography(fake_ds, image_size=SIZE, classes=("Normal", "COVID"))
    assert _names(swapped)[:6] == _names(data)[6:]  # Normal first now
    np.testing.assert_array_equal(swapped.labels, [1] * 6 + [0] * 6)


@pytest.mark.parametrize("name, expected", list({**COVID_VALUES, **NORMAL_VALUES}.items()))
def test_known_pixel_values_round_trip(data, name, expected):
    value, tol = expected
    img = data.images[_names(data).index(name)]
    np.testing.assert_allclose(img, value, atol=tol)


def test_resize_is_antialiased_and_keeps_structure(data):
    img = data.images[_names(data).index("COVID-6.PNG"), :, :, 0]  # left 0, right 1
    assert img[:, :15].max() < 0.05 and img[:, 17:].min() > 0.95
    stripes = data.images[_names(data).index("Normal-6.png"), :, :, 0]
    np.testing.assert_allclose(stripes, 0.5, atol=0.1)  # nearest-neighbour would alias to 0/1


def test_masks_resized_boolean_and_aligned(data):
    masks, half = data.lung_masks, SIZE // 2
    assert masks is not None and masks.shape == (len(data), SIZE, SIZE) and masks.dtype == bool
    expected_regions = {"left": np.s_[:, :half], "right": np.s_[:, half:],
                        "top": np.s_[:half, :], "bottom": np.s_[half:, :]}
    for name, where in COVID_MASKS.items():
        i = _names(data).index(name)
        expected = np.zeros((SIZE, SIZE), bool)
        expected[expected_regions[where]] = True
        np.testing.assert_array_equal(masks[i], expected, err_msg=name)
    has = dict(zip(_names(data), data.has_mask))
    assert all(has[n] for n in COVID_MASKS)
    assert not has["COVID-6.PNG"] and not any(has[n] for n in NORMAL_VALUES)
    assert not masks[~data.has_mask].any()  # images without a mask get an all-False one


def test_no_masks_gives_none(fake_ds):
    result = load_radiography(fake_ds, image_size=SIZE, classes=("Normal", "Viral Pneumonia"))
    assert result.lung_masks is None
    assert result.has_mask.shape == (len(result),) and not result.has_mask.any()


def test_root_as_parent_or_dataset_folder(fake_ds, data):
    direct = load_radiography(fake_ds, image_size=SIZE)
    assert direct.paths == data.paths
    np.testing.assert_array_equal(direct.images, data.images)
    np.testing.assert_array_equal(direct.labels, data.labels)


def test_class_folder_with_space_and_loose_name_matching(fake_ds):
    exact = load_radiography(fake_ds, image_size=SIZE, classes=("Viral Pneumonia", "Normal"))
    loose = load_radiography(fake_ds, image_size=SIZE, classes=("viral_pneumonia", "Normal"))
    assert _names(exact)[:2] == ["Viral Pneumonia-1.png", "Viral Pneumonia-2.png"]
    assert loose.paths == exact.paths
    np.testing.assert_array_equal(exact.labels, [1, 1] + [0] * 6)
    np.testing.assert_allclose(exact.images[:2].mean(axis=(1, 2, 3)), [128 / 255, 64 / 255], atol=1e-5)


def test_three_classes_binary_labels_and_class_ids(fake_ds):
    result = load_radiography(fake_ds, image_size=SIZE, classes=("COVID", "Normal", "Viral Pneumonia"))
    np.testing.assert_array_equal(result.class_ids, [0] * 6 + [1] * 6 + [2] * 2)
    np.testing.assert_array_equal(result.labels, [1] * 6 + [0] * 8)


def test_limit_per_class_is_seeded_and_deterministic(fake_ds, data):
    first = load_radiography(fake_ds, image_size=SIZE, limit_per_class=3, seed=7)
    again = load_radiography(fake_ds, image_size=SIZE, limit_per_class=3, seed=7)
    assert first.paths == again.paths
    np.testing.assert_array_equal(first.images, again.images)
    assert len(first) == 6 and first.labels.sum() == 3
    assert set(first.paths) <= set(data.paths)
    assert first.paths == sorted(first.paths, key=lambda p: (p.parent.parent.name != "COVID", p.name))
    subsets = {tuple(load_radiography(fake_ds, image_size=SIZE, limit_per_class=3, seed=s).paths)
               for s in range(5)}
    assert len(subsets) > 1  # the seed matters
    big = load_radiography(fake_ds, image_size=SIZE, limit_per_class=100)
    assert big.paths == data.paths


def test_non_image_files_are_ignored(data):
    suffixes = {p.suffix.lower() for p in data.paths}
    assert suffixes <= {".png", ".jpg", ".jpeg"}
    assert not any(p.name.startswith(".") for p in data.paths)


def test_read_xray_single_file(fake_ds):
    img = read_xray(fake_ds / "COVID" / "images" / "COVID-2.png", image_size=20)
    assert img.shape == (20, 20) and img.dtype == np.float32
    np.testing.assert_allclose(img, 32768 / 65535, atol=1e-4)


@pytest.mark.parametrize("kwargs", [{"image_size": 0}, {"classes": "COVID"}, {"classes": ()},
                                    {"limit_per_class": 0}, {"classes": ("COVID", "covid")},
                                    {"seed": -1}])
def test_invalid_arguments(fake_ds, kwargs):
    with pytest.raises(ValueError):
        load_radiography(fake_ds, **kwargs)


# --------------------------------------------------------------------------- errors


def test_missing_root_explains_layout_and_download(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as info:
        load_radiography(missing)
    msg = str(info.value)
    assert str(missing) in msg and "images/" in msg and "masks/" in msg
    assert KAGGLE_DATASET in msg and ENV_VAR in msg
    assert isinstance(info.value, ValueError)


def test_missing_class_folder_lists_existing(fake_ds):
    with pytest.raises(DatasetError) as info:
        load_radiography(fake_ds, image_size=SIZE, classes=("COVID", "Pneumothorax"))
    msg = str(info.value)
    assert str(fake_ds / "Pneumothorax") in msg
    assert "'Normal'" in msg and "'Viral Pneumonia'" in msg and "'COVID'" in msg


@pytest.mark.parametrize("make_empty", ["empty_images_dir", "no_images_dir"])
def test_empty_class_folder(tmp_path, make_empty):
    ds = _tiny_tree(tmp_path / DS_NAME, {"COVID/images/COVID-1.png": _const(8, 8, 1)})
    normal = ds / "Normal"
    (normal / "images" if make_empty == "empty_images_dir" else normal).mkdir(parents=True)
    (normal / "images" / "x.txt" if make_empty == "empty_images_dir" else normal / "x.txt").write_text("x")
    with pytest.raises(DatasetError) as info:
        load_radiography(tmp_path, image_size=SIZE)
    msg = str(info.value)
    assert str(normal / "images") in msg and "'COVID'" in msg and "'Normal'" in msg


def test_images_directly_in_class_folder_is_wrong_layout(tmp_path):
    ds = _tiny_tree(tmp_path / DS_NAME, {"COVID/images/COVID-1.png": _const(8, 8, 1),
                                         "Normal/Normal-1.png": _const(8, 8, 1)})
    with pytest.raises(DatasetError) as info:
        load_radiography(ds, image_size=SIZE)
    msg = str(info.value)
    assert "Wrong layout" in msg and str(ds / "Normal") in msg and "images/" in msg


def _corrupt_tree(base: Path) -> tuple[Path, Path, Path]:
    """A valid tree plus a random-bytes .png and a truncated PNG in the Normal class."""
    ds = _tiny_tree(base / DS_NAME, {"COVID/images/COVID-1.png": _const(50, 50, 255),
                                     "Normal/images/Normal-1.png": _const(50, 50, 0)})
    garbage = ds / "Normal" / "images" / "Normal-2.png"
    garbage.write_bytes(np.random.default_rng(1).bytes(300))
    good = _save(ds / "Normal" / "images" / "tmp.png",
                 np.random.default_rng(2).integers(0, 256, (80, 80, 3), dtype=np.uint8))
    truncated = ds / "Normal" / "images" / "Normal-3.png"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    good.unlink()
    return ds, garbage, truncated


def test_corrupt_file_raises_naming_it(tmp_path):
    ds, garbage, _ = _corrupt_tree(tmp_path)
    with pytest.raises(DatasetError, match="skip_bad") as info:
        load_radiography(ds, image_size=SIZE)
    assert str(garbage) in str(info.value)


def test_truncated_file_raises_naming_it(tmp_path):
    ds, garbage, truncated = _corrupt_tree(tmp_path)
    garbage.unlink()
    with pytest.raises(DatasetError) as info:
        load_radiography(ds, image_size=SIZE)
    assert str(truncated) in str(info.value)


def test_skip_bad_records_and_warns_once(tmp_path):
    ds, garbage, truncated = _corrupt_tree(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = load_radiography(ds, image_size=SIZE, skip_bad=True)
    ours = [w for w in caught if "skipped 2" in str(w.message)]
    assert len(ours) == 1 and len([w for w in caught if "skipped" in str(w.message)]) == 1
    assert [p for p, _ in result.skipped] == [garbage, truncated]
    assert all(isinstance(reason, str) and reason for _, reason in result.skipped)
    assert _names(result) == ["COVID-1.png", "Normal-1.png"]
    np.testing.assert_allclose(result.images.mean(axis=(1, 2, 3)), [1.0, 0.0], atol=1e-6)
    np.testing.assert_array_equal(result.labels, [1, 0])


# --------------------------------------------------------------------------- split


def _labels() -> np.ndarray:
    return np.array([0] * 70 + [1] * 33 + [2] * 11)[np.random.default_rng(3).permutation(114)]


def test_stratified_split_properties():
    y = _labels()
    train, test = stratified_split(y, test_fraction=0.1, seed=42)
    assert train.dtype.kind == "i" and test.dtype.kind == "i"
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)  # sorted, no duplicates
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(y.size))
    for cls in np.unique(y):
        total = (y == cls).sum()
        assert abs((y[test] == cls).sum() - 0.1 * total) <= 1, cls


def test_stratified_split_reproducible_and_seeded():
    y = _labels()
    a, b = stratified_split(y, seed=5), stratified_split(y, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], stratified_split(y, seed=6)[1])


@pytest.mark.parametrize("labels, fraction", [
    (np.zeros(20), 0.0), (np.zeros(20), 1.0), (np.zeros(20), 1.5), (np.zeros(20), -0.1),
    (np.zeros((10, 2)), 0.1), (np.array([]), 0.1), (np.array([0] * 10 + [1]), 0.5),
    (np.array([0] * 10 + [1] * 10), 0.01),
])
def test_stratified_split_validates_arguments(labels, fraction):
    with pytest.raises(ValueError):
        stratified_split(labels, test_fraction=fraction)


# --------------------------------------------------------------------------- real_data_dir


def test_real_data_dir_unset_or_empty(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert real_data_dir() is None
    monkeypatch.setenv(ENV_VAR, "")
    assert real_data_dir() is None


def test_real_data_dir_set(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert real_data_dir() == tmp_path


def test_real_data_dir_missing_path(monkeypatch, tmp_path):
    missing = tmp_path / "not-here"
    monkeypatch.setenv(ENV_VAR, str(missing))
    with pytest.raises(DatasetError) as info:
        real_data_dir()
    assert ENV_VAR in str(info.value) and str(missing) in str(info.value)
