"""Per-cell profile of a full-mode run from scratch, read from a staged folder's notebooks.

``python -m course_utils stage --data-dir DIR`` executes every notebook in full mode and keeps
the executed copies in ``DIR/staged/``; nbclient records when each cell started and finished in
the cell's metadata. Staging an empty folder is therefore a full course run from scratch (models
trained, maps computed), and this script turns its notebooks into the table the benchmark gives
for the other modes: wall time per notebook, the slowest cells and the sections of
``run_notebooks.SECTIONS``. It measures one run (no median) and no memory; the staging log or a
sampler gives the peaks.

    python benchmarks/staging_profile.py DIR            # markdown on stdout
    python benchmarks/staging_profile.py DIR --top 5 --out benchmarks/staging-cells.md
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_notebooks import SECTIONS, _in_section  # noqa: E402 - the benchmark's own sections


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def cell_seconds(notebook: Path) -> tuple[float, list[tuple[str, float]]]:
    """(wall seconds from the first cell's start to the last cell's end, [(cell id, seconds)])
    of an executed notebook; cells without timing metadata are left out.
    """
    nb = json.loads(notebook.read_text())
    timed = []
    for cell in nb["cells"]:
        run = cell.get("metadata", {}).get("execution", {})
        if cell["cell_type"] == "code" and "iopub.execute_input" in run and "shell.execute_reply" in run:
            start, end = _when(run["iopub.execute_input"]), _when(run["shell.execute_reply"])
            timed.append((start, end, cell.get("id", "?")))
    if not timed:
        raise ValueError(f"{notebook} has no cell timings: was it executed (by `stage`)?")
    wall = (timed[-1][1] - timed[0][0]).total_seconds()
    return wall, [(i, (e - s).total_seconds()) for s, e, i in timed]


def profile(folder: Path, top: int = 5) -> str:
    """Markdown: one row per learner notebook in ``folder/staged``, then the sections table."""
    notebooks = sorted(p for p in (folder / "staged").glob("[0-9][0-9]_*.ipynb")
                       if "_solutions" not in p.name)
    if not notebooks:
        raise SystemExit(f"no executed notebooks in {folder / 'staged'}: run `python -m course_utils stage "
                         f"--data-dir {folder}` first")
    rows, cells = [], {}
    for nb in notebooks:
        wall, timed = cell_seconds(nb)
        cells[nb.name[:2]] = (wall, timed)
        slow = sorted(timed, key=lambda t: -t[1])[:top]
        rows.append(f"| {nb.name} | {wall:.0f} | " + "; ".join(f"{i} {s:.0f} s" for i, s in slow) + " |")
    total = sum(w for w, _ in cells.values())
    out = ["| notebook | wall time (s) | slowest cells |", "|---|---|---|", *rows,
           f"| **total** | **{total:.0f}** | |", "", "| section | seconds (share of its notebook) |",
           "|---|---|"]
    for name, (number, ids) in SECTIONS.items():
        if number not in cells:
            continue
        wall, timed = cells[number]
        s = sum(sec for i, sec in timed if _in_section(i, ids))
        out.append(f"| {name} | {s:.0f} ({s / wall:.0%}) |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a data folder made by `python -m course_utils stage`")
    parser.add_argument("--top", type=int, default=5, help="slowest cells listed per notebook")
    parser.add_argument("--out", type=Path, help="write the markdown here too")
    args = parser.parse_args(argv)
    text = profile(args.folder, args.top)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
