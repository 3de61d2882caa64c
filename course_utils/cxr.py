"""The real chest X-ray data: the COVID-19 Radiography Database and a stratified split.

The data set is the Kaggle "COVID-19 Radiography Database"
(``tawsifurrahman/covid19-radiography-database``). Nothing here downloads
anything: get the archive yourself, unzip it, and point ``COURSE_CXR_DIR`` at it::

    COVID-19_Radiography_Dataset/          <- COURSE_CXR_DIR (or its parent)
        COVID/
            images/COVID-1.png ...
            masks/COVID-1.png ...          (optional lung masks, same file names)
        Normal/images/Normal-1.png ...
        Lung_Opacity/images/...
        Viral Pneumonia/images/...

Typical use::

    root = real_data_dir()                               # None if COURSE_CXR_DIR is unset
    data = load_radiography(root, image_size=128, limit_per_class=pick(None, 200))
    train_idx, test_idx = stratified_split(data.labels, test_fraction=0.1, seed=SEED)

Conventions: images are ``(n, H, W, 1)`` float32 in [0, 1]; labels are int64 with
**1 = the first class in ``classes``** (COVID by default) and 0 for every other class.
"""
from __future__ import annotations

import os
import re
import struct
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import _checks

__all__ = [
    "ENV_VAR",
    "KAGGLE_DATASET",
    "DatasetError",
    "RadiographySet",
    "load_radiography",
    "read_xray",
    "real_data_dir",
    "source_of",
    "stratified_split",
]

#: Environment variable naming the extracted data set (or its parent folder).
ENV_VAR = "COURSE_CXR_DIR"
#: Kaggle identifier of the data set (``kaggle datasets download -d ...``).
KAGGLE_DATASET = "tawsifurrahman/covid19-radiography-database"
#: Folder names the Kaggle archive extracts to; ``root`` may be the parent of one of them.
DATASET_DIRNAMES = ("COVID-19_Radiography_Dataset", "COVID-19 Radiography Database")
#: File suffixes read as images (compared case-insensitively). Everything else is ignored.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})

_DEFAULT_CLASSES = ("COVID", "Normal")
_UINT16_MAX = 65535.0
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as PIL's "L"
# What a broken or unsupported file can raise while Pillow decodes it.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
                  Image.DecompressionBombError)

EXPECTED_LAYOUT = """\
    COVID-19_Radiography_Dataset/          (give this folder or its parent)
        COVID/
            images/COVID-1.png ...
            masks/COVID-1.png ...          (optional lung masks, same file names)
        Normal/
            images/Normal-1.png ...
        Viral Pneumonia/images/...         (other classes are optional)"""

HOW_TO_GET = (
    f"Download the Kaggle dataset '{KAGGLE_DATASET}' "
    f"(https://www.kaggle.com/datasets/{KAGGLE_DATASET}, or "
    f"`kaggle datasets download -d {KAGGLE_DATASET}`), unzip it, and set "
    f"{ENV_VAR}=/path/to/COVID-19_Radiography_Dataset (or its parent folder)."
)


class DatasetError(ValueError):
    """The chest X-ray data set is missing, laid out wrongly, or contains an unreadable file."""


# --------------------------------------------------------------------------- result type


