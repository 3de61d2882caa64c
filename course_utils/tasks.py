"""The course's tasks on any OS, with the standard library only: what ``make`` does, without ``make``.

``python -m course_utils test`` (or ``course``, ``lab``, ``install``, ``unit``, ``nbval``) works
from a fresh clone with nothing but Python 3.11-3.13: it creates ``.venv`` in the repository,
installs the hashed lock file ``requirements/lock.txt`` into it, installs the course package
(editable, no dependencies) and then runs the task with the venv's interpreter. The Makefile calls
these tasks, so ``make test`` and ``python -m course_utils test`` are the same thing.

``--here`` runs a task in the current environment instead (conda, Colab, a prepared CI image):
nothing is created or installed.

This module must import nothing outside the standard library: it runs before anything is
installed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: Where the course expects things, relative to the repository root.
LOCK_FILE = Path("requirements") / "lock.txt"
VENV_DIR = Path(".venv")
STAMP_NAME = ".course-installed.json"
NBVAL_SANITIZE = Path("tests") / "nbval_sanitize.cfg"

#: Python versions the lock file and the course support (inclusive).
SUPPORTED = ((3, 11), (3, 13))

#: Environment every task runs with: quiet TensorFlow, CPU only, deterministic hashing.
TASK_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "CUDA_VISIBLE_DEVICES": "",
    "PYTHONHASHSEED": "0",
    "KERAS_BACKEND": "tensorflow",
    "PYTHONWARNINGS": "ignore::DeprecationWarning",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # ipykernel's debugger note on Python 3.11+
    # glibc: at most 2 malloc heaps from the start of every kernel the task launches, so a
    # notebook's memory is what it holds, not TensorFlow's per-thread leftovers (notebook 03
    # from scratch: 3.62 GB by default, 3.56 GB with setup()'s later cap alone, 3.48 GB with
    # this; benchmarks/results.md). Other C libraries ignore it.
    "MALLOC_ARENA_MAX": "2",
}


class TaskError(RuntimeError):
    """A task cannot run; the message says what is wrong and how to fix it."""


def repo_root() -> Path:
    """The repository checkout this file lives in (tasks need a checkout, not an installed wheel)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or not (root / "notebooks").is_dir():
        raise TaskError(
            "The course tasks (install/test/course/lab) run from a clone of the course repository; "
            f"{root} is not one. Clone the repository and run `python -m course_utils test` in it.")
    return root


def venv_dir(root: Path) -> Path:
    """The virtual environment folder: ``COURSE_VENV`` if set, else ``<repo>/.venv``."""
    env = os.environ.get("COURSE_VENV")
    return Path(env).expanduser().resolve() if env else root / VENV_DIR


def venv_python(venv: Path, os_name: str = os.name) -> Path:
    """The interpreter inside ``venv`` (``Scripts/python.exe`` on Windows, ``bin/python`` elsewhere)."""
    return venv / ("Scripts/python.exe" if os_name == "nt" else "bin/python")


def check_python(version: tuple[int, int] = sys.version_info[:2]) -> None:
    """Raise :class:`TaskError` unless ``version`` (major, minor) is one the course installs on."""
    lo, hi = SUPPORTED
    if not lo <= tuple(version) <= hi:
        raise TaskError(
            f"Python {version[0]}.{version[1]} cannot install the course: TensorFlow, Keras 3 and "
            f"numpy 2 publish wheels for Python {lo[0]}.{lo[1]}-{hi[0]}.{hi[1]}. Run the command with "
            "one of those, e.g. `python3.11 -m course_utils test` (or `make test PYTHON=python3.11`).")


def venv_version(venv: Path) -> tuple[int, int] | None:
    """(major, minor) of the Python that made ``venv``, read from its ``pyvenv.cfg`` (None if unknown)."""
    cfg = venv / "pyvenv.cfg"
    if not cfg.is_file():
        return None
    for line in cfg.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("version", "version_info"):
            parts = value.strip().split(".")
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                return int(parts[0]), int(parts[1])
    return None


def install_fingerprint(root: Path, version: tuple[int, int]) -> dict[str, str]:
    """What an installed venv must match: the lock, the project file and the Python version."""
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    return {"lock": digest(root / LOCK_FILE), "pyproject": digest(root / "pyproject.toml"),
            "python": f"{version[0]}.{version[1]}"}


def venv_problem(venv: Path, version: tuple[int, int]) -> str | None:
    """Why ``venv`` cannot be reused for Python ``version`` (None if it can, or does not exist)."""
    if not venv.exists():
        return None
    made_by = venv_version(venv)
    if made_by is None or not venv_python(venv).exists():
        return f"{venv} is not a complete virtual environment (an interrupted install?)"
    if made_by != tuple(version):
        return (f"{venv} was made by Python {made_by[0]}.{made_by[1]}, but this command runs "
                f"Python {version[0]}.{version[1]}")
    return None


