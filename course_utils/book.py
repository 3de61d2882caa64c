"""The rendered course book: a static website of the executed course (``python -m course_utils book``).

Learners and instructors open it to see what a correct full-mode run prints and draws, without
running anything. It is built with Jupyter Book (Sphinx) from notebooks that were already
executed — by ``make course`` (``build/*.ipynb``) or by ``stage`` (``<data>/staged/``) — so
building it executes nothing: the pages show exactly the outputs of that run. The book has the
notebooks in order, their solution notebooks, the instructor guide, the audit checklist and the
glossary, with navigation and full-text search.

    python -m course_utils book                   # from build/ (run `make course` first)
    python -m course_utils book --from data/staged --out build/book
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

#: Documents of ``docs/`` shown in the book, in this order, if present.
DOCS = ("instructor-guide.md", "heatmap-audit-checklist.md", "glossary.md")
TITLE = "Saliency Maps in Medical Imaging"


class BookError(RuntimeError):
    """The book cannot be built; the message says what is missing and how to get it."""


def executed_notebooks(folder: Path) -> tuple[list[Path], list[Path]]:
    """(course notebooks ``NN_*.ipynb``, solution notebooks) found in ``folder``, in order.

    Solutions are looked for in ``folder/solutions`` and, as ``stage`` writes them, beside the
    notebooks (``NN_*_solutions.ipynb``).
    """
    course = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if not p.stem.endswith("_solutions"))
    solutions = sorted({*folder.glob("[0-9][0-9]_*_solutions.ipynb"),
                        *(folder / "solutions").glob("[0-9][0-9]_*.ipynb")})
    return course, solutions


def _has_outputs(path: Path) -> bool:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


def title_of(path: Path) -> str:
    """A notebook's title: its first level-1 heading, else its file name."""
    import nbformat

    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem.replace("_", " ")


def _intro(course: list[Path], solutions: list[Path], docs: list[Path]) -> str:
    """The book's first page: what it shows and a table of contents in words."""
    lines = [f"# {TITLE}", "",
             "*Can I trust this heat-map?* These pages show one complete, executed run of the course: "
             "every table, number and figure a correct run produces, so you can compare your own "
             "run with it, or read the course without running it. Numbers on another computer "
             "differ in the last digits (CPU kernels, threads); the verdicts printed beside them "
             "should not.", "",
             "## Notebooks", ""]
    lines += [f"- [{title_of(p)}]({p.name})" for p in course]
    if solutions:
        lines += ["", "## Solutions to the exercises", ""]
        lines += [f"- [{title_of(p)}]({p.name})" for p in solutions]
    if docs:
        lines += ["", "## For instructors and learners", ""]
        lines += [f"- [{d.stem.replace('-', ' ').capitalize()}]({d.name})" for d in docs]
    lines += ["", "Use the search box (top left) to find a term, a method or a number."]
    return "\n".join(lines) + "\n"


def write_sources(executed: Path, src: Path, root: Path) -> Path:
    """Assemble the book's source folder ``src`` from ``executed`` notebooks and ``root/docs``.

    Raises :class:`BookError` when ``executed`` holds no executed course notebook.
    """
    course, solutions = executed_notebooks(executed)
    if not course:
        raise BookError(f"No executed notebooks in {executed}: run `python -m course_utils course` "
                        "first (it writes build/*.ipynb), or give --from the staged folder "
                        "(<data>/staged, written by `python -m course_utils stage`).")
    blank = [p.name for p in course if not _has_outputs(p)]
    if blank:
        raise BookError(f"These notebooks in {executed} have no outputs (not executed?): "
                        f"{', '.join(blank)}. The book shows a run's outputs; execute them first.")
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for p in [*course, *solutions]:
        shutil.copy2(p, src / p.name)
    docs = [root / "docs" / d for d in DOCS if (root / "docs" / d).is_file()]
    for d in docs:
        shutil.copy2(d, src / d.name)
    (src / "intro.md").write_text(_intro(course, solutions, docs), encoding="utf-8")
    toc = ["format: jb-book", "root: intro", "parts:", "  - caption: Notebooks", "    chapters:"]
    toc += [f"      - file: {p.stem}" for p in course]
    if solutions:
        toc += ["  - caption: Solutions", "    chapters:"]
        toc += [f"      - file: {p.stem}" for p in solutions]
    if docs:
        toc += ["  - caption: For instructors and learners", "    chapters:"]
        toc += [f"      - file: {d.stem}" for d in docs]
    (src / "_toc.yml").write_text("\n".join(toc) + "\n", encoding="utf-8")
    (src / "_config.yml").write_text("\n".join([
        f'title: "{TITLE}"',
        'author: "the course authors"',
        "only_build_toc_files: true",
        "execute:",
        '  execute_notebooks: "off"   # the pages show the outputs of the run they came from',
        "sphinx:",
        "  config:",
        "    html_show_copyright: false",
        "    suppress_warnings: [\"mystnb.unknown_mime_type\", \"myst.header\", \"myst.xref_missing\"]",
        "",
    ]), encoding="utf-8")
    return src


def jupyter_book_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("jupyter_book") is not None


def build(executed: Path, out: Path, root: Path) -> Path:
    """Build the book from ``executed`` into ``out``; return the path of its ``index.html``."""
    if not jupyter_book_available():
        raise BookError("Jupyter Book is not installed in this environment: `pip install "
                        "\"jupyter-book>=1.0.4,<2\"` (or run `python -m course_utils book`, which "
                        "installs it into the course's .venv).")
    src = write_sources(executed, out / "source", root)
    # jupyter_book has no __main__; its command-line group reads sys.argv like the script does
    cli = "from jupyter_book.cli.main import main; main()"
    done = subprocess.run([sys.executable, "-c", cli, "build", str(src), "--path-output", str(out)],
                          capture_output=True, text=True)
    index = out / "_build" / "html" / "index.html"
    if done.returncode or not index.is_file():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise BookError(f"jupyter-book build failed (exit code {done.returncode}):\n{tail}")
    return index