@dataclass(frozen=True, eq=False, repr=False)
class RadiographySet:
    """Images, labels and (optional) lung masks loaded by :func:`load_radiography`.

    Attributes:
        images: ``(n, H, W, 1)`` float32 in [0, 1], ``H == W == image_size``.
        labels: ``(n,)`` int64; **1 = first class in** ``classes`` (COVID), 0 = any other class.
        lung_masks: ``(n, H, W)`` bool lung masks, or ``None`` when no loaded image has a
            mask. When only some images have one, the others get an all-False mask and
            ``has_mask`` tells them apart.
        has_mask: ``(n,)`` bool, True where ``lung_masks[i]`` comes from a mask file
            (always present; all False when ``lung_masks`` is None).
        paths: the ``n`` image files, in the same order as the arrays.
        skipped: ``(path, reason)`` for every unreadable file (``skip_bad=True`` only): an
            image left out, or a mask whose image was kept with ``has_mask=False``.
        classes: the class folder names that were requested, in order.
        class_ids: ``(n,)`` int64 index into ``classes`` (for more than two classes).
        original_shapes: ``(n, 2)`` int64 height and width in pixels of each file before resizing.
        sources: ``(n,)`` str where each image came from (the host of its URL in the data set's
            ``<Class>.metadata.xlsx``/``.csv``, e.g. ``"github.com/ieee8023"``, see
            :func:`source_of`), "unknown" for an image without a row; ``None`` when no class
            has a metadata sheet.
        patients: ``(n,)`` str patient identifiers from ``patients.csv`` in the data set folder
            (columns ``file`` and ``patient``; "" for an image without a row), or ``None``.
    """

    images: np.ndarray
    labels: np.ndarray
    lung_masks: np.ndarray | None
    has_mask: np.ndarray
    paths: list[Path]
    skipped: list[tuple[Path, str]]
    classes: tuple[str, ...]
    class_ids: np.ndarray
    original_shapes: np.ndarray | None = None
    sources: np.ndarray | None = None
    patients: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        counts = np.bincount(self.class_ids, minlength=len(self.classes))
        per_class = ", ".join(f"{c}={k}" for c, k in zip(self.classes, counts))
        masks = "none" if self.lung_masks is None else f"{int(self.has_mask.sum())}/{len(self)}"
        extra = "" if self.sources is None else f", sources={len(set(self.sources))}"
        extra += "" if self.patients is None else f", patients={len(set(self.patients))}"
        return (f"RadiographySet(n={len(self)}, image_shape={self.images.shape[1:]}, "
                f"{per_class}, positive={self.classes[0]!r}, masks={masks}, "
                f"skipped={len(self.skipped)}{extra})")


# --------------------------------------------------------------------------- locating files


def real_data_dir() -> Path | None:
    """Where the real data set lives: ``COURSE_CXR_DIR``, else the course's data folder.

    Returns:
        ``Path(os.environ["COURSE_CXR_DIR"])`` (with ``~`` expanded) when the variable is set
        and non-empty; else ``<data folder>/COVID-19_Radiography_Dataset`` if that folder exists
        (where ``doctor`` and the asset manifest say to put it); else ``None`` (the notebooks
        then use the synthetic phantom data).

    Raises:
        DatasetError: the variable is set but the path does not exist or is not a folder.
    """
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        from . import assets

        try:
            return assets.fetch("covid_radiography", offline=True)
        except assets.AssetUnavailable:
            return None
    path = Path(value).expanduser()
    if not path.is_dir():
        problem = "is not a directory" if path.exists() else "does not exist"
        raise DatasetError(f"{ENV_VAR} is set to '{path}', which {problem}.\n"
                           f"Expected layout:\n{EXPECTED_LAYOUT}\n{HOW_TO_GET}")
    return path


def _norm_name(name: str) -> str:
    """Folder-name key that treats spaces, underscores and hyphens alike, ignoring case."""
    return re.sub(r"[\s_\-]+", " ", name).strip().casefold()


def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _find_child_dir(parent: Path, name: str) -> Path | None:
    """``parent/name`` if it is a folder, else the one sub-folder whose name matches loosely."""
    exact = parent / name
    if exact.is_dir():
        return exact
    matches = [p for p in _subdirs(parent) if _norm_name(p.name) == _norm_name(name)]
    if len(matches) > 1:
        raise DatasetError(f"Several folders in '{parent}' match {name!r}: "
                           f"{[p.name for p in matches]}. Rename or remove all but one.")
    return matches[0] if matches else None


