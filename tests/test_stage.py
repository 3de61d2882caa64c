"""Staging a workshop folder: models trained once, found again after a copy, verified, explained."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
from fake_kaggle import build as build_fake_dataset

from course_utils import config, data, models, saliency, stage

# what the staging notebook trains: small enough for a unit test, the same call a learner makes
TRAIN = "data.load_course_cxr(image_size=64, seed=4, n=160)"


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from course_utils import data, models\n"
        f"trained = models.load_or_train_cxr_model({TRAIN}, epochs=1)\n"
        "print('trained now' if trained.trained_now else 'loaded')")]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A folder staged (fast mode, no downloads) by running one small training notebook."""
    base = tmp_path_factory.mktemp("stage")
    folder = base / "workshop-data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_OFFLINE", "1")
        mp.setenv("XDG_CACHE_HOME", str(base / "user-cache"))
        code = stage.stage(folder, fast=True, fetch=False, notebooks=[_notebook(base / "02_x.ipynb")],
                           timeout=600)
    return code, folder


def test_staging_trains_into_the_folder_and_writes_a_manifest(staged):
    code, folder = staged
    assert code == 0
    manifest = stage.read_manifest(folder)
    assert manifest["fast"] is True and manifest["source"] == "phantom"
    assert manifest["notebooks"]["02_x.ipynb"]["ok"]
    assert len(manifest["models"]) == 1 and manifest["models"][0]["settings"]["epochs"] == 1
    assert (folder / "staged" / "02_x.html").is_file()  # the reference output is kept
    assert stage.check(folder, load=True)[0] == []


def test_a_copied_folder_loads_instead_of_training(staged, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "elsewhere" / "copied"
    shutil.copytree(staged[1], copy)
    monkeypatch.setenv("COURSE_DATA_DIR", str(copy))
    monkeypatch.setenv("COURSE_FAST", "1")
    trained = models.load_or_train_cxr_model(eval(TRAIN), epochs=1)  # noqa: S307 - the test's own text
    assert not trained.trained_now and trained.path.parent == copy / "models"
    assert stage.check(copy)[0] == []


def test_a_mode_mismatch_is_explained_before_training(staged, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(staged[1]))
    monkeypatch.setenv("COURSE_FAST", "0")  # the folder was staged in fast mode
    settings = dict(stage.read_manifest(staged[1])["models"][0]["settings"], epochs=20)
    why = stage.explain_miss(settings)
    assert "staged in fast mode" in why and "full mode" in why and "COURSE_FAST" in why


def test_a_missing_model_names_the_closest_staged_one(staged, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DATA_DIR", str(staged[1]))
    monkeypatch.setenv("COURSE_FAST", "1")
    settings = dict(stage.read_manifest(staged[1])["models"][0]["settings"], seed=99)
    why = stage.explain_miss(settings)
    assert "seed: asked 99, staged" in why and "epochs" not in why


def test_no_manifest_no_explanation_and_check_says_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "plain"))
    assert stage.explain_miss({"seed": 1}) is None
    problems, _ = stage.check(tmp_path / "plain")
    assert problems and "course_utils stage" in problems[0]


def test_check_finds_a_damaged_or_missing_model(staged, tmp_path):
    copy = tmp_path / "damaged"
    shutil.copytree(staged[1], copy)
    model = next((copy / "models").glob("*.keras"))
    with open(model, "ab") as fh:
        fh.write(b"x")
    assert any("differs from the staged copy" in p for p in stage.check(copy)[0])
    model.unlink()
    assert any("missing model" in p for p in stage.check(copy)[0])


def test_check_reports_another_software_stack(staged, tmp_path):
    copy = tmp_path / "older"
    shutil.copytree(staged[1], copy)
    manifest = stage.read_manifest(copy)
    manifest["stack"]["keras"] = "3.0.0"
    stage.write_manifest(copy, manifest)
    problems, notes = stage.check(copy)
    assert problems == [] and any("keras 3.0.0 there" in n for n in notes)
    assert not list((copy / "staged").glob(".*partial"))  # written via a temporary file


