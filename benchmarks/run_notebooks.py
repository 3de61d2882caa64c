"""Benchmark: wall time and peak memory of every notebook, in fast and in full mode.

Each notebook is executed headless in a fresh kernel (nbclient), as `make course` does. Memory
is the peak resident set size of the whole process tree (this runner plus the kernel), sampled
every 0.2 s with psutil. Results are printed and written to ``benchmarks/results.md`` and
``benchmarks/results.json``.

    python benchmarks/run_notebooks.py                  # all notebooks, fast and full
    python benchmarks/run_notebooks.py --modes fast --repeat 3 notebooks/01_*.ipynb

Budgets (the course's design, on 2 CPU cores): all notebooks in fast mode <= 10 min in total,
the full course on phantom data <= 30 min, peak memory <= 4 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
BUDGET = {"fast_total_s": 600, "full_total_s": 1800, "peak_gb": 4.0}

_EXECUTE = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=3600, kernel_name="python3",
               resources={"metadata": {"path": sys.argv[2]}}).execute()
"""


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_once(notebook: Path, fast: bool) -> tuple[float, float, bool]:
    """Execute one notebook in a subprocess; return (seconds, peak GB, succeeded)."""
    env = os.environ | {"COURSE_FAST": "1" if fast else "0", "TF_CPP_MIN_LOG_LEVEL": "3",
                        "CUDA_VISIBLE_DEVICES": ""}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _EXECUTE, str(notebook), str(notebook.parent)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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
    if proc.returncode != 0:
        print(f"  FAILED {notebook.name}: {err.strip().splitlines()[-1] if err.strip() else '?'}")
    return seconds, peak / 2**30, proc.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--modes", nargs="+", default=["fast", "full"], choices=["fast", "full"])
    parser.add_argument("--repeat", type=int, default=1, help="runs per notebook (median reported)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    parser.add_argument("--merge", action="store_true",
                        help="keep earlier results for notebook/mode pairs not run this time")
    args = parser.parse_args()
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    rows = []
    for mode in args.modes:
        for nb in notebooks:
            runs = [run_once(nb.resolve(), mode == "fast") for _ in range(args.repeat)]
            seconds = statistics.median(r[0] for r in runs)
            peak = max(r[1] for r in runs)
            ok = all(r[2] for r in runs)
            rows.append({"notebook": nb.name, "mode": mode, "seconds": round(seconds, 1),
                         "runs": [round(r[0], 1) for r in runs], "peak_gb": round(peak, 2),
                         "ok": ok, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
                         "load_average": round(os.getloadavg()[0], 1)})
            print(f"{mode:>4}  {nb.name:<40} {seconds:7.1f} s  peak {peak:5.2f} GB  "
                  f"{'ok' if ok else 'FAILED'}")
    previous = args.out / "results.json"
    if args.merge and previous.exists():
        done = {(r["notebook"], r["mode"]) for r in rows}
        kept = [r for r in json.loads(previous.read_text())["rows"]
                if (r["notebook"], r["mode"]) not in done]
        rows = sorted(kept + rows, key=lambda r: (r["mode"] != "fast", r["notebook"]))
    modes = sorted({r["mode"] for r in rows}, key=lambda m: m != "fast")
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
        indent=2))
    lines = [f"# Notebook benchmark ({meta['date']})", "",
             f"Machine: {meta['machine']}; COURSE_OFFLINE={meta['offline']}; "
             "wall time = median of the runs listed; load = 1-minute load average when the row "
             "finished (other jobs inflate wall times). Generated by `benchmarks/run_notebooks.py`.",
             "", "| notebook | mode | wall time (s) | runs (s) | peak memory (GB) | ok | measured (UTC) "
             "| load |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['notebook']} | {r['mode']} | {r['seconds']} | "
              f"{', '.join(map(str, r.get('runs', [r['seconds']])))} | {r['peak_gb']} | "
              f"{'yes' if r['ok'] else 'NO'} | {r.get('date', meta['date'])} | "
              f"{r.get('load_average', '?')} |" for r in rows]
    lines += ["", "| total | budget |", "|---|---|"]
    lines += [f"| {m}: {t} s | {BUDGET[m + '_total_s']} s |" for m, t in totals.items()]
    lines += [f"| peak memory: {peak} GB | {BUDGET['peak_gb']} GB |", ""]
    (args.out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines[-4 - len(totals):]))
    within = peak <= BUDGET["peak_gb"] and all(t <= BUDGET[m + "_total_s"] for m, t in totals.items())
    return 0 if within and all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