def _is_image_file(path: Path) -> bool:
    """PNG/JPEG by suffix (any case); hidden files such as macOS ``._x.png`` are ignored."""
    return (path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
            and path.is_file())


def _list_images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if _is_image_file(p)), key=lambda p: p.name)


def _resolve_root(root: str | os.PathLike[str], classes: Sequence[str]) -> Path:
    """The folder holding the class folders: ``root`` itself or its dataset sub-folder."""
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"COVID-19 Radiography Database not found: '{path}' does not exist.\n"
                           f"Expected layout:\n{EXPECTED_LAYOUT}\n{HOW_TO_GET}")
    if not path.is_dir():
        raise DatasetError(f"'{path}' is not a directory. Expected layout:\n{EXPECTED_LAYOUT}")
    if any(_find_child_dir(path, c) is not None for c in classes):
        return path
    for name in DATASET_DIRNAMES:
        sub = _find_child_dir(path, name)
        if sub is not None:
            return sub
    return path  # the missing-class error below explains what is there instead


def _class_images(dataset_dir: Path, cls: str) -> tuple[list[Path], Path | None]:
    """Image files of one class (sorted by name) and its ``masks/`` folder, if any."""
    existing = [p.name for p in _subdirs(dataset_dir)]
    class_dir = _find_child_dir(dataset_dir, cls)
    if class_dir is None:
        raise DatasetError(f"Class folder '{dataset_dir / cls}' not found. Folders in "
                           f"'{dataset_dir}': {existing or 'none'}.\n"
                           f"Expected layout:\n{EXPECTED_LAYOUT}\n{HOW_TO_GET}")
    images_dir = _find_child_dir(class_dir, "images")
    paths = _list_images(images_dir) if images_dir is not None else []
    if not paths:
        if _list_images(class_dir):
            raise DatasetError(
                f"Wrong layout: the images of class {cls!r} are directly in '{class_dir}', "
                f"but they must be in an 'images/' sub-folder ('{class_dir / 'images'}'), "
                f"with optional lung masks in 'masks/'.\nExpected layout:\n{EXPECTED_LAYOUT}")
        where = images_dir if images_dir is not None else class_dir / "images"
        raise DatasetError(f"No PNG/JPEG images for class {cls!r} in '{where}' (missing or "
                           f"empty). Class folders in '{dataset_dir}': {existing}.\n"
                           f"Expected layout:\n{EXPECTED_LAYOUT}")
    return paths, _find_child_dir(class_dir, "masks")


def _subsample(paths: list[Path], limit: int | None, seed: int, class_index: int) -> list[Path]:
    """A seeded random subset of ``limit`` paths, kept in sorted order (all if limit is None)."""
    if limit is None or limit >= len(paths):
        return paths
    rng = np.random.default_rng([seed, class_index])
    keep = np.sort(rng.choice(len(paths), size=limit, replace=False))
    return [paths[i] for i in keep]


def _mask_lookup(mask_dir: Path | None) -> dict[str, Path]:
    """Mask files keyed by exact file name and by lower-case stem (fallback match)."""
    if mask_dir is None:
        return {}
    files = _list_images(mask_dir)
    table = {p.stem.lower(): p for p in files}
    table.update({p.name: p for p in files})
    return table


# --------------------------------------------------------------------------- metadata


def source_of(url: str) -> str:
    """A short name of where an image came from, from its source URL.

    ``"https://github.com/ieee8023/covid-chestxray-dataset"`` -> ``"github.com/ieee8023"`` (on
    code-hosting sites the owner is the source); any other host gives its name without
    ``www.`` (``"https://www.kaggle.com/c/rsna-..."`` -> ``"kaggle.com"``). An empty or
    non-URL value gives ``"unknown"``.
    """
    from urllib.parse import urlparse

    text = str(url).strip()
    parsed = urlparse(text if "://" in text else f"//{text}")
    host = (parsed.hostname or "").removeprefix("www.")
    if not host or "." not in host:
        return "unknown"
    owner = parsed.path.strip("/").split("/")[0]
    if host in {"github.com", "gitlab.com", "bitbucket.org"} and owner:
        return f"{host}/{owner.lower()}"
    return host