def test_staged_notebooks_are_learners_then_solutions(tmp_path):
    for rel in ("notebooks/03_b.ipynb", "notebooks/02_a.ipynb", "notebooks/01_x.ipynb",
                "notebooks/00_s.ipynb", "notebooks/solutions/02_a_solutions.ipynb"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    names = [p.name for p in stage.staged_notebooks(tmp_path)]
    assert names == ["01_x.ipynb", "02_a.ipynb", "03_b.ipynb", "02_a_solutions.ipynb"]


def test_real_data_key_survives_a_copy_to_another_path(tmp_path, monkeypatch):
    first = build_fake_dataset(tmp_path / "a", n_covid=12, n_normal=12, size=64)
    second = tmp_path / "b" / "deeper" / first.name
    shutil.copytree(first, second)
    monkeypatch.setenv("COURSE_CXR_DIR", str(first))
    one = data.load_course_cxr(image_size=32)
    monkeypatch.setenv("COURSE_CXR_DIR", str(second.parent))  # the parent folder works too
    two = data.load_course_cxr(image_size=32)
    assert one.fingerprint == two.fingerprint
    victim = next((second / "COVID" / "images").iterdir())
    victim.write_bytes(victim.read_bytes() + b"\0")  # another file: another data set
    monkeypatch.setenv("COURSE_CXR_DIR", str(second))
    assert data.load_course_cxr(image_size=32).fingerprint != one.fingerprint


def test_manifest_is_json_with_the_stack(staged):
    manifest = json.loads((staged[1] / "staged" / "manifest.json").read_text())
    assert {"python", "tensorflow", "keras", "numpy"} <= set(manifest["stack"])
    assert config.SEED is not None


def test_training_in_a_staged_folder_says_why_first(staged, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "class"
    shutil.copytree(staged[1], copy)
    monkeypatch.setenv("COURSE_DATA_DIR", str(copy))
    monkeypatch.setenv("COURSE_FAST", "1")
    trained = models.load_or_train_cxr_model(eval(TRAIN), epochs=1, seed=8)  # noqa: S307
    out = capsys.readouterr().out
    assert trained.trained_now and "has no model for this request" in out and "seed: asked 8" in out


def test_doctor_and_stage_check_report_a_staged_folder(staged, monkeypatch, capsys):
    from course_utils import __main__ as cli

    monkeypatch.setenv("COURSE_DATA_DIR", str(staged[1]))
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "Staged models:" in out and "fast mode on phantom data: 1 model" in out
    assert cli.main(["stage", "--check"]) == 0 and "ready" in capsys.readouterr().out
    monkeypatch.setenv("COURSE_DATA_DIR", str(staged[1].parent / "never-staged"))
    assert cli.main(["stage", "--check"]) == 1
    assert "was not staged" in capsys.readouterr().out


def test_check_counts_cached_results_and_says_which_will_not_load(staged, tmp_path, monkeypatch):
    from course_utils import memo

    copy = tmp_path / "with-results"
    shutil.copytree(staged[1], copy)
    monkeypatch.setenv("COURSE_DATA_DIR", str(copy))
    model, x = models.build_cxr_cnn(32, seed=1, width=4), np.zeros((2, 32, 32, 1), np.float32)
    saliency.explainer(model, "smoothgrad", smooth_samples=2, cache=True)(x, 1)
    problems, notes = stage.check(copy)
    assert problems == [] and any("1 cached results" in n and "will not load" not in n for n in notes)
    assert any(n.startswith("phantom/: 1 rendered phantom set") for n in notes)
    monkeypatch.setattr(memo, "code_digest", lambda: "a later course")
    problems, notes = stage.check(copy)
    assert problems == [] and any("0 cached results" in n and "1 (" in n and "will not load" in n
                                  for n in notes)


def test_a_second_staging_of_the_same_folder_stops_at_once_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from filelock import FileLock

    monkeypatch.setenv("COURSE_OFFLINE", "1")
    folder = tmp_path / "workshop"
    (folder / stage.STAGED_DIR).mkdir(parents=True)
    with FileLock(str(folder / stage.STAGED_DIR / stage.LOCK_NAME)):  # another staging holds it
        code = stage.stage(folder, fast=True, fetch=False, notebooks=[], timeout=60)
    err = capsys.readouterr().err
    assert code == 2 and "Another `python -m course_utils stage` is staging" in err and "--check" in err
    assert stage.read_manifest(folder) is None
    # once it is done, staging proceeds (no notebooks here: a manifest with no models)
    assert stage.stage(folder, fast=True, fetch=False, notebooks=[], timeout=60) == 0
    assert stage.read_manifest(folder)["models"] == []