def _run(cmd: list[str], **kwargs) -> None:
    print("$", " ".join(str(c) for c in cmd), flush=True)
    done = subprocess.run([str(c) for c in cmd], **kwargs)
    if done.returncode:
        raise TaskError(f"command failed with exit code {done.returncode}: {' '.join(map(str, cmd))}")


def ensure_venv(root: Path, *, python: str = sys.executable) -> Path:
    """Create or repair ``.venv`` so that it holds exactly the lock file; return its interpreter.

    A venv made by another Python, or left half-made, is removed and rebuilt (with a message).
    Installing is skipped when the venv's stamp matches the lock, pyproject.toml and Python.
    """
    version = sys.version_info[:2]
    check_python(version)
    venv = venv_dir(root)
    problem = venv_problem(venv, version)
    if problem:
        print(f"{problem}: rebuilding it.", flush=True)
        shutil.rmtree(venv)
    if not venv.exists():
        print(f"Creating the course's virtual environment in {venv} (Python "
              f"{version[0]}.{version[1]}) ...", flush=True)
        _run([python, "-m", "venv", venv])
    py = venv_python(venv)
    stamp = venv / STAMP_NAME
    want = install_fingerprint(root, version)
    try:
        have = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        have = None
    if have != want:
        print("Installing the locked stack (requirements/lock.txt; about 2.2 GB the first time, "
              "mostly TensorFlow) ...", flush=True)
        env = {**os.environ, **TASK_ENV}
        _run([py, "-m", "pip", "install", "--quiet", "--require-hashes", "-r", root / LOCK_FILE],
             env=env)
        _run([py, "-m", "pip", "install", "--quiet", "--no-deps", "-e", root], env=env)
        stamp.write_text(json.dumps(want, indent=1), encoding="utf-8")
    return py


def notebooks(root: Path) -> list[Path]:
    """The course notebooks in order (``notebooks/NN_*.ipynb``)."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def solution_notebooks(root: Path) -> list[Path]:
    """The exercises' solution notebooks in order (``notebooks/solutions/NN_*_solutions.ipynb``)."""
    return sorted((root / "notebooks" / "solutions").glob("[0-9][0-9]_*_solutions.ipynb"))


def task_command(task: str, root: Path, extra: list[str], *, is_root_user: bool | None = None,
                 ) -> tuple[list[str], dict[str, str]]:
    """The command line (after the interpreter) and extra environment that run ``task``.

    ``test``, ``nbval`` and ``course`` run the solution notebooks after all learner notebooks,
    so that the models the learner notebooks cached are loaded, not trained again.
    """
    nbs = [str(p.relative_to(root)) for p in notebooks(root) + solution_notebooks(root)]
    nbval = ["--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=900",
             "--nbval-sanitize-with", str(NBVAL_SANITIZE), "-p", "no:cacheprovider"]
    if is_root_user is None:
        is_root_user = hasattr(os, "geteuid") and os.geteuid() == 0
    if task == "test":
        return (["-m", "pytest", "tests", *nbs, *nbval, *extra],
                {"COURSE_OFFLINE": "1", "COURSE_FAST": "1"})
    if task == "unit":
        return ["-m", "pytest", "tests", "-p", "no:cacheprovider", *extra], {"COURSE_OFFLINE": "1"}
    if task == "nbval":
        return ["-m", "pytest", *nbs, *nbval, *extra], {"COURSE_OFFLINE": "1", "COURSE_FAST": "1"}
    if task == "course":
        # build/NN_*.html, and the solutions in build/solutions/
        return ["-m", "course_utils", "render", "--out", "build", "--root", "notebooks", *nbs, *extra], {}
    if task == "lab":
        # Jupyter refuses to start as root (containers, cloud VMs) unless told that is intended.
        return (["-m", "jupyter", "lab", "notebooks", *(["--allow-root"] if is_root_user else []),
                 *extra], {})
    if task == "install":
        return [], {}
    raise TaskError(f"unknown task {task!r}")


TASKS = ("install", "test", "unit", "nbval", "course", "lab")


def course_packages_importable() -> bool:
    """True if this interpreter can run the course (TensorFlow, Keras, numpy importable)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "keras", "numpy"))


def run_in_venv(args: list[str]) -> int:
    """Run ``python ARGS`` with the course venv's interpreter (creating the venv if needed)."""
    try:
        root = repo_root()
        py = ensure_venv(root)
    except TaskError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return subprocess.run([str(py), *args], env={**os.environ, **TASK_ENV}).returncode