def _read_table(path: Path) -> list[dict[str, str]]:
    """Rows of a ``.csv`` or ``.xlsx`` sheet as dicts with upper-case, stripped column names."""
    import pandas as pd

    frame = (pd.read_csv(path, dtype=str) if path.suffix.lower() == ".csv"
             else pd.read_excel(path, dtype=str))  # .xlsx needs openpyxl
    frame.columns = [str(c).strip().upper() for c in frame.columns]
    return frame.fillna("").to_dict("records")


def _metadata_file(dataset_dir: Path, cls: str) -> Path | None:
    """``<Class>.metadata.xlsx`` (or ``.csv``) next to the class folders, matched loosely."""
    want = {_norm_name(f"{cls}.metadata{ext}") for ext in (".xlsx", ".csv")}
    found = [p for p in sorted(dataset_dir.iterdir())
             if p.is_file() and not p.name.startswith(".") and _norm_name(p.name) in want]
    return found[0] if found else None


def _key(name: str) -> str:
    """Lookup key of an image named in a sheet: its stem, lower case (``COVID-1.png`` -> ``covid-1``)."""
    name = Path(str(name).strip()).name
    return (Path(name).stem if Path(name).suffix.lower() in IMAGE_SUFFIXES else name).lower()


def _read_sources(dataset_dir: Path, cls: str) -> tuple[dict[str, str] | None, str | None]:
    """``{image key: source}`` from the class's metadata sheet; ``(None, problem)`` if unusable."""
    path = _metadata_file(dataset_dir, cls)
    if path is None:
        return None, None
    try:
        rows = _read_table(path)
    except ImportError as err:
        return None, f"cannot read '{path.name}' ({err}); install openpyxl to use it"
    except Exception as err:  # noqa: BLE001 - a damaged sheet must not stop the course
        return None, f"cannot read '{path.name}': {type(err).__name__}: {err}"
    if rows and not {"FILE NAME", "URL"} <= set(rows[0]):
        return None, f"'{path.name}' has no 'FILE NAME' and 'URL' columns"
    return {_key(r["FILE NAME"]): source_of(r["URL"]) for r in rows}, None


def _read_patients(dataset_dir: Path) -> tuple[dict[str, str] | None, str | None]:
    """``{image key: patient id}`` from ``patients.csv`` (columns ``file``, ``patient``)."""
    path = dataset_dir / "patients.csv"
    if not path.is_file():
        return None, None
    try:
        rows = _read_table(path)
    except Exception as err:  # noqa: BLE001
        return None, f"cannot read '{path.name}': {type(err).__name__}: {err}"
    if rows and not {"FILE", "PATIENT"} <= set(rows[0]):
        return None, f"'{path.name}' has no 'file' and 'patient' columns"
    return {_key(r["FILE"]): str(r["PATIENT"]).strip() for r in rows}, None


# --------------------------------------------------------------------------- decoding


def _to_unit_gray(img: Image.Image) -> np.ndarray:
    """Any PIL image as a 2-D float32 luminance array in [0, 1].

    8-bit data is divided by 255; 16-bit data by 65535 (the format's maximum, never the
    image's own maximum, so intensities stay comparable between files). Colour is turned
    into ITU-R 601-2 luma (as PIL's ``"L"``); an alpha channel is ignored.
    """
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img).astype(np.float32) / _UINT16_MAX
    elif mode == "F":
        arr = np.asarray(img, dtype=np.float32)
    elif mode in ("L", "LA", "La"):
        arr = np.asarray(img.getchannel(0), dtype=np.float32) / 255.0
    elif mode == "1":
        arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    else:  # RGB, RGBA, P, PA, CMYK, YCbCr, ...
        rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
        arr = (rgb @ _LUMA) / 255.0
    return np.clip(arr, 0.0, 1.0, out=arr)


