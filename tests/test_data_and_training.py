"""The course's chest X-ray data (phantom or real) and the cached CNN training."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from course_utils import data, models


@pytest.fixture(scope="module")
def small():
    return data.load_course_cxr(image_size=64, seed=3, n=240)


def test_phantom_data_is_default_split_and_deterministic(small, monkeypatch):
    monkeypatch.delenv("COURSE_CXR_DIR", raising=False)
    assert small.source == "phantom" and small.images.shape == (240, 64, 64, 1)
    assert set(small.masks) == {"lungs", "lesions", "heart", "spine", "abdomen", "marker", "body"}
    assert len(np.intersect1d(small.train_idx, small.test_idx)) == 0
    assert len(small.train_idx) + len(small.test_idx) == 240 and len(small.test_idx) == 24
    again = data.load_course_cxr(image_size=64, seed=3, n=240)
    np.testing.assert_array_equal(again.images, small.images)
    assert again.fingerprint == small.fingerprint
    other = data.load_course_cxr(image_size=64, seed=3, n=240, marker_strength=0.0)
    assert other.fingerprint != small.fingerprint  # knobs change the cache key
    x, y = small.split("test")
    np.testing.assert_array_equal(y, small.labels[small.test_idx])


def test_real_data_is_used_when_course_cxr_dir_is_set(tmp_path, monkeypatch):
    root = tmp_path / "COVID-19_Radiography_Dataset"
    for cls, n in (("COVID", 6), ("Normal", 14)):
        (root / cls / "images").mkdir(parents=True)
        (root / cls / "masks").mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((40, 40), 30 * (i % 8), np.uint8)).save(
                root / cls / "images" / f"{cls}-{i}.png")
            mask = np.zeros((40, 40), np.uint8)
            mask[10:30, 5:35] = 255
            Image.fromarray(mask).save(root / cls / "masks" / f"{cls}-{i}.png")
    monkeypatch.setenv("COURSE_CXR_DIR", str(root))
    real = data.load_course_cxr(image_size=32, seed=0)
    assert real.source == "real" and real.phantom_set is None
    assert real.images.shape == (20, 32, 32, 1) and real.labels.sum() == 6
    assert set(real.masks) == {"lungs"} and real.masks["lungs"].any()
    assert "6 COVID and 14 normal" in real.description
    masked = data.mask_to_lungs(real, dilate_px=0)
    outside = ~real.masks["lungs"]
    assert (masked.images[..., 0][outside] == 0).all()
    assert masked.fingerprint != real.fingerprint


def test_apply_lung_mask_keeps_lungs_and_margin_only():
    images = np.ones((2, 10, 10, 1), np.float32)
    lungs = np.zeros((2, 10, 10), bool)
    lungs[0, 4:6, 4:6] = True  # the second image has no mask: it must stay whole
    out = data.apply_lung_mask(images, lungs, dilate_px=1)
    assert out[0, ..., 0].sum() == 4 + 8  # 2x2 lungs + a one-pixel cross-shaped margin
    assert (out[1] == 1).all()


def test_corner_masks_are_a_proxy_in_the_corners():
    corners = data.corner_masks(3, 100, fraction=0.1)["corners (marker proxy)"]
    assert corners.shape == (3, 100, 100) and corners[0].sum() == 4 * 100
    assert corners[0, 0, 0] and corners[0, -1, -1] and not corners[0, 50, 50]


def test_training_is_cached_and_reloaded(small):
    first = models.load_or_train_cxr_model(small, epochs=1, seed=5)
    assert first.trained_now and first.path.exists() and len(first.history["loss"]) == 1
    second = models.load_or_train_cxr_model(small, epochs=1, seed=5)
    assert not second.trained_now and second.path == first.path
    x, _ = small.split("test")
    np.testing.assert_allclose(models.predict_p(second.model, x), models.predict_p(first.model, x),
                               atol=1e-6)
    assert not list(first.path.parent.glob(".*partial*"))  # no temporary files left behind
    other = models.load_or_train_cxr_model(small, epochs=1, seed=6)
    assert other.path != first.path  # another seed is another model


def test_training_is_deterministic(small):
    x, y = small.split("train")
    m1, h1, _ = models.train_cxr_model(x, y, epochs=1, seed=11)
    m2, h2, _ = models.train_cxr_model(x, y, epochs=1, seed=11)
    assert h1["loss"] == pytest.approx(h2["loss"], rel=1e-5)
    xt, _ = small.split("test")
    np.testing.assert_allclose(models.predict_p(m1, xt), models.predict_p(m2, xt), atol=1e-5)


def test_training_on_rows_equals_training_on_their_copy(small):
    x, y = small.split("train")
    copied, h1, _ = models.train_cxr_model(x, y, epochs=1, seed=11)
    in_place, h2, _ = models.train_cxr_model(small.images, small.labels, epochs=1, seed=11,
                                             rows=small.train_idx)
    assert h1["loss"] == pytest.approx(h2["loss"], rel=1e-6)
    for a, b in zip(copied.get_weights(), in_place.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_cnn_shape_and_grad_cam_layer():
    model = models.build_cxr_cnn(64)
    assert model.output_shape == (None, 1) and model.get_layer("last_conv").output.shape[1] == 8


def test_the_phantom_is_rendered_once_then_loaded_checked_and_rendered_again_if_wrong(capsys):
    from course_utils import config, phantom

    fresh = phantom.make_phantom_cxr(70, 64, seed=5, marker_strength=0.5)
    first = data.phantom_set(70, 64, seed=5, marker_strength=0.5)
    files = sorted((config.data_dir() / data.PHANTOM_DIR).glob("phantom_70x64_seed5_*.npz"))
    assert len(files) == 1
    loaded = data.phantom_set(70, 64, seed=5, marker_strength=0.5)
    assert capsys.readouterr().out == ""
    for ps in (first, loaded):
        np.testing.assert_array_equal(ps.images, fresh.images)
        np.testing.assert_array_equal(ps.masks.bits, fresh.masks.bits)
        for name in ("labels", "has_marker", "abdomen_gain", "lesion_extent", "site", "border_px"):
            np.testing.assert_array_equal(getattr(ps, name), getattr(fresh, name), err_msg=name)
        assert ps.params == fresh.params and ps.indices is None
    # the loaded set re-renders exactly like the fresh one (its params are the real ones)
    np.testing.assert_array_equal(phantom.remove_marker(loaded, [3, 60]).images,
                                  phantom.remove_marker(fresh, [3, 60]).images)
    # other knobs: another file
    data.phantom_set(70, 64, seed=5)
    assert len(list(files[0].parent.glob("phantom_70x64_seed5_*.npz"))) == 2

    # a stored set whose first images no longer match a fresh rendering is rendered again
    with np.load(files[0]) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["images"] = arrays["images"].copy()
    arrays["images"][1] += 0.01
    np.savez(files[0], **arrays)
    again = data.phantom_set(70, 64, seed=5, marker_strength=0.5)
    assert "differs from a fresh rendering" in capsys.readouterr().out
    np.testing.assert_array_equal(again.images, fresh.images)
    with np.load(files[0]) as z:  # ...and stored again, right
        np.testing.assert_array_equal(z["images"], fresh.images)

    files[0].write_bytes(b"PK\x03\x04 not a whole file")  # damaged: rendered again, replaced
    again = data.phantom_set(70, 64, seed=5, marker_strength=0.5)
    assert "could not be read" in capsys.readouterr().out
    np.testing.assert_array_equal(again.images, fresh.images)
    assert data.phantom_set(70, 64, seed=5, marker_strength=0.5).masks.bits.shape == (70, 64, 64)
    assert capsys.readouterr().out == ""
    assert not list(files[0].parent.glob(".*partial*"))  # no temporary file left behind


def test_a_stored_phantom_is_checked_on_its_first_rows_masks_included_without_unpacking_all(
        capsys, monkeypatch):
    from course_utils import config, phantom

    fresh = phantom.make_phantom_cxr(70, 64, seed=6)
    data.phantom_set(70, 64, seed=6)
    unpack = phantom.PackedMasks.__getitem__

    def only_checked_rows(self, key):  # a whole-set unpack per region cost 2 s per 8,000 images
        assert len(self.bits) <= data.PHANTOM_CHECK_ROWS, "unpacked every stored row to check a few"
        return unpack(self, key)

    monkeypatch.setattr(phantom.PackedMasks, "__getitem__", only_checked_rows)
    loaded = data.phantom_set(70, 64, seed=6)
    assert capsys.readouterr().out == ""  # loaded, not rendered again
    np.testing.assert_array_equal(loaded.masks.bits, fresh.masks.bits)
    monkeypatch.setattr(phantom.PackedMasks, "__getitem__", unpack)
    (path,) = (config.data_dir() / data.PHANTOM_DIR).glob("phantom_70x64_seed6_*.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["mask_bits"] = arrays["mask_bits"].copy()
    arrays["mask_bits"][2, :10, :10] ^= np.uint8(1)  # 100 lung pixels of a checked row
    np.savez(path, **arrays)
    again = data.phantom_set(70, 64, seed=6)
    assert "differs from a fresh rendering" in capsys.readouterr().out
    np.testing.assert_array_equal(again.masks.bits, fresh.masks.bits)


def test_training_rows_visit_every_row_once_per_epoch_in_a_seeded_new_order():
    images = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    labels = np.arange(10) % 2
    rows = np.array([1, 2, 3, 5, 7, 8, 9])
    batches = models.TrainingRows(images, labels, rows, batch_size=3, seed=4)
    assert len(batches) == 3

    def epoch():
        seen = [batches[i] for i in range(len(batches))]
        for x, y in seen:
            assert (np.diff(x.reshape(-1)) > 0).all()  # sorted within a batch
            np.testing.assert_array_equal(y, x.reshape(-1) % 2)  # labels follow their images
        return np.concatenate([x.reshape(-1) for x, _ in seen])

    first = epoch()
    assert sorted(first) == list(rows) and [len(batches[i][0]) for i in range(3)] == [3, 3, 1]
    batches.on_epoch_end()
    second = epoch()
    assert sorted(second) == list(rows) and not np.array_equal(first, second)
    again = models.TrainingRows(images, labels, rows, batch_size=3, seed=4)
    np.testing.assert_array_equal(np.concatenate([again[i][0].reshape(-1) for i in range(3)]),
                                  first)
    with pytest.raises(ValueError, match="non-empty"):
        models.TrainingRows(images, labels, np.array([], int))


def test_training_two_epochs_is_deterministic_and_reads_no_copy_of_the_images(small):
    read = []

    def make_rows(rows):
        read.append(len(rows))
        return small.images[rows]

    lazy = data.RowwiseImages(len(small.labels), small.images.shape[1:], make_rows)
    m1, h1, _ = models.train_cxr_model(lazy, small.labels, epochs=2, seed=11, patience=5,
                                       rows=small.train_idx, progress=False)
    n_fit = len(small.train_idx) - round(0.1 * len(small.train_idx))
    assert max(read) <= max(64, len(small.train_idx) - n_fit)  # one batch, or the validation rows
    assert sum(r for r in read if r <= 64) >= 2 * n_fit  # every training row read in each epoch
    assert len(h1["loss"]) == 2
    m2, h2, _ = models.train_cxr_model(small.images, small.labels, epochs=2, seed=11, patience=5,
                                       rows=small.train_idx, progress=False)
    assert h1["loss"] == pytest.approx(h2["loss"], rel=1e-5)
    xt, _ = small.split("test")
    np.testing.assert_allclose(models.predict_p(m1, xt), models.predict_p(m2, xt), atol=1e-5)


def test_predictions_equal_keras_predict_for_any_size_and_a_lazy_array(small):
    """predict_p / predict_batches: model.predict's numbers, per batch, for 0, 1, 65 rows and a lazy array."""
    cnn = models.build_cxr_cnn(small.image_size, width=4)
    x = small.images[:65]
    expected = cnn.predict(x, batch_size=64, verbose=0).reshape(-1)
    np.testing.assert_array_equal(models.predict_p(cnn, x), expected)
    np.testing.assert_array_equal(models.predict_p(cnn, x[:1]), expected[:1])
    np.testing.assert_array_equal(models.predict_p(cnn, x.astype(np.float64)), expected)
    assert models.predict_p(cnn, x[:0]).shape == (0,)
    lazy = data.RowwiseImages(65, x.shape[1:], lambda rows: x[rows])
    np.testing.assert_array_equal(models.predict_p(cnn, lazy), expected)
    assert models.predict_batches(cnn, x, 7).shape == (65, 1)