def run_task(task: str, extra: list[str] | None = None, *, here: bool = False,
             extras: tuple[str, ...] = ()) -> int:
    """Run ``task`` (one of :data:`TASKS`); in ``.venv`` unless ``here``. Returns the exit code.

    ``extras`` (``install --here`` only): optional groups of pyproject.toml to add, e.g. ("test",).
    """
    extra = list(extra or [])
    if task == "install" and here:
        return install_here(extras)
    try:
        root = repo_root()
        py = Path(sys.executable) if here else ensure_venv(root)
        args, env = task_command(task, root, extra)
    except TaskError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args:
        print(f"The course's environment is ready: {py}")
        return 0
    full_env = {**os.environ, **TASK_ENV, **env}
    print("$", py.name, " ".join(args), flush=True)
    return subprocess.run([str(py), *args], cwd=root, env=full_env).returncode


#: Distributions that provide the same import package: a Colab or conda ``tensorflow`` satisfies
#: the course's ``tensorflow-cpu`` requirement (installing both would break TensorFlow).
EQUIVALENT = {"tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos"),
              "tensorflow-cpu": ("tensorflow", "tensorflow-cpu", "tensorflow-intel",
                                 "tensorflow-macos")}


def _packaging():
    """The ``packaging`` library (installed almost everywhere; pip always vendors a copy)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - bare environments
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def course_requirements(extras: tuple[str, ...] = ()) -> list[str]:
    """The course's requirement strings: from the installed package, else from pyproject.toml."""
    import importlib.metadata

    try:
        reqs = importlib.metadata.requires("saliency-course") or []
    except importlib.metadata.PackageNotFoundError:
        import tomllib

        project = tomllib.loads((repo_root() / "pyproject.toml").read_text("utf-8"))["project"]
        reqs = list(project["dependencies"]) + [
            f"{r}; extra == '{e}'" if ";" not in r else f"{r} and extra == '{e}'"
            for e, rs in project.get("optional-dependencies", {}).items() for r in rs]
    return reqs


def missing_requirements(extras: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(requirements to install, warnings) for the current environment.

    A requirement counts as met when any equivalent distribution is installed in a version the
    course accepts; one that is installed in another version is *not* replaced (that would break
    a preinstalled stack such as Colab's): it is reported in the warnings instead.
    """
    import importlib.metadata

    requirement = _packaging()
    todo, warnings_ = [], []
    for text in course_requirements(extras):
        req = requirement(text)
        env_ok = [req.marker is None or req.marker.evaluate({"extra": e}) for e in ("", *extras)]
        if not any(env_ok):
            continue
        found = []
        for dist in EQUIVALENT.get(req.name.lower(), (req.name,)):
            try:
                found.append((dist, importlib.metadata.version(dist)))
            except importlib.metadata.PackageNotFoundError:
                pass
        if not found:
            todo.append(f"{req.name}{req.specifier}")
        elif not any(req.specifier.contains(v, prereleases=True) for _, v in found):
            dist, v = found[0]
            warnings_.append(f"{dist} {v} is installed; the course is tested with {req.name}"
                             f"{req.specifier}. Keeping yours.")
    return todo, warnings_


def install_here(extras: tuple[str, ...] = ()) -> int:
    """Install what the course lacks into the current environment, changing nothing installed.

    TensorFlow (the ``tensorflow`` extra) is always wanted; any installed build satisfies it.

    This is the Colab and conda path: the packages already present (Colab's TensorFlow, Keras,
    numpy, pandas, protobuf, ipykernel, ...) are passed to pip as constraints, so pip either adds
    the missing packages at versions compatible with them or fails; it never replaces them.
    """
    import tempfile

    todo, warnings_ = missing_requirements(("tensorflow", *extras))
    for w in warnings_:
        print("note:", w)
    if not todo:
        print("Everything the course needs is installed.")
        return 0
    frozen = subprocess.run([sys.executable, "-m", "pip", "list", "--format=freeze"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    pins = [ln for ln in frozen if "==" in ln and not ln.lower().startswith("saliency-course")]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("\n".join(pins) + "\n")
    try:
        print("Installing what is missing (keeping every installed package):", ", ".join(todo))
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "-c", fh.name, *todo]
        return subprocess.run(cmd).returncode
    finally:
        os.unlink(fh.name)


def sync_repository_url(root: Path | None = None) -> list[Path]:
    """Copy ``[project.urls] Repository`` of pyproject.toml into the Colab cells and README badges.

    Returns the files it changed. This is what a fork runs after editing that one line.
    """
    import re
    import tomllib

    root = root or repo_root()
    url = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))["project"]["urls"]["Repository"]
    slug = url.rstrip("/").removeprefix("https://github.com/")
    # only the places that name *this* repository: pip's git URL, Colab badges, the citation
    pattern = re.compile(r"(git\+https://github\.com/|colab\.research\.google\.com/github/|"
                         r"repository-code: \"https://github\.com/)[\w.-]+/[\w-]+(?:\.[\w-]+)*?"
                         r"(?=\.git\b|[/\"'\s)\\]|$)")
    changed = []
    for path in [root / "README.md", root / "CITATION.cff", *notebooks(root), *solution_notebooks(root)]:
        text = path.read_text("utf-8")
        new = pattern.sub(lambda m: m.group(1) + slug, text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed
