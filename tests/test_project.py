"""Project hygiene: pins agree, notebooks are stripped and numbered, the CLI works offline."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from course_utils import __main__ as cli
from course_utils import config, environment, exercises, models, tasks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))
COLAB = ROOT / "tests" / "colab" / "colab-runtime-2026-08.txt"  # copy of shared/reference/


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(project: dict) -> list[str]:
    """Runtime requirements and every extra's, de-duplicated, normalised."""
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += [r for r in extra if r not in reqs]
    return [str(Requirement(r)) for r in reqs]


def test_dependencies_are_ranges_that_admit_colabs_stack():
    """Compatible ranges (no exact pins), lower bounds no higher than Colab's preinstalled versions."""
    project = _project()
    assert project["requires-python"] == ">=3.11,<3.14"
    colab = dict(line.split("==") for line in COLAB.read_text().splitlines()
                 if "==" in line and not line.startswith("#"))
    colab = {canonicalize_name(k): v for k, v in colab.items()}
    for text in _requirements(project):
        req = Requirement(text)
        assert not any(s.operator == "==" for s in req.specifier), f"exact pin: {text}"
        name = "tensorflow" if req.name == "tensorflow-cpu" else canonicalize_name(req.name)
        if name in colab and name not in ("ruff",):
            assert req.specifier.contains(colab[name], prereleases=True), (
                f"{text} excludes Colab's {name}=={colab[name]}")
    runtime = {Requirement(r).name for r in project["dependencies"]}
    assert not runtime & {"pytest", "nbval", "jupyterlab", "pyyaml", "ruff"}, "tools are extras"
    assert "keras-hub" not in runtime


def test_environment_yml_mirrors_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_section[-1] == "-e ."
    assert sorted(str(Requirement(r)) for r in pip_section[:-1]) == sorted(_requirements(_project()))
    assert any(str(d).startswith("python=3.1") for d in env["dependencies"])


def _lock() -> dict[str, list[tuple[str, str]]]:
    """name -> [(version, marker)] from requirements/lock.txt; checks every entry is hashed."""
    text = (ROOT / "requirements" / "lock.txt").read_text()
    entries: dict[str, list[tuple[str, str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text.strip()):
        head = block.splitlines()[0]
        m = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)(?: ; (.*?))? \\$", head)
        assert m, f"lock line is not `name==version [; marker] \\`: {head!r}"
        assert "--hash=sha256:" in block, f"unhashed lock entry: {head}"
        entries.setdefault(canonicalize_name(m.group(1)), []).append((m.group(2), m.group(3) or ""))
    return entries


def test_lock_file_is_hashed_and_satisfies_every_direct_requirement():
    lock = _lock()
    for text in _requirements(_project()):
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is missing from requirements/lock.txt (run `make lock`)"
        for version, _ in lock[name]:
            assert req.specifier.contains(version, prereleases=True), f"lock {name}=={version} vs {text}"
    assert "keras-hub" not in lock and "tensorflow-text" not in lock


def test_imagenet_class_index_is_the_table_keras_uses():
    data = (ROOT / "course_utils" / "imagenet_class_index.json").read_bytes()
    assert hashlib.md5(data).hexdigest() == models.IMAGENET_INDEX_MD5
    classes = models.imagenet_classes()
    assert len(classes) == 1000 and classes[895] == ("n04552348", "warplane")
    assert models.class_name(157) == "papillon"


def test_repository_url_has_one_source():
    """pyproject's [project.urls] is the one place; notebooks' Colab cells and badges follow it."""
    url = _project()["urls"]["Repository"]
    assert url.startswith("https://github.com/") and url.count("/") == 4
    for path in NOTEBOOKS + SOLUTIONS:
        cells = json.loads(path.read_text())["cells"]
        colab = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
        assert "google.colab" in colab and f"git+{url}" in colab, path.name
        assert "--no-deps" in colab and "install --here" in colab, path.name
    readme = (ROOT / "README.md").read_text()
    slug = url.removeprefix("https://github.com/")
    for path in NOTEBOOKS:
        assert f"colab.research.google.com/github/{slug}/blob/main/notebooks/{path.name}" in readme
    named = re.findall(r"(?:git\+https://github\.com/|colab\.research\.google\.com/github/)"
                       r"([\w-]+/[\w-]+)", readme + "".join(p.read_text() for p in NOTEBOOKS + SOLUTIONS))
    assert set(named) == {slug}, f"the course is named by another repository URL: {set(named)}"


def test_repository_conventions():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert _project()["license"] == "MIT" and _project()["license-files"] == ["LICENSE"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"].startswith("1.2") and citation["license"] == "MIT"
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    for needle in ("python -m course_utils test", "make lock", "outputs"):
        assert needle in contributing
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "test.yml").read_text())
    job = next(iter(workflow["jobs"].values()))
    assert set(job["strategy"]["matrix"]["python-version"]) == {"3.11", "3.13"}
    assert any("python -m course_utils test" in str(s.get("run", "")) for s in job["steps"])


