"""The chest X-ray data of notebooks 02-05: the real data set if present, else the phantom set.

``load_course_cxr()`` is the one call the notebooks make. It returns the images, labels,
region masks and a reproducible stratified 90/10 split, and says where the data came from:

* ``COURSE_CXR_DIR`` set -> the COVID-19 Radiography Database (COVID vs Normal), with the
  data set's lung masks where present;
* otherwise -> the synthetic phantom set (:mod:`course_utils.phantom`), which also knows
  where the lesions, heart, spine, abdomen and "L" marker are.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _checks, config, cxr, memo, phantom

#: Phantom images generated in full / fast mode (the article's test set had 1,381 images:
#: 10 % of 13,808).
PHANTOM_N = (8000, 1500)
#: Below this many images the test share grows from 10 % (the article's) to 20 %, so that a
#: small real data set still has a test set whose confidence intervals mean something.
SMALL_DATA_SET = 2000


@dataclass(frozen=True)
class CourseCXR:
    """Chest X-rays with labels, masks and the course's train/test split.

    ``images``: (n, H, W, 1) float32 in [0, 1]; ``labels``: (n,) int64, 1 = COVID;
    ``masks``: region -> (n, H, W) bool (phantom: lungs, lesions, heart, spine, abdomen,
    marker, body; real data: lungs where the data set has masks, else nothing);
    ``train_idx`` / ``test_idx``: sorted disjoint indices (stratified 90/10);
    ``source``: "phantom" or "real"; ``phantom_set``: the :class:`phantom.PhantomSet` for
    exact counterfactual re-rendering (None for real data); ``fingerprint``: identifies
    the data for model caching. Real data only (else None): ``origins`` ``(n,)`` str, where
    each image came from (the data set's metadata sheets, see :func:`cxr.source_of`);
    ``has_lung_mask`` ``(n,)`` bool; ``original_shapes`` ``(n, 2)`` height, width in pixels
    before resizing; ``patients`` ``(n,)`` str when the data set names them (then the split
    keeps each patient in one part).
    """

    images: np.ndarray
    labels: np.ndarray
    masks: Mapping[str, np.ndarray]
    train_idx: np.ndarray
    test_idx: np.ndarray
    source: str
    description: str
    fingerprint: str
    phantom_set: phantom.PhantomSet | None = field(default=None, repr=False)
    origins: np.ndarray | None = field(default=None, repr=False)
    has_lung_mask: np.ndarray | None = field(default=None, repr=False)
    original_shapes: np.ndarray | None = field(default=None, repr=False)
    patients: np.ndarray | None = field(default=None, repr=False)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def test_fraction(self) -> float:
        """The share of the images in the test set."""
        return len(self.test_idx) / len(self.labels)

    def split(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """``(images, labels)`` of the "train" or "test" part."""
        idx = {"train": self.train_idx, "test": self.test_idx}[part]
        return self.images[idx], self.labels[idx]


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


class RowwiseImages:
    """A read-only ``(n, H, W, 1)`` float32 image array whose rows are made when they are read.

    The data variants (:func:`mask_to_lungs`, :func:`keep_only`, :func:`hide_lungs`,
    :func:`with_training_cap`) return one of these instead of a full edited copy: a notebook
    that loads a staged model reads only the 800 test rows of a variant, so the other 7,200
    edited images (470 MB at 128 px) are never made. Training reads the rows it needs, in the
    same way. Indexing follows NumPy: ``x[rows]`` (int, slice, int or bool array, optionally
    followed by more indices, e.g. ``x[:, ~corners]``) returns a plain array of those rows;
    ``np.asarray(x)`` makes all of them (in chunks, so no larger temporary than the result).

    ``make_rows(rows)``: given sorted-or-not ``(m,)`` int64 row indices in ``range(n)``, returns
    their ``(m, H, W, 1)`` float32 images.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, n: int, image_shape: tuple[int, ...],
                 make_rows: Callable[[np.ndarray], np.ndarray]):
        self.shape = (int(n), *map(int, image_shape))
        self._make_rows = make_rows

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def _of(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        out = np.asarray(self._make_rows(rows), np.float32)
        if out.shape != (len(rows), *self.shape[1:]):
            raise ValueError(f"make_rows gave shape {out.shape} for {len(rows)} rows, expected "
                             f"{(len(rows), *self.shape[1:])}")
        return out

    def __getitem__(self, key) -> np.ndarray:
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) and key else (key, ())
        if first is Ellipsis:
            return np.asarray(self)[key]
        rows = np.arange(len(self))[first]  # NumPy's own rules (and errors) for the row index
        if np.ndim(rows) == 0:
            return self._of(rows[None])[0][rest]
        out = np.empty((len(rows), *self.shape[1:]), np.float32)
        for sl in _checks.batches(len(rows), 512):
            out[sl] = self._of(rows[sl])
        return out[(slice(None), *rest)]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if copy is False:
            raise ValueError("RowwiseImages makes its rows when read: np.asarray cannot avoid a copy")
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def take(self, rows: np.ndarray) -> RowwiseImages:
        """The lazy array of ``self[rows]``: nothing is made until it is read."""
        rows = np.asarray(rows, np.int64)
        return RowwiseImages(len(rows), self.shape[1:], lambda r: self._of(rows[r]))

    def __repr__(self) -> str:
        return f"RowwiseImages(shape={self.shape}, dtype=float32)"