def _resize(gray: np.ndarray, size: int, resample: Image.Resampling) -> np.ndarray:
    """Resize a 2-D float32 array to ``(size, size)`` in PIL's 32-bit float mode."""
    if gray.shape == (size, size):
        return gray
    out = Image.fromarray(gray).resize((size, size), resample)  # float32 array -> mode "F"
    return np.asarray(out, dtype=np.float32)


def _decode(path: Path) -> np.ndarray:
    """Decode one file to a 2-D float32 array in [0, 1] at its own size (raises Pillow's errors)."""
    with Image.open(path) as img:
        img.load()
        return _to_unit_gray(img)


def read_xray(path: str | os.PathLike[str], image_size: int = 128) -> np.ndarray:
    """Read one PNG/JPEG chest X-ray as the course's models expect it.

    Args:
        path: an 8- or 16-bit grayscale, RGB or RGBA PNG/JPEG of any size.
        image_size: output side length; the image is resized (antialiased bilinear)
            to ``image_size x image_size`` without keeping the aspect ratio.

    Returns:
        ``(image_size, image_size)`` float32 in [0, 1].

    Raises:
        DatasetError: the file cannot be decoded (the message names it).
    """
    _checks.positive_int(image_size, "image_size")
    path = Path(path)
    try:
        gray = _decode(path)
    except _DECODE_ERRORS as err:
        raise DatasetError(f"Cannot read image '{path}': {err}") from err
    return np.clip(_resize(gray, image_size, Image.Resampling.BILINEAR), 0.0, 1.0)


def _read_mask(path: Path, image_size: int) -> np.ndarray:
    """A lung mask file as ``(image_size, image_size)`` bool (nearest resize, then > 0.5)."""
    return _resize(_decode(path), image_size, Image.Resampling.NEAREST) > 0.5


# --------------------------------------------------------------------------- loading


def _check_load_args(image_size: int, classes: Sequence[str], limit_per_class: int | None,
                     seed: int) -> None:
    _checks.positive_int(image_size, "image_size")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if isinstance(classes, str) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise ValueError(f"classes must be a non-empty sequence of folder names, e.g. "
                         f"('COVID', 'Normal'), got {classes!r}")
    if len({_norm_name(c) for c in classes}) != len(classes):
        raise ValueError(f"classes contains duplicates: {classes!r}")
    if limit_per_class is not None:
        _checks.positive_int(limit_per_class, "limit_per_class")


