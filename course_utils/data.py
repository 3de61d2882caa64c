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
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from . import config, cxr, phantom

#: Phantom images generated in full / fast mode (the article's test set had 1,381 images:
#: 10 % of 13,808).
PHANTOM_N = (8000, 1500)


@dataclass(frozen=True)
class CourseCXR:
    """Chest X-rays with labels, masks and the course's train/test split.

    ``images``: (n, H, W, 1) float32 in [0, 1]; ``labels``: (n,) int64, 1 = COVID;
    ``masks``: region -> (n, H, W) bool (phantom: lungs, lesions, heart, spine, abdomen,
    marker, body; real data: lungs where the data set has masks, else nothing);
    ``train_idx`` / ``test_idx``: sorted disjoint indices (stratified 90/10);
    ``source``: "phantom" or "real"; ``phantom_set``: the :class:`phantom.PhantomSet` for
    exact counterfactual re-rendering (None for real data); ``fingerprint``: identifies
    the data for model caching.
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

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def split(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """``(images, labels)`` of the "train" or "test" part."""
        idx = {"train": self.train_idx, "test": self.test_idx}[part]
        return self.images[idx], self.labels[idx]


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def load_course_cxr(image_size: int = 128, seed: int = config.SEED, n: int | None = None,
                    **phantom_knobs) -> CourseCXR:
    """The course's chest X-ray data (real if ``COURSE_CXR_DIR`` is set, else phantom).

    ``n``: phantom images (default 8,000; 1,500 in fast mode) or, for real data, the
    maximum per class (default: all; 300 per class in fast mode). ``phantom_knobs`` go to
    :func:`phantom.make_phantom_cxr` (ignored for real data).
    """
    root = cxr.real_data_dir()
    if root is not None:
        limit = n if n is not None else config.pick(None, 300)
        real = cxr.load_radiography(root, image_size=image_size, limit_per_class=limit,
                                    seed=seed, skip_bad=True)
        train_idx, test_idx = cxr.stratified_split(real.labels, 0.1, seed=seed)
        masks = {"lungs": real.lung_masks} if real.lung_masks is not None else {}
        covid = int(real.labels.sum())
        return CourseCXR(
            real.images, real.labels, masks, train_idx, test_idx, "real",
            f"COVID-19 Radiography Database at {root}: {covid:,} COVID and "
            f"{len(real) - covid:,} normal images"
            + (f" ({len(real.skipped)} unreadable files skipped)" if real.skipped else ""),
            _fingerprint("real", str(root), image_size, limit, seed, len(real)))
    n = n if n is not None else config.pick(*PHANTOM_N)
    ps = phantom.make_phantom_cxr(n, image_size=image_size, seed=seed, **phantom_knobs)
    train_idx, test_idx = cxr.stratified_split(ps.labels, 0.1, seed=seed)
    covid = int(ps.labels.sum())
    return CourseCXR(
        ps.images, ps.labels, ps.masks, train_idx, test_idx, "phantom",
        f"synthetic phantom chest X-rays (seed {seed}): {covid:,} COVID and {n - covid:,} normal",
        _fingerprint("phantom", ps.params), ps)


def apply_lung_mask(images: np.ndarray, lungs: np.ndarray, dilate_px: int = 3) -> np.ndarray:
    """Zero every pixel outside the lung fields grown by ``dilate_px`` pixels.

    ``images``: (n, H, W, 1) in [0, 1]; ``lungs``: (n, H, W) bool. An image whose lung mask is
    empty (no mask available) is returned unchanged rather than blanked.
    """
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(2, 1)[None]
    keep = ndimage.binary_dilation(lungs, structure, iterations=dilate_px) if dilate_px else lungs
    keep = keep | ~lungs.any(axis=(1, 2))[:, None, None]
    return np.where(keep[..., None], images, np.float32(0)).astype(np.float32, copy=False)


def mask_to_lungs(cxr_data: CourseCXR, dilate_px: int = 3) -> CourseCXR:
    """The same data with everything outside the (slightly dilated) lung fields set to 0.

    A mitigation for shortcuts outside the lungs (burnt-in markers, abdomen, borders): the
    model can then only use what is inside the lungs. Needs lung masks (the phantom has
    them; the real data set has them for most images).
    """
    lungs = cxr_data.masks.get("lungs")
    if lungs is None:
        raise ValueError("this data set has no lung masks; masking to the lungs is impossible")
    return dataclasses.replace(
        cxr_data, images=apply_lung_mask(cxr_data.images, lungs, dilate_px),
        description=cxr_data.description + f"; masked to the lungs (+{dilate_px} px)",
        fingerprint=_fingerprint(cxr_data.fingerprint, "lung-mask", dilate_px), phantom_set=None)


def corner_masks(n: int, image_size: int, fraction: float = 0.18) -> dict[str, np.ndarray]:
    """Square corner regions, (n, S, S) bool each: a *proxy* for where burnt-in markers sit.

    Real radiographs do not come with marker annotations; laterality letters and text are
    usually in the corners, so the share of saliency in the corners is a proxy (it also
    counts anything else that lies there). ``fraction``: side of each square / image side.
    """
    k = max(1, int(round(fraction * image_size)))
    corners = np.zeros((image_size, image_size), bool)
    corners[:k, :k] = corners[:k, -k:] = corners[-k:, :k] = corners[-k:, -k:] = True
    return {"corners (marker proxy)": np.broadcast_to(corners, (n, image_size, image_size))}
