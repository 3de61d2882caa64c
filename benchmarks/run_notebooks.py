"""Benchmark: wall time and peak memory of every notebook, per cell too, in three settings.

Each notebook is executed headless in a fresh kernel (nbclient), as `make course` does. Memory
is the peak resident set size of the whole process tree (this runner plus the kernel), sampled
every 0.2 s with psutil; for every cell the runner also records its seconds, the kernel's memory
after it and the peak while it ran, so the slowest and hungriest cells can be listed.

Modes:
* ``fast``   - ``COURSE_FAST=1`` in a fresh, empty data folder per run (what nbval does in CI).
* ``full``   - full mode from scratch: a fresh data folder per course run, shared by the notebooks
  of that run in order (02 trains the model 03-05 load, as for a learner); assets (weights,
  photos) are linked in from the course's data folder, trained models are not.
* ``staged`` - full mode with ``--staged-dir`` (a folder made by ``python -m course_utils stage``):
  the classroom setting, where no notebook should train.

    python benchmarks/run_notebooks.py --modes fast full --repeat 3
    python benchmarks/run_notebooks.py --modes staged --staged-dir /srv/workshop-data
    python benchmarks/run_notebooks.py --modes fast --repeat 1 notebooks/01_*.ipynb --merge

Budgets (issue 16, on 2 CPU cores, idle machine, median of 3): fast mode <= 5 min in total,
the full course from scratch <= 15 min, with a staged folder <= 6 min, every notebook's peak
memory <= 3.5 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from course_utils.tasks import TASK_ENV

ROOT = Path(__file__).resolve().parent.parent
BUDGET = {"fast_total_s": 300, "full_total_s": 900, "staged_total_s": 360, "peak_gb": 3.5}
TOP = 10  # cells listed in the profile
#: Sections timed on their own (issue 14's additions): name -> (notebook number, cell ids or
#: id prefixes ending in "-"). 01's cost table computes all seven methods in one cell.
SECTIONS = {
    "01 cost table (7 methods, occlusion and SHAP included)": ("01", ("cell-24",)),
    "03 faithfulness: occlusion, SHAP, deletion/insertion, ROAD": ("03", ("faith03-",)),
    "03 site shortcut (two simulated sites)": ("03", ("sites03-",)),
    "04 sanity check of occlusion and SHAP": ("04", ("perturb-cascade-",)),
}

# Runs in a subprocess: executes one notebook, writing one JSON line per cell to argv[3].
_EXECUTE = """
import json, sys, threading, time, nbformat, psutil
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
me, log, state = psutil.Process(), open(sys.argv[3], "w"), {}
def rss():
    total = 0
    try:
        kids = me.children(recursive=False)  # the kernel, not its short-lived forks
    except psutil.Error:
        kids = []
    for p in kids:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total
def sample():
    while True:
        if "t" in state:
            state["peak"] = max(state.get("peak", 0), rss())
        time.sleep(0.2)
threading.Thread(target=sample, daemon=True).start()
def start(cell, cell_index, **_):
    state.update(t=time.perf_counter(), before=rss(), peak=0)
def done(cell, cell_index, **_):
    after = rss()
    log.write(json.dumps({"index": cell_index, "id": cell.get("id", ""),
                          "line": (cell.source.strip().splitlines() or [""])[0][:70],
                          "seconds": round(time.perf_counter() - state["t"], 2),
                          "before_gb": round(state["before"] / 2**30, 3),
                          "after_gb": round(after / 2**30, 3),
                          "peak_gb": round(max(state["peak"], after) / 2**30, 3)}) + "\\n")
    log.flush()
NotebookClient(nb, timeout=3600, kernel_name="python3", on_cell_start=start,
               on_cell_executed=done, resources={"metadata": {"path": sys.argv[2]}}).execute()
"""


def _tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of ``proc`` (the runner) and its children (the kernel), 0 for any that
    vanish while sampled.

    The kernel's own children are left out: a short-lived fork of the kernel shares its pages
    but would count them again (on 2026-12-03 one sample of 03 read 4.68 GB while the kernel's
    own sampler never saw more than 3.10 GB).
    """
    total = 0
    try:
        tree = [proc, *proc.children(recursive=False)]
    except psutil.Error:  # a child ended between listing and reading it
        tree = [proc]
    for p in tree:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_once(notebook: Path, fast: bool, data_dir: Path) -> tuple[float, float, bool, list[dict]]:
    """Execute one notebook in a subprocess: (seconds, peak GB, succeeded, per-cell records)."""
    env = os.environ | TASK_ENV | {"COURSE_FAST": "1" if fast else "0",
                                   "COURSE_DATA_DIR": str(data_dir)}  # as `make course` runs them
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as cells_log:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", _EXECUTE, str(notebook),
                                 str(notebook.parent), cells_log.name],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        peak = 0
        ps = psutil.Process(proc.pid)
        stop = threading.Event()

        def sample():
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _tree_rss(ps))
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, err = proc.communicate()
        stop.set()
        sampler.join()
        seconds = time.perf_counter() - start
        cells = [json.loads(line) for line in Path(cells_log.name).read_text().splitlines()]
    if proc.returncode != 0:
        print(f"  FAILED {notebook.name}: {err.strip().splitlines()[-1] if err.strip() else '?'}")
    return seconds, peak / 2**30, proc.returncode == 0, cells


