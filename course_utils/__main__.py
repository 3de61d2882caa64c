"""Command line: ``python -m course_utils COMMAND`` (the same on Linux, macOS and Windows).

Tasks (run from a clone; they create ``.venv`` from the lock file first, unless ``--here``):

* ``test``     – unit tests + every notebook under nbval, fast mode, offline (what CI runs); the
  solution notebooks (``notebooks/solutions/``) run after the learner notebooks.
* ``course``   – execute every notebook and write HTML copies to ``build/`` (solutions:
  ``build/solutions/``; ``--core``: only the core path, the sections not marked Optional, into
  ``build/core/``).
* ``lab``      – open JupyterLab on ``notebooks/``.
* ``install``  – only create/refresh ``.venv``;  ``unit`` / ``nbval`` – half of ``test``.

Tools (run in the current environment):

* ``doctor``   – versions, devices, memory, fast/offline mode, network, which assets are cached.
* ``prune``    – delete cached results that this version of the code can no longer load.
* ``prefetch`` – download every asset into the cache (run before a workshop, with internet).
* ``stage``    – prefetch, then run notebooks 01-06 and their solutions into the data folder so
  every model is trained and cached (before a workshop); ``stage --check`` verifies a copy.
* ``cut``      – write core-path copies of the notebooks into ``notebooks/core/`` (a class runs
  those with Run All).
* ``book``     – build the rendered course book (Jupyter Book) from executed notebooks.
* ``render``   – execute notebooks headless and write HTML copies (what ``course`` runs).
* ``sync-url`` – copy the repository URL of pyproject.toml into the notebooks and README (forks).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _doctor(_: argparse.Namespace) -> int:
    from . import config, import_tensorflow_quietly

    import_tensorflow_quietly()
    from . import environment

    try:
        info = environment.summary(check_network=True)
    except config.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(environment.format_summary(info))
    print("\nAssets:")
    for row in info["assets"]:
        mark = {"ok": "yes", "missing": "NO "}.get(row["state"], "BAD")
        print(f"  [{mark}] {row['asset']:<22} {row['size']:<10} {row['path']}")
        if mark == "BAD":
            print(f"         {row['state']}")
    from . import stage

    problems, notes = stage.check(config.data_dir())
    staged = stage.read_manifest(config.data_dir()) is not None
    print("\nStaged models:" + ("" if staged else " none (`python -m course_utils stage` trains "
                                                   "them before a workshop; without it each "
                                                   "notebook trains its own)"))
    for line in (notes + [f"[BAD] {p}" for p in problems]) if staged else []:
        print(f"  {line}")
    from . import memo

    dead = [p for f in config.read_dirs(memo.RESULTS_DIR)
            for inv in [memo.inventory(f)] for p in inv.stale + inv.unreadable]
    if dead:
        print(f"\nCached results: {len(dead)} ({memo.Inventory.size(dead) / 1e6:.0f} MB) from another "
              "version of the course's code or of TensorFlow/Keras can no longer load; "
              "`python -m course_utils prune` removes them.")
    missing = [r["asset"] for r in info["assets"] if not r["present"] and r["kind"] != "dataset"]
    if missing:
        print("\nMissing or damaged assets fall back to offline stand-ins (random-weight VGG16, "
              "scikit-image photos). To stage them: `python -m course_utils prefetch` with "
              "internet access (a damaged file is set aside and fetched again).")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from . import config, memo

    try:
        folders = [f for f in config.read_dirs(memo.RESULTS_DIR) if f.is_dir()]
    except config.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for folder in folders:
        inv = memo.inventory(folder)
        dead = inv.stale + inv.unreadable
        files, nbytes = memo.prune(folder, dry_run=args.dry_run)
        verb = "would remove" if args.dry_run else "removed"
        print(f"{folder}: {verb} {files} cached result(s), {nbytes / 1e6:.0f} MB, that this code "
              f"and TensorFlow/Keras can no longer load; {len(inv.current)} that load are kept.")
        if not args.dry_run and files < len(dead):
            print(f"  {len(dead) - files} could not be removed (read-only or another user's files).")
    if not folders:
        print("No cached results yet: nothing to remove.")
    return 0


def _prefetch(args: argparse.Namespace) -> int:
    from . import assets, config

    try:
        if config.offline_forced():
            print("error: COURSE_OFFLINE=1 forbids downloads; unset it to prefetch.",
                  file=sys.stderr)
            return 2
        for name in args.names:
            assets.get(name)
        print(f"Staging assets in {config.data_dir()} ...")
        results = assets.prefetch(args.names or None)
    except (KeyError, config.ConfigError) as e:
        print(f"error: {str(e).strip(chr(34) + chr(39))}", file=sys.stderr)
        return 2
    failed = 0
    for name, outcome in results.items():
        print(f"  {name:<22} {outcome}")
        failed += outcome not in ("ok",) and not outcome.startswith("manual")
    if failed:
        print(f"\n{failed} asset(s) could not be fetched; the course will use its offline "
              "stand-ins for them.")
    return 1 if failed else 0


def _stage(args: argparse.Namespace) -> int:
    from . import config, stage

    try:
        folder = Path(args.data_dir).expanduser().resolve() if args.data_dir else config.data_dir()
    except config.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        problems, notes = stage.check(folder, load=True)
        for line in notes:
            print("note:", line)
        for line in problems:
            print("PROBLEM:", line)
        print("The staged folder is ready." if not problems else
              f"{len(problems)} problem(s): stage the folder again (`python -m course_utils stage`).")
        return 1 if problems else 0
    return stage.stage(folder, fast=args.fast, fetch=not args.no_fetch, timeout=args.timeout)


def _cut(args: argparse.Namespace) -> int:
    from . import render, tasks

    try:
        root = tasks.repo_root()
    except tasks.TaskError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    written = render.write_core_notebooks(tasks.notebooks(root), root / args.out)
    print(f"Wrote the core path of {len(written)} notebooks to {root / args.out}/: open them in "
          "JupyterLab and use Run -> Run All Cells; the optional sections are left out "
          "(they stay in notebooks/).")
    return 0


def _book(args: argparse.Namespace) -> int:
    from . import book, tasks

    try:
        root = tasks.repo_root()
        index = book.build(Path(args.source).resolve(), Path(args.out).resolve(), root)
    except (book.BookError, tasks.TaskError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"The course book: {index} (open it in a browser; search is in the top bar).")
    return 0


def _render(args: argparse.Namespace) -> int:
    from . import render

    return render.render_all([Path(p) for p in args.notebooks], Path(args.out),
                             timeout=args.timeout, root=Path(args.root) if args.root else None,
                             core=args.core)


def _task(args: argparse.Namespace) -> int:
    from . import tasks

    extra = list(args.args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    if getattr(args, "core", False):
        extra = ["--core", *extra]
    extras = tuple(e for e in ("test", "lab") if getattr(args, e, False))
    return tasks.run_task(args.command, extra, here=args.here, extras=extras)


def _sync_url(_: argparse.Namespace) -> int:
    from . import tasks

    changed = tasks.sync_repository_url()
    print("\n".join(f"updated {p}" for p in changed) or "Everything already names that URL.")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m course_utils`` and the ``course-utils`` script."""
    from . import tasks

    parser = argparse.ArgumentParser(prog="python -m course_utils", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {"install": "create or refresh .venv from requirements/lock.txt",
             "test": "unit tests + notebooks under nbval (fast, offline): what CI runs",
             "unit": "unit tests only", "nbval": "notebooks under nbval only (fast, offline)",
             "course": "execute every notebook and render HTML to build/ (solutions: build/solutions/)",
             "lab": "open JupyterLab on notebooks/"}
    for name in tasks.TASKS:
        p = sub.add_parser(name, help=helps[name])
        p.add_argument("--here", action="store_true",
                       help="use the current environment (conda, Colab) instead of .venv")
        if name == "course":
            p.add_argument("--core", action="store_true",
                           help="only the core path (sections not marked Optional), into build/core")
        if name == "install":
            p.add_argument("--test", action="store_true", help="with --here: add the test tools")
            p.add_argument("--lab", action="store_true", help="with --here: add JupyterLab")
        p.add_argument("args", nargs=argparse.REMAINDER,
                       help="passed on to pytest / the renderer / jupyter lab")
        p.set_defaults(func=_task)
    sub.add_parser("sync-url", help="copy pyproject's repository URL into notebooks and README"
                   ).set_defaults(func=_sync_url)
    sub.add_parser("doctor", help="report versions, devices and cached assets").set_defaults(
        func=_doctor)
    p = sub.add_parser("prune", help="delete cached results that this code version can no "
                       "longer load (the data folder only grows as the course is updated)")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.set_defaults(func=_prune)
    p = sub.add_parser("prefetch", help="download every asset for offline use")
    p.add_argument("names", nargs="*", help="only these assets (default: all)")
    p.set_defaults(func=_prefetch)
    p = sub.add_parser("stage", help="prefetch assets and train every model notebooks 02-06 "
                       "need into the data folder (before a workshop)")
    p.add_argument("--data-dir", help="folder to stage (default: COURSE_DATA_DIR or <repo>/data)")
    p.add_argument("--fast", action="store_true",
                   help="stage fast-mode models (to try the procedure; classes run in full mode)")
    p.add_argument("--no-fetch", action="store_true", help="do not download assets first")
    p.add_argument("--check", action="store_true",
                   help="only verify a staged folder (checksums, models load, versions)")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    p.set_defaults(func=_stage)
    p = sub.add_parser("cut", help="write core-path copies of the notebooks (optional sections "
                       "left out) for a class to Run All")
    p.add_argument("--out", default="notebooks/core", help="folder, relative to the repository")
    p.set_defaults(func=_cut)
    p = sub.add_parser("book", help="build the rendered course book (a website) from executed "
                       "notebooks")
    p.add_argument("--from", dest="source", default="build",
                   help="folder of executed notebooks (default: build/, from `course`; or the "
                   "data folder's staged/, from `stage`)")
    p.add_argument("--out", default="build/book", help="where the website goes")
    p.set_defaults(func=_book)
    p = sub.add_parser("render", help="execute notebooks and write HTML")
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--out", default="build")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    p.add_argument("--core", action="store_true",
                   help="only the core path: leave out sections tagged optional (into OUT/core)")
    p.add_argument("--root", help="notebooks in a sub-folder of ROOT go to the same sub-folder of --out")
    p.set_defaults(func=_render)
    args = parser.parse_args(argv)
    if args.func in (_doctor, _prefetch, _render, _stage, _book) and not tasks.course_packages_importable():
        # e.g. `python -m course_utils doctor` from a bare Python on Windows: use the course's venv
        return tasks.run_in_venv(["-m", "course_utils", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
