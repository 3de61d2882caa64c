"""Execute notebooks headless and write HTML copies (``python -m course_utils course``).

Every notebook is attempted, whatever happened to the ones before it (a failing cell, a cell
timeout, a kernel killed for memory, a missing file); each gets a one-line verdict that names the
error, and the exit code is non-zero at the end if any failed. A notebook that stopped part-way
is still written, so the learner sees where.
"""
from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

#: stderr lines that TensorFlow/XLA/absl print from C++ at start-up; never worth showing a learner.
TF_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)|"
    r"[EWI]\d{4} .*\] |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [EWI] |"
    r"oneDNN custom operations|To enable the following instructions|"
    r"WARNING: Logging before InitGoogleLogging|Unable to register cu(DNN|FFT|BLAS) factory)")


@dataclass(frozen=True)
class Verdict:
    """How one notebook went: ``ok`` is False with ``error`` naming what stopped it."""

    notebook: Path
    ok: bool
    seconds: float
    error: str = ""
    html: Path | None = None


def strip_tf_noise(nb) -> int:
    """Remove TensorFlow's C++ start-up lines from stderr outputs of ``nb`` (in place); count them."""
    removed = 0
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                lines = out["text"].splitlines(keepends=True)
                clean = [ln for ln in lines if not TF_NOISE.match(ln)]
                removed += len(lines) - len(clean)
                if not "".join(clean).strip():
                    continue
                out["text"] = "".join(clean)
            kept.append(out)
        if "outputs" in cell:
            cell["outputs"] = kept
    return removed


#: Cell tag of the sections a class may skip (headings say "Optional:"); ``--core`` drops them.
OPTIONAL_TAG = "optional"


def is_optional(cell) -> bool:
    """True if ``cell`` is outside the core path: an optional section (tagged
    :data:`OPTIONAL_TAG`) or an exercise's solution (tagged ``solution``).
    """
    return bool({OPTIONAL_TAG, "solution"} & set(cell.get("metadata", {}).get("tags", [])))


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell defines, names it reads) from its code; shell/magic lines are ignored."""
    import ast

    code = "\n".join(line[:len(line) - len(line.lstrip())] + "pass"
                     if line.lstrip().startswith(("!", "%")) else line
                     for line in source.splitlines())
    defined, read = set(), set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name):
            (defined if isinstance(node.ctx, (ast.Store, ast.Del)) else read).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    return defined, read


def optional_dependencies(nb) -> list[str]:
    """Core cells that read a name only an earlier *optional* cell defines (the core cut breaks).

    One line per problem: the cell id and the names. Static (names, not values): a core cell
    that reads a name an earlier core cell also defines is fine.
    """
    core, optional, problems = set(), set(), []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        defined, read = _names(cell.source)
        if is_optional(cell):
            optional |= defined
            continue
        missing = sorted((read - core - defined) & optional)
        if missing:
            problems.append(f"cell {cell.get('id', '?')} reads {', '.join(missing)}, defined only "
                            "in optional cells above it")
        core |= defined
    return problems


def core_cut(nb):
    """A copy of ``nb`` without its optional cells (what ``course --core`` runs and renders)."""
    import copy

    cut = copy.deepcopy(nb)
    cut.cells = [c for c in cut.cells if not is_optional(c)]
    return cut


def write_core_notebooks(paths: list[Path], out: Path) -> list[Path]:
    """Write the core cut of each notebook, outputs cleared, into ``out``; return the new paths.

    For a class: learners open these copies and use *Run All*, which then runs only the core
    path (JupyterLab cannot skip tagged cells by itself). Code and ids are the originals'.
    """
    import nbformat

    written = []
    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        cut = core_cut(nbformat.read(path, as_version=4))
        for cell in cut.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        cut.metadata["course_cut"] = "core: the sections not marked Optional (generated; edit the original)"
        nbformat.write(cut, out / path.name)
        written.append(out / path.name)
    return written


def _describe(exc: BaseException, cell_index: int | None) -> str:
    """One line naming the error (with the exception type and value the cell raised)."""
    where = f"cell {cell_index}: " if cell_index is not None else ""
    ename = getattr(exc, "ename", None)
    if ename:  # CellExecutionError carries the kernel-side exception
        return f"{where}{ename}: {str(getattr(exc, 'evalue', '')).strip()[:300]}"
    name = type(exc).__name__
    if name == "DeadKernelError":
        return f"{where}the kernel died (out of memory?): {exc}"[:400]
    if name == "CellTimeoutError":
        return f"{where}cell timed out: {str(exc).splitlines()[0][:200]}"
    return f"{where}{name}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"


def render_one(path: Path, out: Path, *, timeout: int = 3600, progress: bool = True,
               core: bool = False) -> Verdict:
    """Execute ``path`` with a fresh kernel, write ``out/<name>.ipynb`` and ``.html``; never raise.

    ``core``: run and render only the core cut (:func:`core_cut`: optional sections left out).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter
    from tqdm.auto import tqdm

    start = time.perf_counter()
    if not path.is_file():
        return Verdict(path, False, 0.0, f"notebook not found: {path}")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:  # noqa: BLE001 - any unreadable notebook is reported, not raised
        return Verdict(path, False, 0.0, f"cannot read notebook: {type(e).__name__}: {e}")
    if core:
        nb = core_cut(nb)
    code_cells = sum(c.cell_type == "code" for c in nb.cells)
    bar = tqdm(total=code_cells, desc=path.stem, unit="cell", disable=not progress,
               file=sys.stdout, mininterval=2.0, leave=True)
    state = {"index": None}

    def _started(cell, cell_index, **_):
        state["index"] = cell_index

    def _done(cell, cell_index, **_):
        bar.update(1)

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            on_cell_start=_started, on_cell_executed=_done,
                            # the kernel's own start-up warnings ("running over TCP...") are noise here
                            extra_arguments=["--log-level=ERROR"])
    error = ""
    try:
        client.execute()
    except Exception as e:  # noqa: BLE001 - cell errors, timeouts, dead kernels: all reported
        error = _describe(e, state["index"])
    finally:
        bar.close()
    strip_tf_noise(nb)
    target = out / (path.stem + ".html")
    try:
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out / path.name)
        html, _ = HTMLExporter().from_notebook_node(nb)
        target.write_text(html, encoding="utf-8")
    except Exception as e:  # noqa: BLE001 - a failed export is reported like a failed cell
        error = error or f"could not write the rendered copy: {type(e).__name__}: {e}"[:400]
        target = None
    return Verdict(path, not error, time.perf_counter() - start, error, target)