def _region_rows(masks: Mapping[str, np.ndarray], key: str, rows: np.ndarray) -> np.ndarray:
    """The ``(m, H, W)`` bool masks of region ``key`` for ``rows``, without unpacking the others."""
    if isinstance(masks, phantom.PackedMasks):
        return masks.rows(key, rows)
    return np.asarray(masks[key][rows], bool)


def _lazy(cxr_data: CourseCXR, make_rows: Callable[[np.ndarray], np.ndarray]) -> RowwiseImages:
    return RowwiseImages(len(cxr_data.labels), cxr_data.images.shape[1:], make_rows)


def files_id(paths) -> str:
    """What identifies a real data set wherever it is copied: its files' names and sizes.

    Each file counts as ``<Class>/images/<name>`` (the last three parts of its path) with its size
    in bytes: not the folder's absolute path (a staged model must be found again on a learner's
    machine, where the data lives elsewhere, and whether ``COURSE_CXR_DIR`` names the data set or
    its parent), and not modification times (copies change them).
    """
    lines = [f"{'/'.join(Path(p).parts[-3:])}|{Path(p).stat().st_size}" for p in paths]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def test_fraction_for(n: int) -> float:
    """The test share for ``n`` images: 0.1 (the article's 90/10), 0.2 below :data:`SMALL_DATA_SET`."""
    return 0.1 if n >= SMALL_DATA_SET else 0.2


def load_course_cxr(image_size: int = 128, seed: int = config.SEED, n: int | None = None,
                    source: str = "auto", **phantom_knobs) -> CourseCXR:
    """The course's chest X-ray data (real if ``COURSE_CXR_DIR`` is set, else phantom).

    ``n``: phantom images (default 8,000; 1,500 in fast mode) or, for real data, the
    maximum per class (default: all; 300 per class in fast mode). ``source``: "auto" (real
    data when available), "phantom" (always the phantom, e.g. for an exercise that needs
    its ground truth) or "real" (raise :class:`cxr.DatasetError` if there is none).
    ``phantom_knobs`` go to :func:`phantom.make_phantom_cxr` (ignored for real data).
    The test share is 10 % for the phantom, :func:`test_fraction_for` the size of a real set.
    """
    if source not in ("auto", "phantom", "real"):
        raise ValueError(f"source must be 'auto', 'phantom' or 'real', got {source!r}")
    root = cxr.real_data_dir() if source != "phantom" else None
    if root is None and source == "real":
        raise cxr.DatasetError(f"No real chest X-ray data: {cxr.ENV_VAR} is not set.\n{cxr.HOW_TO_GET}")
    if root is not None:
        return _load_real(root, image_size, seed, n)
    n = n if n is not None else config.pick(*PHANTOM_N)
    ps = phantom_set(n, image_size=image_size, seed=seed, **phantom_knobs)
    train_idx, test_idx = cxr.stratified_split(ps.labels, 0.1, seed=seed)  # as the article
    covid = int(ps.labels.sum())
    return CourseCXR(
        ps.images, ps.labels, ps.masks, train_idx, test_idx, "phantom",
        f"synthetic phantom chest X-rays (seed {seed}): {covid:,} COVID and {n - covid:,} normal",
        _fingerprint("phantom", ps.params), ps)