def test_notebooks_are_numbered_and_committed_without_outputs():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))]
    assert SOLUTIONS == tasks.solution_notebooks(ROOT)  # nothing else in notebooks/solutions/
    for path in NOTEBOOKS + SOLUTIONS:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, path.name


def test_notebooks_open_with_objectives_and_the_standard_first_cell():
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        intro = "".join(cells[0]["source"]).lower()
        assert "learning objectives" in intro or "what this course is" in intro, path.name
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        assert "google.colab" in code[0], path.name  # the Colab install cell comes first...
        assert "course_utils.setup(" in code[1], path.name  # ...then the standard first cell
        assert "## references" in "".join("".join(c["source"]) for c in cells).lower(), path.name


def test_fast_mode_knob(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    assert config.fast_mode() and config.pick(full=20, fast=3) == 3
    monkeypatch.setenv("COURSE_FAST", "0")
    assert not config.fast_mode() and config.pick(full=20, fast=3) == 20


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "elsewhere"))
    assert config.data_dir() == tmp_path / "elsewhere" and (tmp_path / "elsewhere").is_dir()


def test_doctor_reports_versions_and_assets(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "tensorflow 2." in out and "keras 3." in out and "tf-keras-vis 0.8.7" in out
    assert "network reachable: no" in out  # COURSE_OFFLINE=1 in tests
    assert re.search(r"\[NO \] vgg16_weights", out) and "prefetch" in out


def test_prefetch_offline_fails_cleanly_with_reasons(capsys, monkeypatch):
    from course_utils import assets

    monkeypatch.delenv("COURSE_OFFLINE")  # prefetch refuses to run offline
    monkeypatch.setattr(assets, "prefetch", lambda names=None, progress=True: {
        "drone": "asset 'drone' is not cached and could not be downloaded: refused",
        "covid_radiography": "manual download (see README 'Real data')"})
    assert cli.main(["prefetch"]) == 1
    out = capsys.readouterr().out
    assert "drone" in out and "refused" in out and "1 asset(s) could not be fetched" in out


def test_environment_summary_is_complete():
    info = environment.summary(check_network=False)
    assert info["online"] is None and info["devices"] and info["packages"]["keras"].startswith("3.")
    assert "Fast mode" in environment.format_summary(info)
    fast = environment.format_summary(info | {"fast_mode": True})
    slow = environment.format_summary(info | {"fast_mode": False})
    assert environment.FAST_MODE_NOTE in fast and environment.FAST_MODE_NOTE not in slow


def test_cli_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "course_utils", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "prefetch" in out.stdout and "doctor" in out.stdout


@pytest.mark.parametrize("target", ["test", "course", "lab"])
def test_makefile_and_entry_point_have_the_readme_commands(target):
    assert re.search(rf"^([\w-]+ )*{target}( [\w-]+)*:", (ROOT / "Makefile").read_text(), re.M)
    readme = (ROOT / "README.md").read_text()
    assert f"make {target}" in readme
    if target != "lab":
        assert f"python -m course_utils {target}" in readme
    assert target in tasks.TASKS


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "tests/colab/check.sh" in ci
    assert "$(PYTHON) -m course_utils" in (ROOT / "Makefile").read_text()


@pytest.mark.parametrize("script", ["run_notebooks.py", "calibrate_phantom.py", "staging_profile.py",
                                    "kernels.py"])
def test_benchmark_scripts_start(script):
    """Their argument parsers build (defaults are evaluated) and --help exits cleanly."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, str(root / "benchmarks" / script), "--help"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout


def test_benchmark_section_table_sums_the_sections_cells_per_mode():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "benchmarks" / "run_notebooks.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cell = lambda i, s, peak: {"id": i, "seconds": s, "peak_gb": peak}  # noqa: E731
    rows = [{"notebook": "03_saliency_pitfalls.ipynb", "mode": "fast", "seconds": 40.0,
             "cells": [cell("faith03-01", 6.0, 1.5), cell("faith03-02", 4.0, 2.5), cell("cell-24", 9.0, 3.0),
                       cell("sites03-01", 2.0, 1.0)]},
            {"notebook": "03_saliency_pitfalls_solutions.ipynb", "mode": "fast", "seconds": 5.0,
             "cells": [cell("faith03-01", 99.0, 9.0)]}]
    table = "\n".join(bench._section_lines(rows))
    assert "| 03 faithfulness: occlusion, SHAP, deletion/insertion, ROAD | 10.0 (25%), 2.50 |" in table
    assert "| 03 site shortcut (two simulated sites) | 2.0 (5%), 1.00 |" in table
    assert "| 04 sanity check of occlusion and SHAP | - |" in table


def test_benchmark_speed_canary_times_its_fixed_workload():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "benchmarks" / "run_notebooks.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    one, three = bench.speed_canary(repeat=1), bench.speed_canary(repeat=3)
    assert 0 < one < 60 and 0 < three < 60  # seconds of one pass (24 matrix products and a sort)


def test_kernel_benchmark_merge_keeps_the_skipped_parts_rows_with_their_date():
    import importlib.util

    spec = importlib.util.spec_from_file_location("kernels", ROOT / "benchmarks" / "kernels.py")
    kernels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernels)
    r = lambda model, kind, name: {"model": model, "kind": kind, "name": name}  # noqa: E731
    previous = {"header": {"date": "2026-12-03 14:00 UTC"}, "phantom": {"seconds": 19.0},
                "rows": [r("VGG16", "method", "vanilla"), r("CXR CNN", "attack", "fgsm"),
                         r("CXR CNN", "check", "pgd, random_start=False"), r("CXR CNN", "method", "gradcam")]}
    now = {"rows": [r("CXR CNN", "attack", "fgsm"), r("CXR CNN", "check", "prediction_attack, 5 step(s)")]}
    kernels.merge_skipped(now, previous, ["cxr", "vgg16", "phantom"])
    assert [(x["name"], x.get("measured")) for x in now["rows"]] == [
        ("gradcam", "2026-12-03 14:00 UTC"), ("fgsm", None), ("prediction_attack, 5 step(s)", None),
        ("vanilla", "2026-12-03 14:00 UTC")]
    assert now["phantom"] == {"seconds": 19.0, "measured": "2026-12-03 14:00 UTC"}


def _kernels():
    import importlib.util

    spec = importlib.util.spec_from_file_location("kernels", ROOT / "benchmarks" / "kernels.py")
    kernels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernels)
    return kernels


def test_kernel_benchmark_merge_with_methods_keeps_the_other_methods_rows():
    kernels = _kernels()
    r = lambda model, kind, name: {"model": model, "kind": kind, "name": name}  # noqa: E731
    previous = {"header": {"date": "2026-12-03 14:00 UTC"},
                "rows": [r("CXR CNN", "method", "occlusion"), r("CXR CNN", "attack", "fgsm"),
                         r("VGG16", "method", "vanilla"), r("VGG16", "method", "occlusion"),
                         r("VGG16", "check", "smoothgrad, smooth_noise=0"),
                         r("VGG16", "bare", "bare (eager)")]}
    now = {"header": {}, "rows": [r("VGG16", "method", "occlusion")]}
    kernels.merge_skipped(now, previous, ["cxr", "attacks", "phantom"], ["occlusion"])
    assert [(x["model"], x["name"], x.get("measured")) for x in now["rows"]] == [
        ("CXR CNN", "occlusion", "2026-12-03 14:00 UTC"), ("CXR CNN", "fgsm", "2026-12-03 14:00 UTC"),
        ("VGG16", "vanilla", "2026-12-03 14:00 UTC"),
        ("VGG16", "smoothgrad, smooth_noise=0", "2026-12-03 14:00 UTC"),
        ("VGG16", "bare (eager)", "2026-12-03 14:00 UTC"), ("VGG16", "occlusion", None)]


def test_kernel_benchmark_cancel_verdict_measures_occlusion_against_the_logits():
    kernels = _kernels()
    diff = {"max_abs": 1.1e-6, "rel": 1.8e-5, "share_differing": 0.25}
    equal, note = kernels.verdict_cancel(diff, logit_scale=0.5, logits_rel=3e-6)
    assert equal == "cancel" and equal in kernels.PASSING and "logit" in note
    assert kernels.verdict_cancel(diff, logit_scale=0.05, logits_rel=3e-6) is None  # 1.1e-6 > 1e-5 x 0.05


def test_staging_profile_reads_cell_timings_of_executed_notebooks(tmp_path):
    import importlib.util

    import nbformat

    path = ROOT / "benchmarks" / "staging_profile.py"
    spec = importlib.util.spec_from_file_location("staging_profile", path)
    prof = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prof)
    run = lambda a, b: {"execution": {"iopub.execute_input": f"2026-12-03T10:00:{a:02d}.000000Z",  # noqa: E731
                                      "shell.execute_reply": f"2026-12-03T10:00:{b:02d}.500000Z"}}
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import x", metadata=run(0, 1)),
        nbformat.v4.new_markdown_cell("text"),
        nbformat.v4.new_code_cell("faith()", id="faith03-01", metadata=run(2, 12)),
        nbformat.v4.new_code_cell("more()", id="faith03-02", metadata=run(13, 15))])
    (tmp_path / "staged").mkdir()
    nbformat.write(nb, tmp_path / "staged" / "03_saliency_pitfalls.ipynb")
    nbformat.write(nb, tmp_path / "staged" / "03_saliency_pitfalls_solutions.ipynb")  # left out
    wall, cells = prof.cell_seconds(tmp_path / "staged" / "03_saliency_pitfalls.ipynb")
    assert wall == pytest.approx(15.5) and [round(s, 1) for _, s in cells] == [1.5, 10.5, 2.5]
    table = prof.profile(tmp_path, top=1)
    assert "| 03_saliency_pitfalls.ipynb | 16 | faith03-01 10 s |" in table and "solutions" not in table
    assert "| 03 faithfulness: occlusion, SHAP, deletion/insertion, ROAD | 13 (84%) |" in table


# ---------------------------------------------------------------- core path and optional sections
def _cell(source: str, *tags: str, kind: str = "code"):
    import nbformat

    make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    return make(source, metadata={"tags": list(tags)} if tags else {})


def test_optional_dependency_check_finds_a_broken_core_cut():
    import nbformat

    from course_utils import render

    nb = nbformat.v4.new_notebook(cells=[
        _cell("import numpy as np\nbase = np.zeros(3)"),
        _cell("extra = base + 1\nfor k in range(2):\n    pass", "optional"),
        _cell("total = extra.sum() + base.sum() + k"),           # reads two optional-only names
        _cell("def f(extra):\n    return extra\nbase = f(base)"),  # a parameter is not a dependency
        _cell("if True:\n    !pip install nothing\nprint(base)"),  # shell lines are skipped
    ])
    problems = render.optional_dependencies(nb)
    assert len(problems) == 1 and "extra, k" in problems[0]
    cut = render.core_cut(nb)
    assert len(cut.cells) == 4 and len(nb.cells) == 5  # the original is untouched


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_core_path_runs_without_the_optional_sections(path):
    """No core cell reads a name that only an optional section defines, and optional sections
    are marked the same way everywhere: tagged cells, a heading that says "Optional:"."""
    import nbformat

    from course_utils import render

    nb = nbformat.read(path, as_version=4)
    assert render.optional_dependencies(nb) == []
    heads = [c for i, c in enumerate(nb.cells) if render.is_optional(c) and c.cell_type == "markdown"
             and (i == 0 or not render.is_optional(nb.cells[i - 1]))]
    for head in heads:
        assert re.search(r"^#{2,4} (\d+\. )?Optional: ", head.source, re.M), head.source[:80]
    for cell in nb.cells:  # one marker per heading, in one place
        for line in cell.source.splitlines() if cell.cell_type == "markdown" else []:
            if line.startswith("#"):
                assert line.count("Optional") <= 1 and not re.match(r"#+ Optional: \d", line), line
    if any(render.OPTIONAL_TAG in c.metadata.get("tags", []) for c in nb.cells):
        assert "**Core path:**" in nb.cells[0].source
# ---------------------------------------------------------------------------- exercises
def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _exercise_section(cells: list[dict]) -> list[dict]:
    """The cells after the "## Exercises" heading, up to the next "## " heading."""
    start = next(i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                 and _source(c).startswith("## Exercises"))
    end = next((i for i in range(start + 1, len(cells)) if cells[i]["cell_type"] == "markdown"
                and _source(cells[i]).startswith("## ")), len(cells))
    return cells[start + 1:end]


def test_learner_notebooks_hold_no_solutions():
    for path in NOTEBOOKS:
        for cell in _cells(path):
            assert "solution" not in _tags(cell), f"{path.name}: a solution cell ({cell['id']})"
            assert not _source(cell).lstrip().startswith("# Solution"), f"{path.name}: {cell['id']}"
            assert not cell.get("metadata", {}).get("jupyter", {}).get("source_hidden"), path.name


def test_every_exercise_has_a_your_turn_cell_with_its_check():
    for path in NOTEBOOKS:
        nn, cells = path.name[:2], _cells(path)
        section = _exercise_section(cells)
        intro = _source(next(c for c in cells if _source(c).startswith("## Exercises")))
        assert f"](solutions/{path.stem}_solutions.ipynb)" in intro, f"{path.name}: a link to its solutions"
        found = []
        for i, cell in enumerate(section):
            items = re.findall(r"^(\d+)\. ", _source(cell), re.M) if cell["cell_type"] == "markdown" else []
            if not items:
                continue
            assert len(items) == 1, f"{path.name}: one exercise per markdown cell, got {items}"
            ex = exercises.EXERCISES.get(f"{nn}.{items[0]}")
            assert ex is not None, f"{path.name}: exercise {nn}.{items[0]} is not registered"
            yours = section[i + 1] if i + 1 < len(section) else {}
            assert yours.get("cell_type") == "code" and "your-turn" in _tags(yours), \
                f"{path.name}: exercise {ex.id} has no 'your-turn' code cell after it"
            lines = [ln for ln in _source(yours).splitlines() if ln.strip()]
            assert all(ln.startswith("#") for ln in lines), f"{ex.id}: a your-turn cell holds comments only"
            assert lines[0].startswith(f"# Exercise {ex.id} - your turn: ")
            assert (f"# {ex.call()}" in lines) == ex.checkable, f"{ex.id}: the checker call, if checkable"
            found.append(ex.id)
        assert found == [e.id for e in exercises.exercises_of(nn)], path.name
        setup = _source([c for c in cells if c["cell_type"] == "code"][1])
        if any(e.checkable for e in exercises.exercises_of(nn)):
            assert re.search(r"from course_utils import [^\n]*\bexercises\b|^    exercises,$", setup, re.M)


def test_each_learner_notebook_with_exercises_has_a_solutions_notebook():
    assert exercises.NOTEBOOKS == {p.name[:2]: p.stem for p in NOTEBOOKS}
    with_exercises = [p for p in NOTEBOOKS if exercises.exercises_of(p.name[:2])]
    assert [p.name for p in SOLUTIONS] == [f"{p.stem}_solutions.ipynb" for p in with_exercises]
    assert all((ROOT / ex.solutions).is_file() for ex in exercises.EXERCISES.values())


def test_solution_notebooks_solve_registered_exercises_and_check_them():
    for path in SOLUTIONS:
        nn, cells = path.name[:2], _cells(path)
        learner = _cells(ROOT / "notebooks" / path.name.replace("_solutions", ""))
        first = [c for c in cells if c["cell_type"] == "code"][:2]
        assert [(c["id"], _source(c), _tags(c)) for c in first] == \
            [(c["id"], _source(c), _tags(c)) for c in [c for c in learner if c["cell_type"] == "code"][:2]], \
            f"{path.name}: the Colab cell and the standard first cell are the learner notebook's"
        text = "\n".join(_source(c) for c in cells if c["cell_type"] == "markdown")
        ids = re.findall(r"^### Exercise (\d\d\.\d+)\b", text, re.M)
        assert all(i in exercises.EXERCISES for i in ids), f"{path.name}: unregistered ids {ids}"
        assert ids == [e.id for e in exercises.exercises_of(nn)], path.name
        code = "\n".join(_source(c) for c in cells if c["cell_type"] == "code")
        for ex in exercises.exercises_of(nn):
            asserted = re.search(rf'assert exercises\.check\("{re.escape(ex.id)}",.*?\)\.right', code, re.S)
            assert bool(asserted) == ex.checkable, f"{path.name}: {ex.id} must assert its check iff checkable"
        assert not any("solution" in _tags(c) or "your-turn" in _tags(c) for c in cells)



def test_kernel_benchmark_row_note_says_the_same_instead_of_repeating_the_tf_keras_vis_note():
    kernels = _kernels()
    same = {"note": "kink here", "tkv": {"note": "kink here"}}
    assert kernels.tkv_note(same) == "tf-keras-vis loop: the same."
    assert kernels.tkv_note({"note": "a", "tkv": {"note": "b"}}) == "tf-keras-vis loop: b"
    assert kernels.tkv_note({"note": "a"}) == ""
    assert kernels.tkv_note({"note": "a", "tkv": {"note": ""}}) == ""
