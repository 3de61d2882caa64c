"""Stage a workshop data folder: every asset, trained model and slow result notebooks 01-06 need.

``python -m course_utils stage`` (or ``make stage``) runs notebooks 01-06 and their solution
notebooks once, headless, with the data folder as their cache: every model they train is saved
there under the same cache key a learner's notebook will ask for, because it is the notebooks'
own code that trains them. The slowest computed results (notebook 05's attacks, 03's
perturbation maps and faithfulness curves, 01's slow VGG16 maps; :mod:`course_utils.memo`) land
in ``<data>/results/`` the same way. The executed notebooks are kept in ``<data>/staged/`` as reference
outputs (what a correct run prints). A manifest (``<data>/staged/manifest.json``) records the
mode, the software stack and a checksum of every model; ``stage --check`` and ``doctor`` verify
the folder against it.

Copying the folder to another machine (or pointing ``COURSE_DATA_DIR`` at it) makes the
notebooks load instead of train: the cache keys hold only what defines a model (its data, seed,
epochs, architecture and training recipe), not paths or machine names. When a notebook asks for a
model the staged folder does not have, :func:`explain_miss` says what differs (most often fast
vs full mode, or other data) before it trains.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import sys
from pathlib import Path

from filelock import FileLock, Timeout

from . import config, data, memo

#: Sub-folder of the data folder with the manifest and the executed reference notebooks.
STAGED_DIR = "staged"
#: Held (an OS file lock in ``STAGED_DIR``) while :func:`stage` runs: one staging per folder.
LOCK_NAME = ".stage.lock"
MANIFEST_NAME = "manifest.json"
#: The notebooks staged: 02-06 train models; 01 keeps its slow VGG16 maps (learner notebooks;
#: their solutions are added when present).
STAGED_NOTEBOOKS = ("01", "02", "03", "04", "05", "06")
#: Manifest format version (bump when its fields change meaning).
MANIFEST_VERSION = 1


def staged_notebooks(root: Path, numbers: tuple[str, ...] = STAGED_NOTEBOOKS) -> list[Path]:
    """Learner notebooks ``NN_*.ipynb`` for ``numbers``, then their solution notebooks, in order."""
    learner = [p for n in numbers for p in sorted((root / "notebooks").glob(f"{n}_*.ipynb"))]
    solutions = [p for n in numbers
                 for p in sorted((root / "notebooks" / "solutions").glob(f"{n}_*.ipynb"))]
    return learner + solutions


def software_stack() -> dict[str, str]:
    """Versions that decide whether a saved model loads and computes the same: Python, TF, Keras."""
    from .environment import version

    return {"python": platform.python_version(), "tensorflow": version("tensorflow"),
            "keras": version("keras"), "numpy": version("numpy"), "course": version("saliency-course"),
            "system": f"{platform.system()} {platform.machine()}"}


def current_source() -> str:
    """"real" when ``COURSE_CXR_DIR`` names a data set for this run, else "phantom"."""
    return "real" if os.environ.get("COURSE_CXR_DIR", "").strip() else "phantom"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_models(folder: Path) -> list[dict]:
    """Every complete cached model in ``folder/models``: file, size (bytes), sha256, settings."""
    rows = []
    for path in sorted((folder / "models").glob("*.keras")):
        meta_path = path.with_suffix(".json")
        if path.name.startswith(".") or not meta_path.is_file():
            continue  # temporary files of a save in progress, or a model without its record
        try:
            settings = json.loads(meta_path.read_text(encoding="utf-8")).get("settings", {})
        except (OSError, ValueError):
            continue
        rows.append({"file": path.name, "bytes": path.stat().st_size, "sha256": _sha256(path),
                     "settings": settings})
    return rows


def manifest_path(folder: Path) -> Path:
    return folder / STAGED_DIR / MANIFEST_NAME


def read_manifest(folder: Path) -> dict | None:
    """The staging manifest of ``folder`` (None if it was never staged or the file is unreadable)."""
    try:
        manifest = json.loads(manifest_path(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and "models" in manifest else None


def write_manifest(folder: Path, manifest: dict) -> Path:
    """Write the manifest via a temporary file and a rename (never a half-written manifest)."""
    path = manifest_path(folder)
    config.make_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check(folder: Path, *, load: bool = False) -> tuple[list[str], list[str]]:
    """Verify a staged folder: ``(problems, notes)``, both lists of one-line messages.

    A problem makes the folder unusable as staged (no manifest, a model missing or changed since
    staging, or one Keras cannot load when ``load``); a note is worth knowing (another software
    stack than the one that staged it, the mode it was staged in).
    """
    manifest = read_manifest(folder)
    if manifest is None:
        return [f"{folder} was not staged (no {STAGED_DIR}/{MANIFEST_NAME}): run "
                "`python -m course_utils stage` there first."], []
    problems, notes = [], []
    for row in manifest["models"]:
        path = folder / "models" / row["file"]
        if not path.is_file():
            problems.append(f"missing model {row['file']} (was it copied?)")
        elif path.stat().st_size != row["bytes"] or _sha256(path) != row["sha256"]:
            problems.append(f"model {row['file']} differs from the staged copy (damaged or replaced)")
        elif load:
            try:
                import keras

                keras.models.load_model(path)
            except Exception as e:  # noqa: BLE001 - any load failure is reported
                problems.append(f"model {row['file']} does not load here: {type(e).__name__}: "
                                f"{str(e).splitlines()[0][:120] if str(e) else ''}")
    failed = [n for n, v in manifest.get("notebooks", {}).items() if not v.get("ok")]
    if failed:
        problems.append(f"staging did not finish these notebooks: {', '.join(failed)}")
    here = software_stack()
    differs = [f"{k} {manifest['stack'].get(k)} there, {v} here" for k, v in here.items()
               if k in ("tensorflow", "keras", "numpy") and manifest["stack"].get(k) != v]
    if differs:
        notes.append("staged with another software stack (" + "; ".join(differs) + "): the models "
                     "should still load; numbers may differ in the last digits.")
    notes.extend(_cache_notes(folder))
    n = len(manifest["models"])
    notes.append(f"staged {manifest['created'][:16].replace('T', ' ')} UTC in "
                 f"{'fast' if manifest['fast'] else 'full'} mode on {manifest['source']} data: "
                 f"{n} model{'s' * (n != 1)}; run the notebooks in the same mode"
                 + (" (COURSE_FAST=1)" if manifest["fast"] else " (COURSE_FAST unset)")
                 + " to load them.")
    return problems, notes


def _cache_notes(folder: Path) -> list[str]:
    """One line each on the folder's cached results and rendered phantom sets (if any)."""
    notes = []
    inv = memo.inventory(folder / memo.RESULTS_DIR)
    if inv.current or inv.stale or inv.unreadable:
        line = (f"{memo.RESULTS_DIR}/: {len(inv.current)} cached results "
                f"({inv.size(inv.current) / 1e6:.0f} MB) that load with this code")
        if inv.stale or inv.unreadable:
            line += (f"; {len(inv.stale) + len(inv.unreadable)} "
                     f"({inv.size(inv.stale + inv.unreadable) / 1e6:.0f} MB) from another version of "
                     "the course's code or of TensorFlow/Keras, or damaged, will not load: those "
                     "results are computed again in class (stage the folder again with this commit)")
        notes.append(line + ".")
    sets = sorted((folder / data.PHANTOM_DIR).glob("phantom_*.npz"))
    if sets:
        notes.append(f"{data.PHANTOM_DIR}/: {len(sets)} rendered phantom set(s), "
                     f"{memo.Inventory.size(sets) / 1e9:.2f} GB.")
    return notes