def load_radiography(
    root: str | os.PathLike[str],
    image_size: int = 128,
    classes: Sequence[str] = _DEFAULT_CLASSES,
    *,
    skip_bad: bool = False,
    limit_per_class: int | None = None,
    seed: int = 0,
) -> RadiographySet:
    """Load the COVID-19 Radiography Database (Kaggle layout) into memory.

    Args:
        root: the extracted ``COVID-19_Radiography_Dataset`` folder or its parent.
        image_size: side length H = W of the returned images (antialiased bilinear
            resize; masks use nearest neighbour).
        classes: class folder names, e.g. ``("COVID", "Normal", "Viral Pneumonia")``.
            Matching ignores case and treats spaces/underscores/hyphens alike when
            there is no exact match. **The first class is the positive one (label 1).**
        skip_bad: if False (default) an unreadable image raises :class:`DatasetError`;
            if True it is recorded in ``.skipped`` and one warning summarises the count.
        limit_per_class: keep a seeded random subset of at most this many images per
            class (fast mode); ``None`` keeps everything.
        seed: non-negative seed of that subset (drawn per class, independently).

    Returns:
        A :class:`RadiographySet`: ``images`` ``(n, H, W, 1)`` float32 in [0, 1],
        ``labels`` ``(n,)`` int64 (1 = ``classes[0]``), ``lung_masks`` ``(n, H, W)`` bool
        or None, ``has_mask`` ``(n,)`` bool, ``paths``, ``skipped``, ``original_shapes``,
        and ``sources``/``patients`` when the folder has metadata sheets / ``patients.csv``
        (a sheet that cannot be read gives a warning and is ignored). Order: classes in
        the given order, files sorted by name within a class. Non-image files
        (``.xlsx``, ``README.md.txt``, ``.DS_Store``, ...) are ignored.

    Raises:
        DatasetError: missing root, missing/empty class folder, images not in an
            ``images/`` sub-folder, or (without ``skip_bad``) an unreadable file.
        ValueError: invalid arguments.
    """
    _check_load_args(image_size, classes, limit_per_class, seed)
    classes = tuple(classes)
    dataset_dir = _resolve_root(root, classes)

    items: list[tuple[Path, int, Path | None]] = []  # (image, class index, mask or None)
    unreadable_mask_dirs: list[tuple[Path, str]] = []
    source_maps: list[dict[str, str] | None] = []
    problems: list[str] = []
    patient_map, problem = _read_patients(dataset_dir)
    problems += [problem] if problem else []
    for ci, cls in enumerate(classes):
        paths, mask_dir = _class_images(dataset_dir, cls)
        sources, problem = _read_sources(dataset_dir, cls)
        source_maps.append(sources)
        problems += [problem] if problem else []
        try:
            masks = _mask_lookup(mask_dir)
        except OSError as err:  # e.g. a masks/ folder without read permission
            if not skip_bad:
                raise DatasetError(f"Cannot list the lung masks in '{mask_dir}': {err}. Fix its "
                                   "permissions, or pass skip_bad=True to load the images "
                                   "without masks.") from err
            unreadable_mask_dirs.append((mask_dir, f"unreadable mask folder (images kept "
                                                   f"without masks): {err}"))
            masks = {}
        for p in _subsample(paths, limit_per_class, seed, ci):
            items.append((p, ci, masks.get(p.name) or masks.get(p.stem.lower())))

    n, size = len(items), int(image_size)
    images = np.empty((n, size, size, 1), dtype=np.float32)  # preallocated: one image decoded at a time
    want_masks = any(m is not None for _, _, m in items)
    lung = np.zeros((n, size, size), dtype=bool) if want_masks else None
    has_mask = np.zeros(n, dtype=bool)
    class_ids = np.empty(n, dtype=np.int64)
    shapes = np.empty((n, 2), dtype=np.int64)
    kept: list[Path] = []
    skipped: list[tuple[Path, str]] = list(unreadable_mask_dirs)

    for path, ci, mask_path in items:
        k = len(kept)
        try:
            gray = _decode(path)
            shapes[k] = gray.shape
            images[k, :, :, 0] = np.clip(_resize(gray, size, Image.Resampling.BILINEAR), 0, 1)
        except _DECODE_ERRORS as err:
            if not skip_bad:
                raise DatasetError(f"Cannot read image '{path}': {err}. Fix or delete the file, "
                                   f"or pass skip_bad=True to skip unreadable files.") from err
            skipped.append((path, f"unreadable image: {err}"))
            continue
        if mask_path is not None:
            try:
                lung[k] = _read_mask(mask_path, size)
                has_mask[k] = True
            except _DECODE_ERRORS as err:
                if not skip_bad:
                    raise DatasetError(f"Cannot read lung mask '{mask_path}': {err}. Pass "
                                       f"skip_bad=True to keep the image without a mask.") from err
                skipped.append((mask_path, f"unreadable mask (image kept, has_mask=False): {err}"))
        class_ids[k] = ci
        kept.append(path)

    for problem in problems:
        warnings.warn(f"load_radiography: {problem}; continuing without it.", stacklevel=2)
    if skipped:
        warnings.warn(f"load_radiography skipped {len(skipped)} unreadable file(s) under "
                      f"'{dataset_dir}'; see the .skipped attribute for the list.", stacklevel=2)
    m = len(kept)
    if m == 0:
        raise DatasetError(f"No readable images for classes {list(classes)} under '{dataset_dir}'.")
    if lung is not None and not has_mask[:m].any():
        lung = None  # every mask was unreadable
    class_ids = class_ids[:m]
    sources = None
    if any(sm is not None for sm in source_maps):
        sources = np.array([(source_maps[ci] or {}).get(_key(p.name), "unknown")
                            for p, ci in zip(kept, class_ids)], dtype=object)
    patients = None
    if patient_map is not None:
        patients = np.array([patient_map.get(_key(p.name), "") for p in kept], dtype=object)
    return RadiographySet(
        images=images[:m],
        labels=(class_ids == 0).astype(np.int64),
        lung_masks=None if lung is None else lung[:m],
        has_mask=has_mask[:m],
        paths=kept,
        skipped=skipped,
        classes=classes,
        class_ids=class_ids,
        original_shapes=shapes[:m],
        sources=sources,
        patients=patients,
    )


