"""Project hygiene: pins agree, notebooks are stripped and numbered, the CLI works offline."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

from course_utils import __main__ as cli
from course_utils import config, environment

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)\s*", line)
        assert m, f"not an exact pin: {line!r}"
        pins[m.group(1).lower()] = m.group(2)
    return pins


def test_environment_yml_mirrors_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == _pins(project["dependencies"])
    assert "python=3.11" in env["dependencies"]
    for required in ("jupyterlab", "tensorflow", "keras", "tf-keras-vis", "matplotlib", "numpy",
                     "scikit-learn", "nbval"):
        assert required in _pins(project["dependencies"])


def test_notebooks_are_numbered_and_committed_without_outputs():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))]
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, path.name


def test_notebooks_open_with_objectives_and_the_standard_first_cell():
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        intro = "".join(cells[0]["source"]).lower()
        assert "learning objectives" in intro or "what this course is" in intro, path.name
        first_code = next("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert "course_utils.setup(" in first_code, path.name
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


@pytest.mark.parametrize("target", ["test:", "course:", "lab:"])
def test_makefile_has_the_readme_commands(target):
    assert re.search(rf"^{target}", (ROOT / "Makefile").read_text(), re.M)
    readme = (ROOT / "README.md").read_text()
    assert f"make {target[:-1]}" in readme


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("script", ["run_notebooks.py", "calibrate_phantom.py"])
def test_benchmark_scripts_start(script):
    """Their argument parsers build (defaults are evaluated) and --help exits cleanly."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, str(root / "benchmarks" / script), "--help"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout
