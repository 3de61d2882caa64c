"""Tests for course_utils.memo: results computed once, loaded when model, images and settings match."""
from __future__ import annotations

import numpy as np
import pytest

from course_utils import config, memo, models, perturb


@pytest.fixture(scope="module")
def model():
    return models.build_cxr_cnn(32, seed=1, width=4)


@pytest.fixture(autouse=True)
def fresh_notes(monkeypatch):
    """Every test sees the one-per-function "loaded" note again."""
    monkeypatch.setattr(memo, "_told_loaded", set())


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


def test_maps_and_faithfulness_round_trip_with_positional_arguments(model, images, capsys):
    from course_utils import faithfulness, saliency

    targets = np.array([0, 0, 0, 0])
    occ = memo.cached(saliency.compute, model, images, "occlusion", targets)
    again = memo.cached(saliency.compute, model, images, "occlusion", targets)
    assert "loaded the result" in capsys.readouterr().out
    np.testing.assert_array_equal(again.raw, occ.raw)
    assert (again.method, again.signed) == (occ.method, occ.signed)
    assert occ.settings.keys() == again.settings.keys()
    np.testing.assert_array_equal(again.normalised, occ.normalised)

    maps = occ.raw
    road = memo.cached(faithfulness.road, model, images, maps, targets, fractions=(0.2, 0.6), seed=0)
    files = lambda: sorted((config.data_dir() / memo.RESULTS_DIR).glob("road_*.npz"))  # noqa: E731
    assert len(files()) == 1
    same = memo.cached(faithfulness.road, model, images, maps * np.float32(1 + 1e-7), targets,
                       fractions=(0.2, 0.6), seed=0)  # float rounding of a map: the same map
    np.testing.assert_array_equal(same.auc, road.auc)
    assert isinstance(same.settings, dict) and len(files()) == 1
    assert "road: loaded" in capsys.readouterr().out
    stamps = lambda: {p.name: p.stat().st_mtime_ns for p in files()}  # noqa: E731
    other = memo.cached(faithfulness.road, model, images, maps[:, ::-1].copy(), targets,
                        fractions=(0.2, 0.6), seed=0)  # another map of the same shape: computed
    assert len(files()) == 2 and other.auc.shape == road.auc.shape
    before = stamps()
    first = memo.cached(faithfulness.road, model, images, maps, targets, fractions=(0.2, 0.6), seed=0)
    again = memo.cached(faithfulness.road, model, images, maps[:, ::-1].copy(), targets,
                        fractions=(0.2, 0.6), seed=0)
    assert stamps() == before  # both results kept side by side, both loaded (nothing rewritten)
    np.testing.assert_array_equal(first.auc, road.auc)
    np.testing.assert_array_equal(again.auc, other.auc)
    assert capsys.readouterr().out == ""  # one note per function, and it came already
    memo.cached(faithfulness.road, model, images, maps, np.array([0, 0, 0, 1]),
                fractions=(0.2, 0.6), seed=0)  # other targets: computed, another file
    assert len(files()) == 3


def test_a_cached_explainer_computes_once_and_an_uncached_one_never_stores(model, images, capsys):
    from course_utils import saliency

    files = lambda: sorted((config.data_dir() / memo.RESULTS_DIR).glob("compute_*.npz"))  # noqa: E731
    plain = saliency.explainer(model, "smoothgrad", smooth_samples=3)
    kept = saliency.explainer(model, "smoothgrad", smooth_samples=3, cache=True)
    reference = plain(images, 1)
    assert files() == []  # caching is opt-in
    first = kept(images, 1)
    assert len(files()) == 1 and capsys.readouterr().out == ""
    np.testing.assert_array_equal(first, reference)  # the same maps, computed the same way
    again = kept(images, 1)
    assert "compute: loaded" in capsys.readouterr().out
    np.testing.assert_array_equal(again, reference)
    kept(images, 0)  # another target: computed and stored beside it
    saliency.explainer(model, "smoothgrad", smooth_samples=4, cache=True)(images, 1)  # other setting
    assert len(files()) == 3
    # cache="slow": only the methods with many model passes per image keep their maps
    assert saliency.SLOW_METHODS == {"smoothgrad", "integrated_gradients", "scorecam", "occlusion", "shap"}
    both = {m: saliency.explainer(model, m, cache="slow") for m in ("vanilla", "integrated_gradients")}
    assert not both["vanilla"].cache and both["integrated_gradients"].cache
    both["vanilla"](images, 1)
    both["integrated_gradients"](images, 1)
    assert len(files()) == 4
    with pytest.raises(ValueError, match="cache must be"):
        saliency.explainer(model, "vanilla", cache="yes")