# --------------------------------------------------------------------------- splitting


def stratified_split(
    labels: np.ndarray | Sequence[int], test_fraction: float = 0.1, seed: int = 42,
    groups: np.ndarray | Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A reproducible stratified train/test split (scikit-learn ``train_test_split``).

    Args:
        labels: ``(n,)`` (or ``(n, 1)``) class labels, any hashable integer/str values.
        test_fraction: share of every class that goes to the test set, in (0, 1).
        seed: random seed; the same labels and seed always give the same split.
        groups: optional ``(n,)`` patient identifiers: then every patient's images land in
            the same part (scikit-learn ``StratifiedGroupKFold`` with ``round(1 /
            test_fraction)`` folds, the first fold is the test set), so the class shares
            and the test size are only approximately kept. Empty identifiers count as one
            patient each.

    Returns:
        ``(train_idx, test_idx)``: sorted int64 index arrays, disjoint, together
        covering ``range(n)``; each class's test count is within one of
        ``test_fraction`` times its size.

    Raises:
        ValueError: bad ``test_fraction``, labels not 1-D/empty, a class with fewer than
            two members, or a test/train part too small to hold every class.
    """
    from sklearn.model_selection import train_test_split

    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    if isinstance(test_fraction, bool) or not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    values, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        raise ValueError(f"every class needs at least 2 samples to stratify; "
                         f"class {values[counts.argmin()].item()!r} has {int(counts.min())}")
    n_test = int(np.ceil(float(test_fraction) * y.size))
    if n_test < len(values) or y.size - n_test < len(values):
        raise ValueError(f"test_fraction={test_fraction} of {y.size} samples gives {n_test} test "
                         f"samples; both parts need at least one per class ({len(values)} classes)")
    if groups is not None:
        return _grouped_split(y, np.asarray(groups, dtype=object), float(test_fraction), int(seed))
    train, test = train_test_split(np.arange(y.size), test_size=float(test_fraction),
                                   stratify=y, random_state=int(seed), shuffle=True)
    return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)


def _grouped_split(y: np.ndarray, groups: np.ndarray, test_fraction: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split that keeps each patient's images together (see :func:`stratified_split`)."""
    from sklearn.model_selection import StratifiedGroupKFold

    if groups.shape != y.shape:
        raise ValueError(f"groups must have one entry per label: {groups.shape} vs {y.shape}")
    ids = np.array([g if str(g).strip() else f"\0image-{i}" for i, g in enumerate(groups)], dtype=object)
    n_patients = len(set(ids))
    folds = max(2, min(int(round(1.0 / test_fraction)), n_patients))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    train, test = next(splitter.split(np.zeros(y.size), y, ids))
    if len(np.unique(y[test])) < len(np.unique(y)) or len(np.unique(y[train])) < len(np.unique(y)):
        raise ValueError(f"cannot split {n_patients} patients so that both parts hold every class")
    return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)