def speed_canary(repeat: int = 5) -> float:
    """Seconds of a fixed CPU workload, median of ``repeat``: 24 float32 1024 x 1024 matrix
    products (NumPy's BLAS, all cores) and a sort of 2 million float32 values.

    Machines "of one kind" differ up to 2x; rows measured where the canary took k times longer
    are comparable after dividing by k. It is measured before each mode's runs and kept with
    every row (merged rows keep theirs).
    """
    import numpy as np

    rng = np.random.default_rng(0)
    a, v = rng.random((1024, 1024), dtype=np.float32), rng.random(2_000_000, dtype=np.float32)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(24):
            a @ a
        np.sort(v)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fresh_data_dir(base: Path) -> Path:
    """An empty data folder with the course's downloaded assets linked in (no trained models)."""
    sys.path.insert(0, str(ROOT))
    from course_utils import config

    folder = Path(tempfile.mkdtemp(prefix="bench-data-", dir=base))
    source = config.data_dir()
    for child in source.iterdir():
        if child.name not in ("models", "staged") and not child.name.startswith("."):
            (folder / child.name).symlink_to(child.resolve(), target_is_directory=child.is_dir())
    return folder


def _short(name: str) -> str:
    """"03" for a learner notebook, "03 sol." for its solutions notebook."""
    return name[:2] + (" sol." if "_solutions" in name else "")


def _profile_lines(rows: list[dict]) -> list[str]:
    """Markdown: the TOP cells by seconds and by memory growth, over every notebook and mode."""
    cells = [dict(c, notebook=r["notebook"], mode=r["mode"]) for r in rows for c in r.get("cells", [])]
    out = []
    for title, key in (("slowest cells", "seconds"), ("cells that grow the kernel's memory most",
                                                      "growth_gb")):
        for c in cells:
            c["growth_gb"] = round(c["after_gb"] - c["before_gb"], 3)
        ranked = sorted(cells, key=lambda c: -c[key])[:TOP]
        out += ["", f"### Top {TOP} {title}", "",
                "| notebook | mode | cell | first line | seconds | memory after (GB) | growth (GB) "
                "| peak in cell (GB) |", "|---|---|---|---|---|---|---|---|"]
        out += [f"| {_short(c['notebook'])} | {c['mode']} | {c['id']} | `{c['line'].replace('|', '/')}` "
                f"| {c['seconds']} | {c['after_gb']} | {c['growth_gb']} | {c['peak_gb']} |"
                for c in ranked]
    return out


def _in_section(cell_id: str, ids: tuple[str, ...]) -> bool:
    return any(cell_id.startswith(i) if i.endswith("-") else cell_id == i for i in ids)