#: Sub-folder of the data folder that keeps rendered phantom sets (:func:`phantom_set`).
PHANTOM_DIR = "phantom"
#: Rows rendered afresh to check a stored phantom set before it is used.
PHANTOM_CHECK_ROWS = 32
_PHANTOM_ARRAYS = ("images", "labels", "has_marker", "marker_corner", "abdomen_gain",
                   "lesion_extent", "subtle", "has_benign_blob", "site", "border_px")


def phantom_set(n: int, image_size: int = 128, seed: int = 0, **knobs) -> phantom.PhantomSet:
    """:func:`phantom.make_phantom_cxr`, kept in the data folder: rendered once, then loaded.

    Rendering 8,000 images takes about 6 s on 2 cores, and every notebook needs them; loading
    the stored set (0.65 GB: float32 pixels and one byte of mask bits per pixel) takes about a
    second. The file is named by the set's parameters, the phantom code (its syntax, not its
    docstrings: :func:`memo.source_digest`) and the NumPy version.
    Before a stored set is used, its first :data:`PHANTOM_CHECK_ROWS` images are rendered
    afresh and must agree (pixels to 1e-5, masks but for a few boundary pixels): a set that
    another version of the code or of NumPy would draw differently, or a damaged file, is
    rendered again (and stored again) instead. A read-only shared folder is read; new sets go
    to the user's own cache (:func:`config.writable_dir`), and a failed write only costs the
    rendering next time.
    """
    check = phantom.make_phantom_cxr(n, image_size, seed, rows=np.arange(min(n, PHANTOM_CHECK_ROWS)), **knobs)
    code = memo.source_digest([Path(phantom.__file__)])
    digest = hashlib.sha256(f"{check.params!r}|{np.__version__}|{code}".encode()).hexdigest()[:16]
    name = f"phantom_{n}x{image_size}_seed{seed}_{digest}.npz"
    for folder in config.read_dirs(PHANTOM_DIR):
        path = folder / name
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    stored = phantom.PhantomSet(
                        **{k: z[k] for k in _PHANTOM_ARRAYS}, masks=phantom.PackedMasks(z["mask_bits"]),
                        params=check.params)
            except Exception as e:  # noqa: BLE001 - a damaged file of any kind is rendered again
                print(f"note: the stored phantom set {path} could not be read ({type(e).__name__}); "
                      "rendering it again.", flush=True)
                continue
            if _agrees(stored, check):
                return stored
            print(f"note: the stored phantom set {path} differs from a fresh rendering of its first "
                  f"{len(check)} images (other NumPy build or CPU?); rendering it again.", flush=True)
    ps = phantom.make_phantom_cxr(n, image_size, seed, **knobs)
    folder = config.writable_dir(PHANTOM_DIR)
    try:
        memo.write_npz(folder / name, mask_bits=ps.masks.bits,
                       **{k: getattr(ps, k) for k in _PHANTOM_ARRAYS})
    except OSError as e:
        print(f"note: the phantom set could not be stored in {folder} ({e.strerror or e}); it is "
              "rendered again next time.", flush=True)
    return ps


def _agrees(stored: phantom.PhantomSet, fresh: phantom.PhantomSet) -> bool:
    """The stored set's first rows are the freshly rendered ``fresh`` (pixels to 1e-5, each
    mask but for 4 pixels, and the per-image values), and its arrays have the right lengths.
    """
    k, n = len(fresh), fresh.params.n
    if any(len(getattr(stored, a)) != n for a in _PHANTOM_ARRAYS) or stored.masks.bits.shape[0] != n:
        return False
    if stored.images.shape[1:] != fresh.images.shape[1:]:
        return False
    if not np.allclose(stored.images[:k], fresh.images, atol=1e-5, rtol=0):
        return False
    first = np.arange(k)  # unpack only the checked rows (all 8,000 would cost 2 s per load)
    if any((stored.masks.rows(key, first) != fresh.masks[key]).sum() > 4 for key in phantom.MASK_KEYS):
        return False
    return all(np.array_equal(getattr(stored, a)[:k], getattr(fresh, a))
               for a in ("labels", "has_marker", "marker_corner", "subtle", "has_benign_blob", "site"))


