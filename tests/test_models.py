"""VGG16 loading: real weights from a local file or the Keras cache, random offline fallback."""
from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from course_utils import assets, models


@pytest.fixture(scope="module")
def vgg16_weights_file(tmp_path_factory):
    """A VGG16 weights file in the same legacy HDF5 layout as Keras' download (seeded weights)."""
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(123)
    model = keras.applications.VGG16(weights=None)
    path = tmp_path_factory.mktemp("weights") / models.VGG16_FILENAME
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path, model.get_layer("fc2").get_weights()[0][:3, :3].copy()


def _fc2(model):
    return model.get_layer("fc2").get_weights()[0][:3, :3]


def test_offline_without_weights_builds_seeded_random_vgg16_and_says_so():
    bundle = models.load_vgg16()
    assert not bundle.trained and bundle.source.startswith("random")
    assert "UNTRAINED" in bundle.banner() and "prefetch" in bundle.banner()
    assert any("offline" in n for n in bundle.notes)
    again = models.load_vgg16()
    np.testing.assert_array_equal(_fc2(bundle.model), _fc2(again.model))  # deterministic


def test_explicit_local_file_is_loaded(vgg16_weights_file):
    path, expected = vgg16_weights_file
    bundle = models.load_vgg16(path)
    assert bundle.trained and bundle.source == str(path) and bundle.banner() == ""
    np.testing.assert_allclose(_fc2(bundle.model), expected)


def test_keras_cache_is_used_when_its_checksum_matches(vgg16_weights_file, tmp_path, monkeypatch):
    path, expected = vgg16_weights_file
    cache = models.keras_cache_dir()
    cache.mkdir(parents=True)
    (cache / models.VGG16_FILENAME).symlink_to(path)
    real = assets.get("vgg16_weights")
    monkeypatch.setitem(assets.MANIFEST, "vgg16_weights",
                        assets.Asset(**{**real.__dict__, "md5": assets.file_digest(path, "md5")}))
    bundle = models.load_vgg16()
    assert bundle.trained and bundle.source == str(cache / models.VGG16_FILENAME)
    np.testing.assert_allclose(_fc2(bundle.model), expected)


def test_keras_cache_with_wrong_checksum_is_ignored(vgg16_weights_file):
    path, _ = vgg16_weights_file
    cache = models.keras_cache_dir()
    cache.mkdir(parents=True)
    (cache / models.VGG16_FILENAME).symlink_to(path)  # our test file is not the real one
    bundle = models.load_vgg16()
    assert not bundle.trained
    assert any("md5" in n and "ignored" in n for n in bundle.notes)


def test_bad_weight_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        models.load_vgg16(tmp_path / "missing.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ValueError, match="could not load VGG16 weights from .*junk.h5"):
        models.load_vgg16(junk)


def test_imagenet_names_work_offline_and_match_keras_indices():
    classes = models.imagenet_classes()
    assert len(classes) == 1000 and classes[0] == ("n01440764", "tench")
    assert models.class_name(895) == "warplane" and models.class_name(538) == "dome"
    assert models.class_name(207) == "golden retriever" and models.class_name(157) == "papillon"


def test_top_k_orders_by_probability():
    probs = np.zeros((2, 1000), np.float32)
    probs[0, [895, 538, 3]] = [0.5, 0.3, 0.2]
    probs[1, 207] = 1.0
    top = models.top_k(probs, k=3)
    assert [t[0] for t in top[0]] == [895, 538, 3]
    assert top[0][0][1] == "warplane" and top[0][0][2] == pytest.approx(0.5)
    assert top[1][0][:2] == (207, "golden retriever")


def test_preprocess_does_not_modify_the_input():
    pixels = np.full((1, 224, 224, 3), 100.0, np.float32)
    out = models.preprocess_vgg16(pixels)
    assert (pixels == 100.0).all()
    np.testing.assert_allclose(out[0, 0, 0], [100 - 103.939, 100 - 116.779, 100 - 123.68], atol=1e-3)
