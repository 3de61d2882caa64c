"""Tests for course_utils.memo: results computed once, loaded when model, images and settings match."""
from __future__ import annotations

import numpy as np
import pytest

from course_utils import config, memo, models, perturb


@pytest.fixture(scope="module")
def model():
    return models.build_cxr_cnn(32, seed=1, width=4)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((4, 32, 32, 1), dtype=np.float32)


class Counting:
    """A stand-in attack that counts its calls and returns a real AttackResult."""

    def __init__(self):
        self.calls = 0
        self.__name__ = self.__qualname__ = "counting_attack"
        self.__module__ = __name__

    def __call__(self, model, x, *, eps=0.01, beta=(10.0, 100.0)):
        self.calls += 1
        n = len(x)
        return perturb.AttackResult(
            method="counting", eps=eps, x_adv=np.clip(x + eps, 0, 1), p_before=np.full(n, 0.2, np.float32),
            p_after=np.full(n, 0.7, np.float32), linf=np.full(n, eps, np.float32),
            loss_history=np.zeros((3, n), np.float32), seconds=1.5, params={"beta": beta, "steps": 3})


def test_a_real_attack_is_computed_once_and_loaded_equal(model, images, capsys):
    first = memo.cached(perturb.prediction_attack, model, images, eps=0.02, steps=3)
    files = list((config.data_dir() / memo.RESULTS_DIR).glob("prediction_attack_*.npz"))
    assert len(files) == 1
    again = memo.cached(perturb.prediction_attack, model, images, eps=0.02, steps=3)
    assert "loaded the result computed" in capsys.readouterr().out
    for name in ("x_adv", "p_before", "p_after", "linf", "loss_history"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    assert (again.method, again.eps, again.seconds) == (first.method, first.eps, first.seconds)
    assert again.params == first.params and isinstance(again.params["beta"], tuple)
    assert np.array_equal(again.flipped, first.flipped)


def test_any_change_of_settings_model_or_images_computes_again(model, images):
    fn = Counting()
    memo.cached(fn, model, images, eps=0.01)
    memo.cached(fn, model, images, eps=0.01)
    memo.cached(fn, model, images + 1e-7, eps=0.01)  # float rounding between CPUs: same images
    assert fn.calls == 1
    memo.cached(fn, model, images, eps=0.02)  # another setting
    assert fn.calls == 2
    memo.cached(fn, model, images[:3], eps=0.01)  # other images (shape)
    assert fn.calls == 3
    changed = images.copy()  # other images, same shape: the pixel sample catches them
    changed.reshape(-1)[:: max(1, images.size // 100)] += 0.01
    memo.cached(fn, model, changed, eps=0.01)
    assert fn.calls == 4
    retrained = models.build_cxr_cnn(32, seed=2, width=4)  # same architecture, other weights
    memo.cached(fn, retrained, images, eps=0.01)
    assert fn.calls == 5


def test_other_code_or_stack_computes_again(model, images, monkeypatch):
    fn = Counting()
    memo.cached(fn, model, images)
    monkeypatch.setattr(memo, "code_digest", lambda: "edited")
    memo.cached(fn, model, images)
    assert fn.calls == 2
    monkeypatch.setattr(memo, "_stack", lambda: {"tensorflow": "0.0", "keras": "0.0"})
    memo.cached(fn, model, images)
    assert fn.calls == 3


def test_a_damaged_file_is_computed_again_and_replaced(model, images, capsys):
    fn = Counting()
    memo.cached(fn, model, images)
    (path,) = (config.data_dir() / memo.RESULTS_DIR).glob("counting_attack_*.npz")
    path.write_bytes(path.read_bytes()[:200])
    result = memo.cached(fn, model, images)
    assert fn.calls == 2 and "could not be read" in capsys.readouterr().out
    assert result.x_adv.shape == images.shape
    memo.cached(fn, model, images)  # the rewritten file is whole
    assert fn.calls == 2
    assert not list(path.parent.glob(".*partial*"))  # no temporary file left behind


def test_a_failed_write_leaves_no_file_and_still_returns(model, images, monkeypatch, capsys):
    fn = Counting()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    result = memo.cached(fn, model, images)
    assert result.method == "counting" and "could not be cached" in capsys.readouterr().out
    assert not list((config.data_dir() / memo.RESULTS_DIR).iterdir())


def test_a_read_only_shared_folder_is_read_and_new_results_go_to_the_user_cache(
        model, images, monkeypatch):
    fn = Counting()
    memo.cached(fn, model, images)  # staged by the instructor
    shared = config.data_dir()
    monkeypatch.setattr(config, "is_writable", lambda folder: shared not in (folder, *folder.parents))
    memo.cached(fn, model, images)
    assert fn.calls == 1  # read from the shared folder
    memo.cached(fn, model, images, eps=0.05)
    assert fn.calls == 2
    assert list((config.user_cache_dir() / memo.RESULTS_DIR).glob("counting_attack_*.npz"))


def test_a_foreign_class_name_in_a_file_is_refused(model, images, capsys):
    fn = Counting()
    memo.cached(fn, model, images)
    (path,) = (config.data_dir() / memo.RESULTS_DIR).glob("counting_attack_*.npz")
    import json
    with np.load(path) as z:
        parts = {k: z[k] for k in z.files}
    meta = json.loads(str(parts["meta"]))
    meta["class"] = "os.system"
    parts["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as fh:
        np.savez(fh, **parts)
    memo.cached(fn, model, images)
    assert fn.calls == 2 and "not a course_utils result" in capsys.readouterr().out


def test_keys_refuse_objects_they_cannot_name(model, images):
    with pytest.raises(TypeError, match="cache key"):
        memo.cached(Counting(), model, images, eps=object())