def _differences(asked: dict, staged: dict) -> list[str]:
    """Settings keys whose values differ, as "key asked X, staged Y" (fingerprints shortened)."""
    out = []
    for key in sorted(set(asked) | set(staged)):
        a, s = asked.get(key, "-"), staged.get(key, "-")
        if a != s:
            out.append(f"{key}: asked {str(a)[:12]}, staged {str(s)[:12]}")
    return out


def explain_miss(settings: dict) -> str | None:
    """Why a staged data folder has no model for ``settings`` (None if no folder was staged).

    Called by :func:`course_utils.models.load_or_train_cxr_model` before it trains, so that a
    learner with a staged folder sees what differs instead of a silent retrain: the mode, the
    data, or a model the staging run did not produce.
    """
    for folder in config.read_dirs():
        manifest = read_manifest(folder)
        if manifest is None:
            continue
        reasons = []
        if bool(manifest.get("fast")) != config.fast_mode():
            reasons.append(f"the folder was staged in {'fast' if manifest['fast'] else 'full'} mode "
                           f"and this run is in {'fast' if config.fast_mode() else 'full'} mode "
                           f"({'set' if manifest['fast'] else 'unset'} COURSE_FAST to use it)")
        if manifest.get("source") != current_source():
            reasons.append(f"the folder was staged on {manifest.get('source')} data and this run "
                           f"uses {current_source()} data (COURSE_CXR_DIR differs)")
        staged = [row["settings"] for row in manifest["models"]]
        if staged and not reasons:
            closest = min(staged, key=lambda s: len(_differences(settings, s)))
            reasons.append("no staged model has these settings; the closest differs in "
                           + "; ".join(_differences(settings, closest)))
        return (f"note: the staged folder {folder} has no model for this request: "
                + "; ".join(reasons) + ". Training it here.")
    return None


