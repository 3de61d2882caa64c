"""Command line: ``python -m course_utils {doctor,prefetch,render}``.

* ``doctor``   – versions, devices, memory, fast/offline mode, network, which assets are cached.
* ``prefetch`` – download every asset into the cache (run before a workshop, with internet).
* ``render``   – execute notebooks headless and write HTML copies (``make course``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _doctor(_: argparse.Namespace) -> int:
    from . import environment

    info = environment.summary(check_network=True)
    print(environment.format_summary(info))
    print("\nAssets:")
    for row in info["assets"]:
        mark = "yes" if row["present"] else "NO "
        print(f"  [{mark}] {row['asset']:<22} {row['size']:<10} {row['path']}")
    missing = [r["asset"] for r in info["assets"] if not r["present"] and r["kind"] != "dataset"]
    if missing:
        print("\nMissing assets fall back to offline stand-ins (random-weight VGG16, scikit-image "
              "photos). To stage them: `python -m course_utils prefetch` with internet access.")
    return 0


def _prefetch(args: argparse.Namespace) -> int:
    from . import assets, config

    print(f"Staging assets in {config.data_dir()} ...")
    results = assets.prefetch(args.names or None)
    failed = 0
    for name, outcome in results.items():
        print(f"  {name:<22} {outcome}")
        failed += outcome not in ("ok",) and not outcome.startswith("manual")
    if failed:
        print(f"\n{failed} asset(s) could not be fetched; the course will use its offline "
              "stand-ins for them.")
    return 1 if failed else 0


def _render(args: argparse.Namespace) -> int:
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import CellExecutionError, ExecutePreprocessor

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    for nb_path in map(Path, args.notebooks):
        start = time.perf_counter()
        nb = nbformat.read(nb_path, as_version=4)
        runner = ExecutePreprocessor(timeout=args.timeout, kernel_name="python3")
        try:
            runner.preprocess(nb, {"metadata": {"path": str(nb_path.parent)}})
            verdict = "ok"
        except CellExecutionError as e:
            verdict, status = f"FAILED: {str(e).splitlines()[0][:200]}", 1
        html, _ = HTMLExporter().from_notebook_node(nb)
        target = out / (nb_path.stem + ".html")
        target.write_text(html, encoding="utf-8")
        nbformat.write(nb, out / nb_path.name)
        print(f"{nb_path.name}: {verdict} in {time.perf_counter() - start:.0f} s -> {target}")
    print(f"\nRendered course: {out.resolve()}/ (open the .html files in a browser)")
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m course_utils`` and the ``course-utils`` script."""
    parser = argparse.ArgumentParser(prog="python -m course_utils", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="report versions, devices and cached assets").set_defaults(
        func=_doctor)
    p = sub.add_parser("prefetch", help="download every asset for offline use")
    p.add_argument("names", nargs="*", help="only these assets (default: all)")
    p.set_defaults(func=_prefetch)
    p = sub.add_parser("render", help="execute notebooks and write HTML")
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--out", default="build")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    p.set_defaults(func=_render)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
