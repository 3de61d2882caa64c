"""The rendered course book: sources assembled from executed notebooks, a real Jupyter Book build."""
from __future__ import annotations

import nbformat
import pytest

from course_utils import __main__ as cli
from course_utils import book


def _executed(path, title: str, text: str, *, run: bool = True):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {title}\n\nSome prose."),
                                         nbformat.v4.new_code_cell(f"print({text!r})")])
    if run:
        nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def executed(tmp_path):
    folder = tmp_path / "build"
    _executed(folder / "02_second.ipynb", "02 · Second", "pleural effusion")
    _executed(folder / "01_first.ipynb", "01 · First", "cardiomegaly")
    _executed(folder / "solutions" / "01_first_solutions.ipynb", "01 · Solutions", "answer")
    return folder


def test_sources_list_notebooks_in_order_then_solutions_and_docs(executed, tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "glossary.md").write_text("# Glossary\n")
    src = book.write_sources(executed, tmp_path / "src", root)
    toc = (src / "_toc.yml").read_text()
    assert toc.index("01_first") < toc.index("02_second") < toc.index("01_first_solutions")
    assert "file: glossary" in toc and "instructor-guide" not in toc  # only documents that exist
    assert 'execute_notebooks: "off"' in (src / "_config.yml").read_text()
    intro = (src / "intro.md").read_text()
    assert "[01 · First](01_first.ipynb)" in intro and "[01 · Solutions]" in intro


def test_no_or_unexecuted_notebooks_are_refused_with_the_fix(tmp_path):
    with pytest.raises(book.BookError, match="course_utils course"):
        book.write_sources(tmp_path / "empty", tmp_path / "src", tmp_path)
    _executed(tmp_path / "raw" / "01_x.ipynb", "01", "x", run=False)
    with pytest.raises(book.BookError, match="01_x.ipynb"):
        book.write_sources(tmp_path / "raw", tmp_path / "src", tmp_path)


@pytest.mark.skipif(not book.jupyter_book_available(), reason="jupyter-book is in the lock; "
                    "this environment was not installed from it")
def test_the_book_builds_with_pages_and_a_search_index(executed, tmp_path, capsys):
    out = tmp_path / "site"
    assert cli.main(["book", "--from", str(executed), "--out", str(out)]) == 0
    html = out / "_build" / "html"
    assert (html / "index.html").is_file() and (html / "search.html").is_file()
    page = (html / "02_second.html").read_text()
    assert "pleural effusion" in page  # the outputs of the run are on the page
    assert "cardiomegaly" in (html / "searchindex.js").read_text().lower() or \
        "cardiomegaly" in (html / "01_first.html").read_text()
    assert "course book" in capsys.readouterr().out