def _load_real(root, image_size: int, seed: int, n: int | None) -> CourseCXR:
    """The real data set at ``root`` as a :class:`CourseCXR` (see :func:`load_course_cxr`)."""
    limit = n if n is not None else config.pick(None, 300)
    real = cxr.load_radiography(root, image_size=image_size, limit_per_class=limit,
                                seed=seed, skip_bad=True)
    fraction = test_fraction_for(len(real))
    by_patient = real.patients is not None and len(set(real.patients)) < len(real)
    train_idx, test_idx = cxr.stratified_split(real.labels, fraction, seed=seed,
                                               groups=real.patients if by_patient else None)
    masks = {"lungs": real.lung_masks} if real.lung_masks is not None else {}
    covid = int(real.labels.sum())
    notes = []
    if real.lung_masks is not None:
        notes.append(f"lung masks for {int(real.has_mask.sum()):,} of {len(real):,} images")
    if real.sources is not None:
        notes.append(f"{len(set(real.sources))} sources named in the metadata")
    if by_patient:
        notes.append(f"{len(set(real.patients)):,} patients, split by patient")
    if real.skipped:
        notes.append(f"{len(real.skipped)} unreadable files skipped")
    return CourseCXR(
        real.images, real.labels, masks, train_idx, test_idx, "real",
        f"COVID-19 Radiography Database at {root}: {covid:,} COVID and {len(real) - covid:,} "
        f"normal images; test share {len(test_idx) / len(real):.0%}"
        + (f" ({'; '.join(notes)})" if notes else ""),
        _fingerprint("real", files_id(real.paths), image_size, limit, seed, len(real),
                     by_patient, fraction, real.has_mask.tobytes()),
        origins=real.sources, has_lung_mask=real.has_mask, original_shapes=real.original_shapes,
        patients=real.patients)


def dilate(masks: np.ndarray, px: int) -> np.ndarray:
    """(n, H, W) bool masks grown by ``px`` pixels (4-connected steps, per image); 0 = unchanged."""
    if not px:
        return masks
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(2, 1)[None]  # no growth across images
    return ndimage.binary_dilation(masks, structure, iterations=px)


def apply_lung_mask(images: np.ndarray, lungs: np.ndarray, dilate_px: int = 3) -> np.ndarray:
    """Zero every pixel outside the lung fields grown by ``dilate_px`` pixels.

    ``images``: (n, H, W, 1) in [0, 1]; ``lungs``: (n, H, W) bool. An image whose lung mask is
    empty (no mask available) is returned unchanged rather than blanked.
    """
    out = np.empty(np.shape(images), np.float32)
    for sl in _checks.batches(len(out), 512):  # in chunks: no full-size temporary masks
        keep = dilate(lungs[sl], dilate_px) | ~lungs[sl].any(axis=(1, 2))[:, None, None]
        out[sl] = np.where(keep[..., None], images[sl], np.float32(0))
    return out


