"""Photo loading: every format and mode, clear errors, offline fallbacks."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from course_utils import assets, images


def _save(path, array, mode=None, **kw):
    Image.fromarray(array, mode=mode).save(path, **kw) if mode else Image.fromarray(array).save(path, **kw)
    return path


def test_rgb_png_round_trips_exactly(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = images.load_image(_save(tmp_path / "a.png", rgb))
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out, rgb)


def test_grayscale_is_replicated_to_three_channels(tmp_path):
    gray = np.arange(200, dtype=np.uint8).reshape(10, 20)
    out = images.load_image(_save(tmp_path / "g.png", gray))
    assert out.shape == (10, 20, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red ...
    rgba[:4, ..., 3] = 255  # ... opaque in the top half, transparent below
    out = images.load_image(_save(tmp_path / "t.png", rgba))
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[7, 7], [255, 255, 255])


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    arr = np.full((6, 6), 32768, dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    out = images.load_image(path)
    assert out.shape == (6, 6, 3) and abs(int(out[0, 0, 0]) - 128) <= 1


def test_palette_and_jpeg(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, 8:] = (0, 0, 255)
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.gif")
    Image.fromarray(rgb).save(tmp_path / "j.jpg", quality=95)
    assert images.load_image(tmp_path / "p.gif")[0, 12].tolist() == [0, 0, 255]
    assert images.load_image(tmp_path / "j.jpg")[0, 12, 2] > 200


def test_missing_file_is_named(tmp_path):
    with pytest.raises(images.ImageError, match="not found.*nope.png"):
        images.load_image(tmp_path / "nope.png")


def test_non_image_file_is_named(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are my notes, not a photo")
    with pytest.raises(images.ImageError, match="notes.jpg.*not an image"):
        images.load_image(path)


def test_truncated_image_is_reported_as_damaged(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = _save(tmp_path / "full.png", rgb).read_bytes()
    path = tmp_path / "half.png"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(images.ImageError, match="half.png.*damaged or truncated"):
        images.load_image(path)


def test_resize_squash_and_crop(tmp_path):
    pixels = np.zeros((100, 200, 3), np.uint8)
    pixels[:, :50] = 255  # a white band on the left quarter
    squashed = images.resize(pixels, 224, "squash")
    cropped = images.resize(pixels, 224, "crop")
    assert squashed.shape == cropped.shape == (224, 224, 3) and squashed.dtype == np.float32
    assert squashed[:, :40].mean() > 250  # the band survives a squash ...
    assert cropped[:, :40].mean() < 5  # ... and is cut away by a centre crop
    with pytest.raises(ValueError, match="fit"):
        images.resize(pixels, 224, "stretch")


def test_offline_course_photos_fall_back_to_packaged_samples():
    photos = images.course_photos()  # offline: nothing cached
    assert [p.key for p in photos] == list(assets.PHOTOS)
    for p in photos:
        assert p.is_fallback and p.pixels.dtype == np.uint8 and p.pixels.shape[-1] == 3
        assert "scikit-image" in p.credit and "offline" in p.note and "prefetch" in p.note


def test_cached_photo_is_used_with_its_credit(isolated_cache):
    asset = assets.get("dog")
    asset.path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 50, 3), 77, np.uint8)).save(asset.path, format="JPEG")
    photo = images.course_photo("dog")
    assert not photo.is_fallback and photo.pixels.shape == (40, 50, 3)
    assert asset.attribution in photo.credit and asset.licence in photo.credit


def test_corrupt_cached_photo_is_set_aside_and_never_used(isolated_cache):
    asset = assets.get("dome")
    asset.path.parent.mkdir(parents=True, exist_ok=True)
    asset.path.write_bytes(b"<html>rate limited</html>")
    photo = images.course_photo("dome")  # offline: cannot fetch again, so the stand-in is used
    assert photo.is_fallback and "offline" in photo.note
    assert not asset.path.exists()
    assert asset.path.with_name(asset.path.name + ".corrupt").read_bytes().startswith(b"<html>")


def test_corrupt_cached_photo_is_fetched_again(isolated_cache, monkeypatch):
    asset = assets.get("dog")
    asset.path.parent.mkdir(parents=True, exist_ok=True)
    asset.path.write_bytes(b"\xff\xd8\xff truncated jpeg")
    good = isolated_cache / "good.png"
    Image.fromarray(np.full((9, 9, 3), 200, np.uint8)).save(good)

    def fake_fetch(name, offline=None, progress=True):  # the "network" delivers a good copy
        if not asset.path.exists():
            asset.path.write_bytes(good.read_bytes())
        return asset.path, None

    monkeypatch.setattr(assets, "try_fetch", fake_fetch)
    photo = images.course_photo("dog")
    assert not photo.is_fallback and photo.pixels.shape == (9, 9, 3)


def test_folder_photos_reads_good_files_and_reports_bad_ones(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    _save(folder / "b.png", np.zeros((5, 5, 3), np.uint8))
    _save(folder / "a.png", np.zeros((5, 5), np.uint8))
    (folder / "c.jpg").write_bytes(b"garbage")
    (folder / "readme.txt").write_text("ignored: not an image suffix")
    photos, problems = images.folder_photos(folder)
    assert [p.key for p in photos] == ["a", "b"]
    assert len(problems) == 1 and "c.jpg" in problems[0]
    with pytest.raises(images.ImageError, match="folder not found"):
        images.folder_photos(tmp_path / "absent")