def test_the_code_digest_ignores_comments_and_docstrings_but_not_code(tmp_path):
    path = tmp_path / "mod.py"

    def digest(text):
        path.write_text(text)
        return memo.source_digest([path])

    base = digest('"""Module."""\n\ndef f(x):\n    """Doc."""\n    return x + 1  # one\n')
    reworded = '"""Module, reworded."""\n\ndef f(x):\n    """Other doc."""\n\n    return x + 1  # two\n'
    assert digest(reworded) == base
    assert digest('def f(x):\n    return x + 1\n') == base  # docstrings gone
    assert digest('"""Module."""\n\ndef f(x):\n    """Doc."""\n    return x + 2\n') != base
    assert digest('"""Module."""\n\ndef f(y):\n    """Doc."""\n    return y + 1\n') != base
    assert digest('def f(x):\n    """Only a docstring."""\n') == digest('def f(x):\n    pass\n')
    assert len(memo.code_digest()) == 16


def test_inventory_sorts_results_and_prune_removes_only_those_that_cannot_load(model, images, monkeypatch):
    folder = config.data_dir() / memo.RESULTS_DIR
    fn = Counting()
    memo.cached(fn, model, images)  # current
    with monkeypatch.context() as m:
        m.setattr(memo, "code_digest", lambda: "an older course")
        memo.cached(fn, model, images[:2])  # stale: another code version
    with monkeypatch.context() as m:
        m.setattr(memo, "_stack", lambda: {"tensorflow": "0.0", "keras": "0.0"})
        memo.cached(fn, model, images[:3])  # stale: another TF/Keras
    damaged = folder / "counting_attack_0000_0000.npz"
    damaged.write_bytes(b"not an npz")
    inv = memo.inventory(folder)
    assert (len(inv.current), len(inv.stale), inv.unreadable) == (1, 2, [damaged])
    assert inv.size(inv.current) == inv.current[0].stat().st_size > 0
    files, nbytes = memo.prune(folder)
    assert files == 3 and nbytes > 0
    assert sorted(folder.glob("*.npz")) == inv.current
    memo.cached(fn, model, images)  # the current result still loads
    assert fn.calls == 3
    assert memo.inventory(folder / "nothing-here") == memo.Inventory([], [], [])


def test_prune_command_lists_then_removes_only_results_that_cannot_load(model, images, monkeypatch,
                                                                      capsys):
    from course_utils import __main__ as cli

    folder = config.data_dir() / memo.RESULTS_DIR
    fn = Counting()
    assert cli.main(["prune"]) == 0 and "nothing to remove" in capsys.readouterr().out
    memo.cached(fn, model, images)  # current
    with monkeypatch.context() as m:
        m.setattr(memo, "code_digest", lambda: "an older course")
        memo.cached(fn, model, images[:2])  # stale
    assert cli.main(["doctor"]) == 0
    assert "1 (0 MB) from another version" in capsys.readouterr().out
    assert cli.main(["prune", "--dry-run"]) == 0
    assert "would remove 1 cached result(s)" in capsys.readouterr().out
    assert len(list(folder.glob("*.npz"))) == 2  # a dry run deletes nothing
    assert cli.main(["prune"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 cached result(s)" in out and "1 that load are kept" in out
    assert len(list(folder.glob("*.npz"))) == 1
    memo.cached(fn, model, images)
    assert fn.calls == 2  # the current result still loads


def test_model_digest_hashes_layer_types_and_every_weights_bytes_and_sees_a_changed_weight(model):
    import hashlib

    h = hashlib.sha256(",".join(type(layer).__name__ for layer in model.layers).encode())
    for w in model.get_weights():  # the reference: a copy of each array's bytes
        h.update(f"{w.dtype}{w.shape}".encode())
        h.update(w.tobytes())
    assert memo.model_digest(model) == h.hexdigest()[:16]
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    assert memo.model_digest(clone) == memo.model_digest(model)
    weights = clone.get_weights()
    weights[-1] = weights[-1] + np.float32(1e-6)  # one bias, a little
    clone.set_weights(weights)
    assert memo.model_digest(clone) != memo.model_digest(model)