def mask_to_lungs(cxr_data: CourseCXR, dilate_px: int = 3) -> CourseCXR:
    """The same data with everything outside the (slightly dilated) lung fields set to 0.

    A mitigation for shortcuts outside the lungs (burnt-in markers, abdomen, borders): the
    model can then only use what is inside the lungs. Needs lung masks (the phantom has
    them; the Kaggle data set has them for every image). When only some images have a mask,
    the returned split keeps **only those images** (``train_idx``/``test_idx`` shrink; an
    unmasked image would show the model everything); compare models on its ``test_idx``.
    The images are a :class:`RowwiseImages`: a row is masked when it is read.

    Raises:
        ValueError: no lung masks, or masks for one class only / too few images to train.
    """
    if "lungs" not in cxr_data.masks:
        raise ValueError("this data set has no lung masks; masking to the lungs is impossible")
    train_idx, test_idx, note = cxr_data.train_idx, cxr_data.test_idx, ""
    has = cxr_data.has_lung_mask
    if has is not None and not has.all():
        train_idx, test_idx = train_idx[has[train_idx]], test_idx[has[test_idx]]
        for part, idx, least in (("training", train_idx, 10), ("test", test_idx, 4)):
            if len(np.unique(cxr_data.labels[idx])) < 2 or len(idx) < least:
                raise ValueError(f"lung masks exist for {int(has.sum())} of {len(has)} images, which "
                                 f"leaves the {part} set without both classes (or under {least} "
                                 "images): a lung-masked model cannot be trained and tested fairly")
        note = f", only the {int(has.sum()):,} images that have a mask"
    images, masks = cxr_data.images, cxr_data.masks
    lung_masked = _lazy(cxr_data, lambda rows: apply_lung_mask(
        images[rows], _region_rows(masks, "lungs", rows), dilate_px))
    return dataclasses.replace(
        cxr_data, images=lung_masked,
        train_idx=train_idx, test_idx=test_idx,
        description=cxr_data.description + f"; masked to the lungs (+{dilate_px} px{note})",
        fingerprint=_fingerprint(cxr_data.fingerprint, "lung-mask", dilate_px, len(train_idx)),
        phantom_set=None)


def lung_proxy(image_size: int) -> np.ndarray:
    """A fixed box where the lung fields of a frontal chest film usually lie, (S, S) bool.

    Rows 12-80 % and columns 10-90 % of the image: generous, so that on a typical PA film it
    covers both lungs, the heart and the mediastinum. Used by :func:`hide_lungs` when not
    every image has a lung mask (mixing masks and a box would let the box's shape leak).
    """
    _checks.positive_int(image_size, "image_size")
    box = np.zeros((image_size, image_size), bool)
    r0, r1 = int(0.12 * image_size), int(np.ceil(0.80 * image_size))
    c0, c1 = int(0.10 * image_size), int(np.ceil(0.90 * image_size))
    box[r0:r1, c0:c1] = True
    return box


def frame_mask(shape: int | tuple[int, int], fraction: float = 0.06) -> np.ndarray:
    """The outer band of the image, ``round(fraction * min(H, W))`` pixels wide (at least 1).

    ``shape``: S for an (S, S) image or (H, W); ``fraction`` in (0, 0.5). Returns (H, W) bool,
    True on the band: where collimation edges, shutters and film borders lie (the phantom's
    site frames are at most 7 % of the side; the 6 % default covers most of them).
    """
    h, w = (shape, shape) if isinstance(shape, int | np.integer) else shape
    _checks.positive_int(h, "height")
    _checks.positive_int(w, "width")
    if not 0 < fraction < 0.5:
        raise ValueError(f"fraction must be in (0, 0.5), got {fraction!r}")
    b = max(1, int(round(fraction * min(h, w))))
    band = np.ones((h, w), bool)
    band[b:h - b, b:w - b] = False
    return band


def keep_only(cxr_data: CourseCXR, keep: np.ndarray, what: str) -> CourseCXR:
    """The same data with every pixel outside ``keep`` set to 0 (a model that sees only ``keep``).

    ``keep``: (S, S) bool for every image, or (n, S, S) bool per image. ``what`` names the
    variant in the description and the cache key (e.g. "corners only"). The images are a
    :class:`RowwiseImages`: a row is edited when it is read.
    """
    keep = np.asarray(keep, bool)
    n = len(cxr_data.labels)
    if keep.shape[-2:] != cxr_data.images.shape[1:3] or keep.ndim not in (2, 3) \
            or (keep.ndim == 3 and len(keep) != n):
        raise ValueError(f"keep must be (S, S) or (n, S, S) with n = {n} and S = "
                         f"{cxr_data.image_size}, got {keep.shape}")
    keep_rows = (lambda rows: keep) if keep.ndim == 2 else (lambda rows: keep[rows])
    return _keep_only(cxr_data, keep_rows, what, hashlib.sha256(np.packbits(keep)).hexdigest()[:12])