def _section_lines(rows: list[dict]) -> list[str]:
    """Markdown: seconds and peak memory of each of :data:`SECTIONS`, per mode (learner notebooks)."""
    modes = sorted({r["mode"] for r in rows}, key=lambda m: {"fast": 0, "full": 1, "staged": 2}[m])
    out = ["", "### Sections", "",
           "Seconds summed over the section's cells in the profiled run (the one nearest the median), "
           "the largest peak of its cells, and the section's share of its notebook's wall time.", "",
           "| section | " + " | ".join(f"{m}: s (share), peak GB" for m in modes) + " |",
           "|---|" + "---|" * len(modes)]
    for name, (number, ids) in SECTIONS.items():
        cells_by_mode = []
        for m in modes:
            row = next((r for r in rows if r["mode"] == m and r["notebook"][:2] == number
                        and "_solutions" not in r["notebook"]), None)
            cells = [c for c in (row or {}).get("cells", []) if _in_section(c["id"], ids)]
            if not cells:
                cells_by_mode.append("-")
                continue
            seconds = sum(c["seconds"] for c in cells)
            cells_by_mode.append(f"{seconds:.1f} ({seconds / row['seconds']:.0%}), "
                                 f"{max(c['peak_gb'] for c in cells):.2f}")
        out.append(f"| {name} | " + " | ".join(cells_by_mode) + " |")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--modes", nargs="+", default=["fast", "full"],
                        choices=["fast", "full", "staged"])
    parser.add_argument("--repeat", type=int, default=1,
                        help="course runs per mode (median reported)")
    parser.add_argument("--staged-dir", type=Path, help="data folder made by `course_utils stage`")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    parser.add_argument("--merge", action="store_true",
                        help="keep earlier results for notebook/mode pairs not run this time")
    parser.add_argument("--note", default="", help="a paragraph added under the header (e.g. where "
                        "numbers not in the table were measured)")
    args = parser.parse_args()
    if "staged" in args.modes and not (args.staged_dir and
                                       (args.staged_dir / "staged" / "manifest.json").is_file()):
        parser.error("--modes staged needs --staged-dir FOLDER made by `python -m course_utils "
                     "stage --data-dir FOLDER`")
    # the learner notebooks in order, then their solution notebooks (which reuse their models)
    notebooks = args.notebooks or [*sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")),
                                   *sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))]
    scratch = Path(tempfile.mkdtemp(prefix="course-bench-"))
    rows = []
    try:
        for mode in args.modes:
            canary = speed_canary()
            print(f"{mode:>6}  speed canary {canary:.2f} s", flush=True)
            runs: dict[str, list] = {nb.name: [] for nb in notebooks}
            for _ in range(args.repeat):
                folder = args.staged_dir.resolve() if mode == "staged" else fresh_data_dir(scratch)
                for nb in notebooks:
                    runs[nb.name].append(run_once(nb.resolve(), mode == "fast", folder))
                    r = runs[nb.name][-1]
                    print(f"{mode:>6}  {nb.name:<40} {r[0]:7.1f} s  peak {r[1]:5.2f} GB  "
                          f"{'ok' if r[2] else 'FAILED'}", flush=True)
                if mode != "staged":
                    shutil.rmtree(folder, ignore_errors=True)
            for nb in notebooks:
                done = runs[nb.name]
                median = statistics.median(r[0] for r in done)
                typical = min(done, key=lambda r: abs(r[0] - median))  # its cells are profiled
                rows.append({"notebook": nb.name, "mode": mode, "seconds": round(median, 1),
                             "runs": [round(r[0], 1) for r in done],
                             "peak_gb": round(max(r[1] for r in done), 2),
                             "ok": all(r[2] for r in done),
                             "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
                             "load_average": round(os.getloadavg()[0], 1),
                             "canary_s": round(canary, 2), "cells": typical[3]})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    previous = args.out / "results.json"
    if args.merge and previous.exists():
        done_pairs = {(r["notebook"], r["mode"]) for r in rows}
        kept = [r for r in json.loads(previous.read_text())["rows"]
                if (r["notebook"], r["mode"]) not in done_pairs]
        order = {"fast": 0, "full": 1, "staged": 2}
        rows = sorted(kept + rows, key=lambda r: (order[r["mode"]], r["notebook"]))
    modes = sorted({r["mode"] for r in rows}, key=lambda m: {"fast": 0, "full": 1, "staged": 2}[m])
    totals = {m: round(sum(r["seconds"] for r in rows if r["mode"] == m), 1) for m in modes}
    peak = max((r["peak_gb"] for r in rows), default=0.0)
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} CPUs, "
                       f"{psutil.virtual_memory().total / 2**30:.0f} GB",
            "offline": os.environ.get("COURSE_OFFLINE", "0"), "repeat": args.repeat,
            "load_average": [round(x, 1) for x in os.getloadavg()]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"meta": meta, "rows": rows, "totals_s": totals, "peak_gb": peak, "budget": BUDGET},
        indent=1))
    lines = [f"# Notebook benchmark ({meta['date']})", "",
             f"Machine: {meta['machine']}; COURSE_OFFLINE={meta['offline']}; "
             "wall time = median of the runs listed; load = 1-minute load average when the row "
             "finished (other jobs inflate wall times); canary = seconds of a fixed NumPy "
             "workload before the mode's runs (`speed_canary`: compare rows of other machines or "
             "days by its ratio); fast = COURSE_FAST=1, full = full mode "
             "from an empty data folder (training included), staged = full mode with a folder "
             "made by `python -m course_utils stage`. Generated by `benchmarks/run_notebooks.py`.",
             *(["", args.note] if args.note else []), "",
             "| notebook | mode | wall time (s) | runs (s) | peak memory (GB) | ok | measured (UTC) "
             "| load | canary (s) |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['notebook']} | {r['mode']} | {r['seconds']} | "
              f"{', '.join(map(str, r.get('runs', [r['seconds']])))} | {r['peak_gb']} | "
              f"{'yes' if r['ok'] else 'NO'} | {r.get('date', meta['date'])} | "
              f"{r.get('load_average', '?')} | {r.get('canary_s', '?')} |" for r in rows]
    lines += ["", "| total | budget |", "|---|---|"]
    lines += [f"| {m}: {t} s | {BUDGET[m + '_total_s']} s |" for m, t in totals.items()]
    lines += [f"| peak memory: {peak} GB | {BUDGET['peak_gb']} GB per notebook |"]
    lines += _section_lines(rows) + _profile_lines(rows) + [""]
    (args.out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))
    within = peak <= BUDGET["peak_gb"] and all(t <= BUDGET[m + "_total_s"] for m, t in totals.items())
    return 0 if within and all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
