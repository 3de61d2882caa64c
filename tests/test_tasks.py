"""The cross-platform entry point (``python -m course_utils TASK``) and the notebook renderer."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils import __main__ as cli
from course_utils import render, tasks

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- venv handling
@pytest.mark.parametrize(("os_name", "tail"), [("nt", "Scripts/python.exe"), ("posix", "bin/python")])
def test_the_venv_interpreter_is_where_each_os_puts_it(tmp_path, os_name, tail):
    assert tasks.venv_python(tmp_path, os_name) == tmp_path / tail


@pytest.mark.parametrize("version", [(3, 10), (3, 14), (2, 7)])
def test_unsupported_pythons_are_refused_with_the_fix(version):
    with pytest.raises(tasks.TaskError, match=r"3\.11-3\.13.*python3\.11 -m course_utils"):
        tasks.check_python(version)


@pytest.mark.parametrize("version", [(3, 11), (3, 12), (3, 13)])
def test_supported_pythons_pass(version):
    tasks.check_python(version)


def _fake_venv(path: Path, version: str) -> Path:
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").write_text("")
    (path / "pyvenv.cfg").write_text(f"home = /usr/bin\nversion = {version}\n")
    return path


def test_a_venv_of_another_python_is_detected(tmp_path):
    venv = _fake_venv(tmp_path / "v", "3.12.4")
    assert tasks.venv_version(venv) == (3, 12)
    assert "made by Python 3.12" in tasks.venv_problem(venv, (3, 11))
    assert tasks.venv_problem(venv, (3, 12)) is None
    assert tasks.venv_problem(tmp_path / "absent", (3, 11)) is None


def test_a_half_made_venv_is_detected(tmp_path):
    (tmp_path / "v").mkdir()
    assert "not a complete virtual environment" in tasks.venv_problem(tmp_path / "v", (3, 11))


def test_ensure_venv_rebuilds_another_pythons_venv_and_stamps_the_install(tmp_path, monkeypatch,
                                                                        capsys):
    root = tmp_path / "repo"
    (root / "requirements").mkdir(parents=True)
    (root / "requirements" / "lock.txt").write_text("x==1 --hash=sha256:00\n")
    (root / "pyproject.toml").write_text("[project]\n")
    here = sys.version_info[:2]
    other = "3.99.0"
    _fake_venv(root / ".venv", other)
    monkeypatch.delenv("COURSE_VENV", raising=False)
    calls = []

    def fake_run(cmd, **_):
        calls.append([str(c) for c in cmd])
        if cmd[1:3] == ["-m", "venv"]:
            _fake_venv(Path(cmd[3]), f"{here[0]}.{here[1]}.0")

    monkeypatch.setattr(tasks, "_run", fake_run)
    py = tasks.ensure_venv(root)
    out = capsys.readouterr().out
    assert "made by Python 3.99" in out and "rebuilding" in out
    assert py == tasks.venv_python(root / ".venv")
    assert any("--require-hashes" in c for c in calls) and any("--no-deps" in c for c in calls)
    stamp = json.loads((root / ".venv" / tasks.STAMP_NAME).read_text())
    assert stamp["python"] == f"{here[0]}.{here[1]}"
    calls.clear()
    tasks.ensure_venv(root)  # same lock, same Python: nothing to do
    assert calls == []
    (root / "requirements" / "lock.txt").write_text("x==2 --hash=sha256:11\n")
    tasks.ensure_venv(root)  # a new lock is installed
    assert any("--require-hashes" in c for c in calls)


def test_lab_allows_root_only_for_root(tmp_path):
    as_root, _ = tasks.task_command("lab", ROOT, [], is_root_user=True)
    as_user, _ = tasks.task_command("lab", ROOT, [], is_root_user=False)
    assert "--allow-root" in as_root and "--allow-root" not in as_user


def _notebook_args(args: list[str]) -> tuple[list[str], list[str]]:
    """(learner notebooks, solution notebooks) in the order a task command names them."""
    nbs = [a for a in args if a.endswith(".ipynb")]
    return [a for a in nbs if "solutions" not in a], [a for a in nbs if "solutions" in a]


def test_the_test_task_is_the_readme_command():
    args, env = tasks.task_command("test", ROOT, ["-x"])
    assert args[:3] == ["-m", "pytest", "tests"] and args[-1] == "-x"
    learner, solutions = _notebook_args(args)
    assert learner == sorted(learner) and len(learner) == len(tasks.notebooks(ROOT)) >= 6
    assert env == {"COURSE_OFFLINE": "1", "COURSE_FAST": "1"}
    assert "--nbval-lax" in args and "--nbval-current-env" in args


@pytest.mark.parametrize("task", ["test", "nbval", "course"])
def test_solution_notebooks_run_after_every_learner_notebook(task):
    """The solutions load the models the learner notebooks cached, so they come last."""
    args, _ = tasks.task_command(task, ROOT, [])
    nbs = [a for a in args if a.endswith(".ipynb")]
    learner, solutions = _notebook_args(args)
    assert solutions == sorted(solutions) and len(solutions) == len(tasks.solution_notebooks(ROOT)) >= 6
    assert nbs == learner + solutions
    assert all(a.startswith(str(Path("notebooks") / "solutions")) for a in solutions)


def test_the_course_renders_solutions_into_their_own_folder(tmp_path):
    args, _ = tasks.task_command("course", ROOT, [])
    assert args[args.index("--out") + 1] == "build" and args[args.index("--root") + 1] == "notebooks"
    out = tmp_path / "build"
    assert render.output_folder(ROOT / "notebooks" / "02_x.ipynb", out, ROOT / "notebooks") == out
    assert render.output_folder(ROOT / "notebooks" / "solutions" / "02_x_solutions.ipynb", out,
                                ROOT / "notebooks") == out / "solutions"
    assert render.output_folder(tmp_path / "elsewhere.ipynb", out, ROOT / "notebooks") == out
    assert render.output_folder(ROOT / "notebooks" / "solutions" / "s.ipynb", out) == out


def test_the_entry_point_needs_only_the_standard_library():
    """`python -m course_utils test` must start on a bare Python: nothing but stdlib at import."""
    code = ("import sys, course_utils.__main__, course_utils.tasks; "
            "bad = [m for m in ('numpy', 'tensorflow', 'keras', 'packaging') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_unknown_task_is_an_error(tmp_path):
    with pytest.raises(tasks.TaskError):
        tasks.task_command("bake", ROOT, [])


# ---------------------------------------------------------------------------- install --here
def test_a_preinstalled_tensorflow_meets_the_tensorflow_cpu_requirement(monkeypatch):
    """On Colab `tensorflow` is installed: the course must not add `tensorflow-cpu` beside it."""
    import importlib.metadata as md

    installed = {"tensorflow": "2.20.0", "numpy": "1.26.0"}

    def version(name):
        if name in installed:
            return installed[name]
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "version", version)
    monkeypatch.setattr(tasks, "course_requirements", lambda extras=(): [
        "tensorflow-cpu>=2.20,<3; sys_platform == 'linux' and platform_machine == 'x86_64'",
        "tensorflow>=2.20,<3; sys_platform != 'linux' or platform_machine != 'x86_64'",
        "numpy>=2.1,<3", "tf-keras-vis>=0.8.7,<0.9", "pytest>=8; extra == 'test'"])
    todo, notes = tasks.missing_requirements()
    assert todo == ["tf-keras-vis<0.9,>=0.8.7"]  # no TensorFlow; numpy kept although too old
    assert len(notes) == 1 and "numpy 1.26.0 is installed" in notes[0] and "Keeping yours" in notes[0]
    todo, _ = tasks.missing_requirements(("test",))
    assert "pytest>=8" in todo


def test_course_requirements_cover_runtime_and_extras():
    reqs = " ".join(tasks.course_requirements())
    for name in ("keras", "tf-keras-vis", "numpy", "scikit-learn", "matplotlib", "nbval", "jupyterlab"):
        assert name in reqs


# ---------------------------------------------------------------------------- rendering
def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_render_goes_on_after_failures_and_names_each_error(tmp_path, capsys):
    bad = _notebook(tmp_path / "a_bad.ipynb", "x = 1", "raise ValueError('the lungs are missing')")
    good = _notebook(tmp_path / "b_good.ipynb", "print(6 * 7)")
    missing = tmp_path / "c_missing.ipynb"
    assert cli.main(["render", str(bad), str(missing), str(good),
                     "--out", str(tmp_path / "build")]) == 1
    out = capsys.readouterr().out
    assert "a_bad.ipynb: FAILED: cell 1: ValueError: the lungs are missing" in out
    assert "c_missing.ipynb: FAILED: notebook not found" in out
    assert "b_good.ipynb: ok" in out and "1 of 3 notebooks ran to the end" in out
    assert (tmp_path / "build" / "b_good.html").is_file() and (tmp_path / "build" / "a_bad.html").is_file()


def test_render_refuses_a_file_as_output_folder(tmp_path, capsys):
    nb = _notebook(tmp_path / "n.ipynb", "1")
    (tmp_path / "out").write_text("")
    assert cli.main(["render", str(nb), "--out", str(tmp_path / "out")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_render_strips_tensorflow_start_up_chatter(tmp_path):
    chatter = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n"
               "I0000 00:00:1764512345.123456   12345 cpu_feature_guard.cc:210] This TensorFlow binary\\n"
               "E0000 00:00:1764512345.1 12 cuda_dnn.cc:8310] Unable to register cuDNN factory\\n"
               "2026-11-30 16:00:00.000000: I tensorflow/core/util/port.cc:153] oneDNN custom ops\\n"
               "a real warning\\n")
    nb_path = _notebook(tmp_path / "t.ipynb", f"import sys; sys.stderr.write('{chatter}')")
    render.render_all([nb_path], tmp_path / "build")
    executed = nbformat.read(tmp_path / "build" / "t.ipynb", as_version=4)
    text = "".join(o.get("text", "") for o in executed.cells[0].outputs)
    assert text.strip() == "a real warning"


def test_sync_url_renames_only_this_repository(tmp_path):
    """A fork edits pyproject's URL; sync-url rewrites Colab cells and badges, not other links."""
    import shutil

    root = tmp_path / "fork"
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    for name in ("README.md", "CITATION.cff", "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
    project = (root / "pyproject.toml").read_text()
    old = re.search(r'Repository = "https://github.com/([^"]+)"', project).group(1)
    (root / "pyproject.toml").write_text(project.replace(old, "someone/my-fork"))
    changed = tasks.sync_repository_url(root)
    assert root / "README.md" in changed and len(changed) >= 1 + len(tasks.notebooks(ROOT))
    assert set(tasks.solution_notebooks(root)) <= set(changed)  # their Colab cells too
    everything = "".join(p.read_text() for p in [root / "README.md", *tasks.notebooks(root),
                                                 *tasks.solution_notebooks(root)])
    assert old not in everything
    assert "git+https://github.com/someone/my-fork" in everything
    assert "colab.research.google.com/github/someone/my-fork/blob/main/notebooks/" in everything
    # links to other projects (tf-keras-vis, the PSC authors' code) are left alone
    before = "".join(p.read_text() for p in tasks.notebooks(ROOT))
    for other in re.findall(r"github\.com/(?!" + re.escape(old) + r")[\w-]+/[\w-]+", before):
        assert other in everything
    assert tasks.sync_repository_url(root) == []


def test_training_shows_one_progress_step_per_epoch(capsys):
    import keras
    import numpy as np

    from course_utils import models

    x = np.random.default_rng(0).uniform(size=(32, 3)).astype("float32")
    y = (x[:, 0] > 0.5).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    bar = models.EpochProgress(epochs=4, desc="toy")
    model.fit(x, y, epochs=4, validation_data=(x, y), verbose=0, callbacks=[bar])
    assert bar.bar.n == 4 and bar.bar.total == 4 and "val_loss" in bar.bar.postfix
    assert "toy" in capsys.readouterr().err  # tqdm writes to stderr outside a notebook


def test_install_here_takes_its_extras_from_the_command_line(monkeypatch):
    seen = []
    monkeypatch.setattr(tasks, "install_here", lambda extras=(): seen.append(extras) or 0)
    assert cli.main(["install", "--here", "--test"]) == 0
    assert cli.main(["install", "--here"]) == 0
    assert seen == [("test",), ()]


def test_tools_use_the_venv_only_when_this_python_lacks_the_course(monkeypatch):
    ran = []
    monkeypatch.setattr(tasks, "run_in_venv", lambda args: ran.append(args) or 0)
    monkeypatch.setattr(tasks, "course_packages_importable", lambda: False)
    assert cli.main(["doctor"]) == 0 and ran == [["-m", "course_utils", "doctor"]]


def test_a_notebook_opening_with_setup_shows_no_tensorflow_chatter(tmp_path):
    """The first cell's outputs carry the course's report, not TensorFlow's C++ start-up lines."""
    import nbformat as nbf
    from nbclient import NotebookClient

    nb = nbf.v4.new_notebook(cells=[nbf.v4.new_code_cell(
        "import course_utils\ninfo = course_utils.setup()\nimport keras\nkeras.ops.ones(3)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env_free = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute(env=env_free)
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert "Python 3." in text  # the environment report is there
    assert not any(render.TF_NOISE.match(line) for line in text.splitlines()), text


def test_a_failing_html_export_is_reported_and_the_next_notebook_still_renders(tmp_path, monkeypatch,
                                                                              capsys):
    from nbconvert import HTMLExporter

    calls = []

    def flaky(self, nb, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("No template sub-directory with name 'lab'")
        return "<html>ok</html>", {}

    monkeypatch.setattr(HTMLExporter, "from_notebook_node", flaky)
    a = _notebook(tmp_path / "a.ipynb", "1 + 1")
    b = _notebook(tmp_path / "b.ipynb", "2 + 2")
    assert render.render_all([a, b], tmp_path / "build") == 1
    out = capsys.readouterr().out
    assert "a.ipynb: FAILED: could not write the rendered copy: ValueError" in out
    assert "b.ipynb: ok" in out and (tmp_path / "build" / "b.html").read_text() == "<html>ok</html>"


def test_render_keeps_sub_folders_under_root(tmp_path, capsys):
    root = tmp_path / "notebooks"
    (root / "solutions").mkdir(parents=True)
    top = _notebook(root / "a.ipynb", "print(1)")
    sub = _notebook(root / "solutions" / "a_solutions.ipynb", "print(2)")
    out = tmp_path / "build"
    assert cli.main(["render", str(top), str(sub), "--out", str(out), "--root", str(root)]) == 0
    assert (tmp_path / "build" / "a.html").is_file()
    assert (tmp_path / "build" / "solutions" / "a_solutions.html").is_file()
    assert not (tmp_path / "build" / "a_solutions.html").exists()


def test_a_cell_timeout_is_reported_and_the_next_notebook_still_renders(tmp_path, capsys):
    slow = _notebook(tmp_path / "a_slow.ipynb", "import time\ntime.sleep(30)")
    fine = _notebook(tmp_path / "b_fine.ipynb", "print('fine')")
    assert render.render_all([slow, fine], tmp_path / "build", timeout=2) == 1
    out = capsys.readouterr().out
    assert "a_slow.ipynb: FAILED: cell 0: cell timed out" in out and "b_fine.ipynb: ok" in out


def test_render_core_leaves_the_optional_sections_out(tmp_path, capsys):
    import nbformat

    nb = _notebook(tmp_path / "n.ipynb", "x = 6", "raise ValueError('optional ran')", "print(x * 7)")
    book = nbformat.read(nb, as_version=4)
    book.cells[1].metadata["tags"] = ["optional"]
    nbformat.write(book, nb)
    assert cli.main(["render", str(nb), "--out", str(tmp_path / "build"), "--core"]) == 0
    ran = nbformat.read(tmp_path / "build" / "core" / "n.ipynb", as_version=4)
    assert len(ran.cells) == 2 and "42" in ran.cells[1].outputs[0]["text"]
    assert cli.main(["render", str(nb), "--out", str(tmp_path / "build")]) == 1  # all of it fails


def test_course_core_reaches_the_renderer(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks, "run_task", lambda task, extra, **kw: calls.append((task, extra)) or 0)
    assert cli.main(["course", "--core"]) == 0 and calls == [("course", ["--core"])]


def test_cut_writes_core_copies_without_outputs(tmp_path, monkeypatch, capsys):
    import nbformat

    from course_utils import render

    nb = _notebook(tmp_path / "01_x.ipynb", "x = 6", "y = 1", "print(x * 7)")
    book = nbformat.read(nb, as_version=4)
    book.cells[1].metadata["tags"] = ["optional"]
    book.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="old\n")]
    book.cells[0].execution_count = 3
    nbformat.write(book, nb)
    (path,) = render.write_core_notebooks([nb], tmp_path / "core")
    cut = nbformat.read(path, as_version=4)
    assert [c.source for c in cut.cells] == ["x = 6", "print(x * 7)"]
    assert cut.cells[0].outputs == [] and cut.cells[0].execution_count is None
    assert [c.id for c in cut.cells] == [book.cells[0].id, book.cells[2].id]
    monkeypatch.setattr(tasks, "notebooks", lambda root: [nb])
    monkeypatch.setattr(tasks, "repo_root", lambda: tmp_path)
    assert cli.main(["cut", "--out", "class"]) == 0 and (tmp_path / "class" / "01_x.ipynb").is_file()
    assert "Run All" in capsys.readouterr().out