def _keep_only(cxr_data: CourseCXR, keep_rows: Callable[[np.ndarray], np.ndarray], what: str,
               keep_id: str) -> CourseCXR:
    """:func:`keep_only` with the kept pixels given per row: ``keep_rows(rows)`` -> (m, S, S) or
    (S, S) bool; ``keep_id`` identifies them in the cache key.
    """
    images = cxr_data.images

    def kept(rows: np.ndarray) -> np.ndarray:
        return np.where(keep_rows(rows)[..., None], images[rows], np.float32(0))

    return dataclasses.replace(
        cxr_data, images=_lazy(cxr_data, kept), description=cxr_data.description + f"; {what}",
        fingerprint=_fingerprint(cxr_data.fingerprint, "keep-only", what, keep_id),
        phantom_set=None)


def hide_lungs(cxr_data: CourseCXR, dilate_px: int = 3) -> CourseCXR:
    """The same data with the lung fields blacked out: what can a model learn *without* the lungs?

    Uses the (dilated) lung masks when every image has one, else :func:`lung_proxy` for all
    images. A model trained on this that still separates the classes is reading something
    other than the lungs (source, age, markers, borders): the DeGrave et al. (2021) test.
    The masks are dilated row by row as the images are read (:class:`RowwiseImages`).
    """
    every = "lungs" in cxr_data.masks and (cxr_data.has_lung_mask is None or cxr_data.has_lung_mask.all())
    if every:
        masks = cxr_data.masks
        return _keep_only(cxr_data, lambda rows: ~dilate(_region_rows(masks, "lungs", rows), dilate_px),
                          f"lungs hidden (masks +{dilate_px} px)", f"lung masks +{dilate_px} px")
    return keep_only(cxr_data, ~lung_proxy(cxr_data.image_size), "lungs hidden (a central box)")


#: Side of each corner square as a fraction of the image side: where laterality letters and burnt-in
#: text usually sit. Shared by :func:`corner_masks` and the film statistics of
#: :func:`course_utils.shortcuts.image_statistics`, so "the corners" mean one thing everywhere.
CORNER_FRACTION = 0.18


def corner_masks(n: int, image_size: int, fraction: float = CORNER_FRACTION) -> dict[str, np.ndarray]:
    """Square corner regions, (n, S, S) bool each: a *proxy* for where burnt-in markers sit.

    Real radiographs do not come with marker annotations; laterality letters and text are
    usually in the corners, so the share of saliency in the corners is a proxy (it also
    counts anything else that lies there). ``fraction``: side of each square / image side.
    """
    k = max(1, int(round(fraction * image_size)))
    corners = np.zeros((image_size, image_size), bool)
    corners[:k, :k] = corners[:k, -k:] = corners[-k:, :k] = corners[-k:, -k:] = True
    return {"corners (marker proxy)": np.broadcast_to(corners, (n, image_size, image_size))}


def _rows(cxr_data: CourseCXR, rows: np.ndarray) -> dict:
    """The per-image fields of ``cxr_data`` restricted to ``rows`` (sorted indices), as a dict.

    The images are not copied: they are a :class:`RowwiseImages` reading those rows of the
    parent's images when they are read.
    """
    masks = cxr_data.masks
    masks = (phantom.PackedMasks(masks.bits[rows]) if isinstance(masks, phantom.PackedMasks)
             else {k: v[rows] for k, v in masks.items()})
    images = cxr_data.images
    lazy = images.take(rows) if isinstance(images, RowwiseImages) else RowwiseImages(
        len(rows), images.shape[1:], lambda r: images[rows[r]])
    fields = {"images": lazy, "labels": cxr_data.labels[rows], "masks": masks}
    for name in ("origins", "has_lung_mask", "original_shapes", "patients"):
        if (value := getattr(cxr_data, name)) is not None:
            fields[name] = value[rows]
    return fields