def output_folder(path: Path, out: Path, root: Path | None = None) -> Path:
    """Where ``path`` is rendered: ``out``, or for a notebook in a sub-folder of ``root`` the same
    sub-folder of ``out`` (``notebooks/solutions/x.ipynb`` -> ``build/solutions/``).
    """
    if root is None:
        return out
    try:
        return out / path.resolve().parent.relative_to(root.resolve())
    except ValueError:  # not under root
        return out


def render_all(paths: list[Path], out: Path, *, timeout: int = 3600, root: Path | None = None,
               core: bool = False) -> int:
    """Render every notebook in ``paths`` into ``out``; print one verdict each; 1 if any failed.

    ``root``: notebooks in a sub-folder of it go to the same sub-folder of ``out`` (see
    :func:`output_folder`); None puts every notebook straight into ``out``. ``core``: the core
    cut of each notebook (optional sections left out), into ``out/core``.
    """
    if core:
        out = out / "core"
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} is a file; give a folder for the rendered notebooks.",
              file=sys.stderr)
        return 2
    # jupyter_client warns about unencrypted local TCP for every kernel: not a learner's concern.
    warnings.filterwarnings("ignore", message=".*running over TCP.*")
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    verdicts = []
    for path in paths:
        v = render_one(path, output_folder(path, out, root), timeout=timeout, core=core)
        verdicts.append(v)
        print(f"{path.name}: {'ok' if v.ok else 'FAILED: ' + v.error} in {v.seconds:.0f} s"
              + (f" -> {v.html}" if v.html else ""), flush=True)
    failed = [v for v in verdicts if not v.ok]
    print(f"\nRendered course: {out.resolve()}/ (open the .html files in a browser); "
          f"{len(verdicts) - len(failed)} of {len(verdicts)} notebooks ran to the end.")
    for v in failed:
        print(f"  FAILED {v.notebook.name}: {v.error}")
    return 1 if failed else 0