def stage(folder: Path | None = None, *, fast: bool = False, fetch: bool = True,
          notebooks: list[Path] | None = None, timeout: int = 3600) -> int:
    """Fetch assets, run the training notebooks into ``folder`` and write its manifest; 0 if all ok.

    ``folder``: the data folder to stage (default: the course's data folder, ``COURSE_DATA_DIR``
    or ``<repo>/data``). ``fast``: stage fast-mode models (for trying the procedure; a class runs
    in full mode). ``fetch``: download missing assets first (skipped offline). ``notebooks``:
    which notebooks to run (default: :func:`staged_notebooks`).
    """
    folder = Path(folder).expanduser().resolve() if folder else config.data_dir()
    config.make_dir(folder / STAGED_DIR)
    lock = FileLock(str(folder / STAGED_DIR / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"Another `python -m course_utils stage` is staging {folder} now (it holds "
              f"{lock.lock_file}). Two at once would train the same models twice and leave a "
              "manifest that does not match the files: wait for it to finish (then run `python -m "
              "course_utils stage --check` here), or stage another folder.", file=sys.stderr)
        return 2
    try:
        return _stage_with_env(folder, fast, fetch, notebooks, timeout)
    finally:
        lock.release()


def _stage_with_env(folder: Path, fast: bool, fetch: bool, notebooks: list[Path] | None,
                    timeout: int) -> int:
    """:func:`_stage` with ``COURSE_DATA_DIR`` and ``COURSE_FAST`` set for the notebooks' kernels."""
    saved = {k: os.environ.get(k) for k in ("COURSE_DATA_DIR", "COURSE_FAST")}
    # the notebooks' kernels inherit these: the same folder and mode as the staging run
    os.environ["COURSE_DATA_DIR"] = str(folder)
    os.environ["COURSE_FAST"] = "1" if fast else "0"
    try:
        return _stage(folder, fast, fetch, notebooks, timeout)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _stage(folder: Path, fast: bool, fetch: bool, notebooks: list[Path] | None,
           timeout: int) -> int:
    """The body of :func:`stage`, with the environment already set for the notebooks."""
    from . import assets, render, tasks

    print(f"Staging {folder} in {'fast' if fast else 'full'} mode.", flush=True)
    if fetch and not config.offline_forced():
        for name, outcome in assets.prefetch().items():
            print(f"  asset {name:<22} {outcome}", flush=True)
    elif fetch:
        print("  COURSE_OFFLINE=1: assets not fetched (notebook 01 will use its stand-ins).")
    paths = notebooks if notebooks is not None else staged_notebooks(tasks.repo_root())
    out = folder / STAGED_DIR
    results = {}
    for path in paths:
        verdict = render.render_one(path, out, timeout=timeout)
        results[path.name] = {"ok": verdict.ok, "seconds": round(verdict.seconds, 1),
                              "error": verdict.error}
        print(f"{path.name}: {'ok' if verdict.ok else 'FAILED: ' + verdict.error} in "
              f"{verdict.seconds:.0f} s", flush=True)
    removed, nbytes = memo.prune(folder / memo.RESULTS_DIR)
    if removed:
        print(f"Removed {removed} cached result(s) ({nbytes / 1e6:.0f} MB) of another version of the "
              "course's code or software stack: they could never load again.", flush=True)
    source = current_source()
    manifest = {"version": MANIFEST_VERSION,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "fast": fast, "source": source, "stack": software_stack(), "notebooks": results,
                "models": cached_models(folder)}
    print(f"Wrote {write_manifest(folder, manifest)}: {len(manifest['models'])} models.")
    problems, notes = check(folder, load=True)
    for line in notes:
        print("note:", line)
    for line in problems:
        print("PROBLEM:", line, file=sys.stderr)
    if not problems:
        print(f"Staged. Copy {folder} to each learner (or set COURSE_DATA_DIR to it) and run "
              "`python -m course_utils doctor` there; reference outputs are in "
              f"{out}/*.html.")
    return 1 if problems else 0