def with_training_cap(cxr_data: CourseCXR, max_train: int, seed: int = config.SEED) -> CourseCXR:
    """The same data with at most ``max_train`` training images (a seeded, stratified subset).

    For quick probe models (e.g. :func:`hide_lungs`): the test split is unchanged, so their
    test results compare directly with the full model's (``split("test")`` gives the same images
    in the same order). Only the rows of the two splits are kept (the indices are renumbered;
    ``phantom_set`` is dropped; the images are read from ``cxr_data``'s rows when they are
    needed, :class:`RowwiseImages`), so a variant built from the result edits at most 3,200
    images, not 8,000. Returns ``cxr_data`` itself when it has no more training images than that.
    """
    _checks.positive_int(max_train, "max_train")
    if len(cxr_data.train_idx) <= max_train:
        return cxr_data
    keep, _ = cxr.stratified_split(cxr_data.labels[cxr_data.train_idx],
                                   1 - max_train / len(cxr_data.train_idx), seed=seed)
    train_idx = np.sort(cxr_data.train_idx[keep])
    rows = np.union1d(train_idx, cxr_data.test_idx)
    return dataclasses.replace(
        cxr_data, **_rows(cxr_data, rows), phantom_set=None,
        train_idx=np.searchsorted(rows, train_idx), test_idx=np.searchsorted(rows, cxr_data.test_idx),
        description=cxr_data.description + f"; {len(keep):,} training images",
        fingerprint=_fingerprint(cxr_data.fingerprint, "train-cap", max_train, seed))


def with_permuted_labels(cxr_data: CourseCXR, seed: int = config.SEED) -> CourseCXR:
    """The same images with the *training* labels shuffled among the training images.

    For Adebayo et al.'s data-randomisation test: a model trained on this sees the same images
    and the same share of each class, but no link between an image and its label, so it cannot
    learn anything that predicts the label. The test labels stay true, so its test accuracy
    shows that (it should be at chance). ``phantom_set`` is dropped: its labels no longer match.
    """
    rng = np.random.default_rng(seed)
    labels = cxr_data.labels.copy()
    labels[cxr_data.train_idx] = rng.permutation(labels[cxr_data.train_idx])
    return dataclasses.replace(
        cxr_data, labels=labels,
        description=cxr_data.description + f"; training labels permuted (seed {seed})",
        fingerprint=_fingerprint(cxr_data.fingerprint, "permuted-labels", seed),
        phantom_set=None)


def equalise_region(images: np.ndarray, masks: np.ndarray, value: float | None = None) -> np.ndarray:
    """A counterfactual edit for any data with masks: give a region the same mean brightness in every image.

    Each image's pixels inside its mask are shifted by one constant so that their mean becomes
    ``value`` (default: the mean of the region's per-image means over all images that have the
    region); texture inside the region and every pixel outside it are kept; the result is
    clipped to [0, 1]. Images with an empty mask are returned unchanged. E.g. equalise the
    abdomen: if p moves, the model used the abdomen's brightness (on the phantom,
    :func:`phantom.set_abdomen_brightness` is the exact version).

    Args:
        images: (n, H, W, 1) or (n, H, W) float in [0, 1].
        masks: (n, H, W) bool, True inside the region.
        value: the target mean brightness, in [0, 1].

    Returns:
        float32 array of the shape of ``images``.
    """
    x = np.asarray(images, np.float32)
    m = np.asarray(masks, bool)
    if x.shape[:3] != m.shape or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] != 1):
        raise ValueError(f"images (n, H, W[, 1]) and masks (n, H, W) must match, got {x.shape} and {m.shape}")
    plane = x[..., 0] if x.ndim == 4 else x
    count = m.sum(axis=(1, 2))
    has = count > 0
    if not has.any():
        return x.copy()
    means = np.where(has, (plane * m).sum(axis=(1, 2)) / np.maximum(count, 1), 0.0)
    target = float(means[has].mean()) if value is None else float(value)
    if not 0 <= target <= 1:
        raise ValueError(f"value must be in [0, 1], got {target!r}")
    shifted = np.where(m, plane + (target - means)[:, None, None], plane)
    out = np.clip(shifted, 0.0, 1.0).astype(np.float32)
    return out[..., None] if x.ndim == 4 else out
