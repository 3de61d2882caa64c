"""Synthetic "phantom" frontal chest radiographs that know their ground truth.

The course cannot download the COVID-19 Radiography Database offline, so notebooks 02-05
default to this generator. Each image is drawn from a few dozen per-image random numbers
(pose, body habitus, exposure, disease, shortcuts) and rendered with vectorised NumPy:

* **Anatomy** (in a canonical, pose-free frame ``u`` left→right, ``v`` top→bottom, both
  roughly in [-1, 1]): body outline, two lung fields (dark), mediastinum, heart on the
  *image right* (= patient's left, radiographs are viewed as if facing the patient), spine,
  posterior ribs, clavicles, diaphragm domes and the upper abdomen (bright), lung vessel
  texture and quantum noise; random rotation/shift/scale, contrast, gamma and exposure.
* **Disease** (label 1, "COVID"): ground-glass opacities that are bilateral, peripheral and
  lower-zone predominant, confined to the lungs, of varying extent; a fraction of cases is
  *subtle* (one or two faint, small patches). Images of both classes may contain a faint
  *benign blob* anywhere in the lungs, so faint signal alone is not decisive.
* **Shortcuts** with a strength knob in [0, 1]: (a) a burnt-in laterality "L" marker, mostly
  in NORMAL images; (b) abdomen brightness, higher in COVID images. Strength 0 makes each
  independent of the label; ``flip_shortcuts=True`` swaps the class dependence (markers
  mostly in COVID, bright abdomen in normals) to measure how much a model relies on them.
* **Acquisition sites** (``site_strength`` in [0, 1], default 0 = none): two simulated
  hospitals whose films differ in *global* character -- tone curve, sharpness, grain and a
  collimation frame (:class:`SiteStyle`, :data:`SITE_STYLES`) -- with different COVID
  prevalence (``site_prevalence``), so a model can learn the site instead of the disease: a
  diffuse source shortcut no region localises (DeGrave et al. 2021). ``flip_site=True`` (or
  :func:`other_site`) films the same patients at the other site.
* **Counterfactual anatomy** (not tied to the label): ``heart_scale`` (cardiomegaly-like heart)
  and ``spine_curve`` (a scoliosis-like lateral bend of the thoracic spine, default 0 =
  straight), to ask whether a model -- or its map -- notices structures the label ignores.

Counterfactuals are *exact*: every random number is drawn whatever the rendering switches
say, so ``rerender(ps, render_marker=False)`` (or :func:`remove_marker`,
:func:`remove_lesions`, :func:`set_abdomen_brightness`) returns the very same images with
one component changed, and pixels outside that component's mask are bit-identical (with
sites, the sharpness filter spreads the change by up to 2 pixels at 128 px).
:func:`erase_marker` is an approximate in-painting fallback for images without a generator.

Everything is deterministic per ``seed`` (``np.random.default_rng``) and bit-identical on
repeated calls on the same machine/NumPy version. 10,000 images of 128 px take ≈7 s on two
CPU cores.

Calibration (``benchmarks/calibrate_phantom.py``: 8,000 images, 90/10 split, the course CNN):
with the default knobs the CNN reaches ≈95 % test accuracy (the article's range), about half
of the COVID cases stay "COVID" once their opacities are removed, and flipping both shortcuts
drops accuracy by ≈40 points: the model leans on the shortcuts, as in the article.
Sites (3,000 images, marker and abdomen shortcuts off, one seed): without sites the CNN
reaches 86 % after 4 epochs and 90 % after 12, all from the opacities. With ``site_strength``
0.15, 0.5 or 1 and 4 epochs it reads the site alone (77 %: 88 % at site A, 55 % at B; 24 %
on the site-flipped test set; removing the opacities changes nothing); trained longer (early
stop after 10 of 12 epochs, strength 1) it uses both: 84 % (93 % / 66 %), 57 % site-flipped,
COVID recall 72 % -> 38 % without opacities.
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from . import _checks

__all__ = [
    "COVID_FRACTION",
    "MASK_KEYS",
    "MARKER_CORNERS",
    "SITE_STYLES",
    "SPINE_SHIFT",
    "spine_cobb_angle",
    "PhantomParams",
    "SiteStyle",
    "PhantomSet",
    "make_phantom_cxr",
    "rerender",
    "remove_marker",
    "remove_lesions",
    "set_abdomen_brightness",
    "other_site",
    "erase_marker",
]

#: Class balance of the COVID-19 Radiography Database (3,616 COVID : 10,192 normal).
COVID_FRACTION: float = 3616 / (3616 + 10192)

#: The region masks every :class:`PhantomSet` carries, in this order.
MASK_KEYS: tuple[str, ...] = ("lungs", "lesions", "heart", "spine", "abdomen", "marker", "body")

_MIN_SIZE = 64
_CHUNK = 32           # images sharing one seed (fixed so results never depend on it)
# Bytes of one (B, S, S) float32 temporary when B images are composed at once (see _block_size).
_BLOCK_BYTES = 1 << 20
_WORKERS = min(4, os.cpu_count() or 1)  # threads rendering chunks (results never depend on it)
_TEX_BANK = 12        # pre-computed texture fields per call
_EDGE_PX = 1.2        # half-width of the soft anatomical edges, in pixels
MARKER_CORNERS: tuple[str, ...] = ("top-right", "top-left", "bottom-right", "bottom-left")
_MARKER_CORNER_P = (0.55, 0.30, 0.08, 0.07)


# --------------------------------------------------------------------------- data classes
@dataclass(frozen=True)
class SiteStyle:
    """How one simulated acquisition site (hospital) processes its films, at ``site_strength`` 1.

    The defaults are the identity (no processing); ``site_strength`` s scales each setting's
    departure from it: gamma -> gamma**s, sharpness, grain level and frame width -> s times
    theirs (frame value and grain correlation are kept). Applied after anatomy, opacities and
    exposure, before the "L" marker, in this order: tone curve, sharpness, grain, frame.

    Attributes:
        gamma: tone-curve exponent applied to the film (> 1 darker mid-tones and lungs,
            < 1 brighter and flatter), in [0.5, 2].
        sharpness: unsharp-mask amount in [-1, 2]: > 0 edge enhancement, < 0 softening
            (-1 = a Gaussian blur of 1 px at 128 px, scaled with the image size).
        grain_sd: standard deviation of extra film grain/detector noise (intensity units),
            in [0, 0.1]; each image gets 0.7-1.3 times it.
        grain_sigma: correlation length of that grain in pixels at 128 px (scaled with the
            image size), in [0, 4]; 0 = white (fine) grain, larger = coarse mottle.
        border: width of a collimation/shutter frame on each side, as a fraction of the image
            side, in [0, 0.05]; each side gets 0.6-1.4 times it (at most 7 % of the side, which
            stays clear of the lungs).
        border_value: intensity of the frame, in [0, 1] (0 black electronic shutter, ≈0.8 bright
            unexposed collimated film).
    """

    gamma: float = 1.0
    sharpness: float = 0.0
    grain_sd: float = 0.0
    grain_sigma: float = 0.0
    border: float = 0.0
    border_value: float = 0.0


#: The two sites of :func:`make_phantom_cxr` at ``site_strength=1``. Site 0 ("A", few COVID
#: cases by default): darker, contrasty, edge-enhanced films with fine grain and a black
#: shutter frame. Site 1 ("B", many COVID cases): brighter, flatter, soft films with coarse
#: mottle and a bright collimation frame.
SITE_STYLES: tuple[SiteStyle, SiteStyle] = (
    SiteStyle(gamma=1.25, sharpness=0.8, grain_sd=0.012, grain_sigma=0.0, border=0.03,
              border_value=0.0),
    SiteStyle(gamma=0.8, sharpness=-0.7, grain_sd=0.02, grain_sigma=1.6, border=0.035,
              border_value=0.82),
)

#: Fields of :class:`PhantomParams` that only matter when ``site_strength`` > 0.
_SITE_FIELDS = ("site_strength", "site_prevalence", "site_styles", "flip_site")
#: Fields added after models were first cached: listed in the repr only where they differ
#: from their defaults, so older sets keep their repr (and data fingerprint).
_NEWER_FIELDS = (*_SITE_FIELDS, "spine_curve")

#: Peak lateral displacement of the spine's midline at ``spine_curve`` = ±1, in canonical units
#: (1 unit = half the image side at pose scale 1; 0.12 ≈ 7.7 px at 128 px).
SPINE_SHIFT: float = 0.12
#: The bent segment of the spine, canonical v from its top (upper thorax) to its bottom (about
#: the diaphragm); the spine above and below stays on the midline.
_SPINE_BEND = (-0.75, 0.45)


@dataclass(frozen=True)
class PhantomParams:
    """The knobs a :class:`PhantomSet` was generated with (see :func:`make_phantom_cxr`)."""

    n: int
    image_size: int = 128
    seed: int = 0
    covid_fraction: float = COVID_FRACTION
    marker_strength: float = 1.0
    abdomen_strength: float = 1.0
    flip_shortcuts: bool = False
    lesion_intensity: float = 0.40
    subtle_fraction: float = 0.35
    benign_blob_rate: float = 0.35
    marker_rate_normal: float = 0.80
    marker_rate_covid: float = 0.10
    abdomen_gain_delta: float = 0.10
    heart_scale: float = 1.0
    render_marker: bool = True
    render_lesions: bool = True
    abdomen_gain_override: float | None = None
    site_strength: float = 0.0
    site_prevalence: tuple[float, float] = (0.1, 0.6)
    site_styles: tuple[SiteStyle, SiteStyle] = SITE_STYLES
    flip_site: bool = False
    spine_curve: float = 0.0

    def __repr__(self) -> str:
        # The site fields and the spine bend are listed only where they differ from their
        # defaults, so that a set without them has the repr -- and hence the data fingerprint,
        # under which trained models are cached -- it had before they existed.
        shown = [f for f in dataclasses.fields(self)
                 if f.name not in _NEWER_FIELDS or getattr(self, f.name) != f.default]
        return f"PhantomParams({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in shown)})"


class PackedMasks(Mapping):
    """The region masks of a phantom set, one bit per region: 1 byte per pixel instead of 7.

    Behaves like a read-only ``{region: (n, H, W) bool array}`` dict with keys :data:`MASK_KEYS`;
    each lookup unpacks that region into a new bool array (for 8,000 images at 128 px: 131 MB
    per region looked up, instead of 917 MB held for all seven).
    """

    def __init__(self, bits: np.ndarray):
        self.bits = bits  # (n, H, W) uint8; bit k = region MASK_KEYS[k]

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in MASK_KEYS:
            raise KeyError(key)
        return (self.bits & np.uint8(1 << MASK_KEYS.index(key))).astype(bool)

    def rows(self, key: str, rows: np.ndarray) -> np.ndarray:
        """``self[key][rows]`` without unpacking the other rows: (m, H, W) bool."""
        if key not in MASK_KEYS:
            raise KeyError(key)
        return (self.bits[rows] & np.uint8(1 << MASK_KEYS.index(key))).astype(bool)

    def __iter__(self):
        return iter(MASK_KEYS)

    def __len__(self) -> int:
        return len(MASK_KEYS)

    def __repr__(self) -> str:
        return f"PackedMasks({list(MASK_KEYS)}, shape={self.bits.shape})"


@dataclass(frozen=True)
class PhantomSet:
    """A generated phantom data set (arrays are plain NumPy; treat them as read-only).

    Attributes:
        images: (n, H, W, 1) float32 in [0, 1]; bright = dense (bone, soft tissue).
        labels: (n,) int64, 1 = COVID, 0 = normal.
        masks: region name -> (n, H, W) bool, keys exactly :data:`MASK_KEYS`. "lesions" are the
            COVID opacities only (benign blobs are not lesions); "abdomen" is the body below the
            diaphragm; "marker" is the burnt-in "L" (empty where there is none).
        has_marker: (n,) bool, an "L" marker is drawn in the image.
        marker_corner: (n,) int64 index into :data:`MARKER_CORNERS` (drawn for every image,
            independent of the label; used only where ``has_marker``).
        abdomen_gain: (n,) float32, dimensionless factor applied to the abdomen's density
            (1 = neutral; by default ≈ N(0.95, 0.06) in normals, N(1.05, 0.06) in COVID).
        lesion_extent: (n,) float32 in [0, 1], fraction of lung pixels inside the lesion mask.
        subtle: (n,) bool, COVID case drawn as subtle (faint/small opacities).
        has_benign_blob: (n,) bool, a faint benign blob is drawn in the lungs.
        site: (n,) int64, the acquisition site whose processing the image shows (0 = "A",
            1 = "B"; after ``flip_site``); all 0 when ``site_strength`` is 0 (no sites).
        border_px: (n, 4) int64, width in pixels of the site's frame at the top, bottom, left
            and right (all 0 without a frame).
        params: the :class:`PhantomParams` used (enough to re-render the set exactly).
        indices: None for a whole set; for a part rendered with ``rerender(..., indices=...)``,
            (m,) int64, the rows of the whole set (of ``params.n`` images) these images are.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: Mapping[str, np.ndarray]
    has_marker: np.ndarray
    marker_corner: np.ndarray
    abdomen_gain: np.ndarray
    lesion_extent: np.ndarray
    subtle: np.ndarray
    has_benign_blob: np.ndarray
    site: np.ndarray
    border_px: np.ndarray = field(repr=False)
    params: PhantomParams = field(repr=False)
    indices: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


# --------------------------------------------------------------------------- validation
def _validate(p: PhantomParams) -> None:
    if not isinstance(p.n, (int, np.integer)) or isinstance(p.n, bool) or p.n <= 0:
        raise ValueError(f"n must be a positive integer, got {p.n!r}")
    if (not isinstance(p.image_size, (int, np.integer)) or isinstance(p.image_size, bool)
            or p.image_size < _MIN_SIZE):
        raise ValueError(f"image_size must be an integer >= {_MIN_SIZE} pixels, got {p.image_size!r}")
    for name in ("covid_fraction", "marker_strength", "abdomen_strength", "subtle_fraction",
                 "benign_blob_rate", "marker_rate_normal", "marker_rate_covid"):
        _checks.in_unit_interval(getattr(p, name), name)
    if not 0.0 <= p.lesion_intensity <= 1.0:
        raise ValueError(f"lesion_intensity must be in [0, 1], got {p.lesion_intensity!r}")
    if not 0.0 <= p.abdomen_gain_delta <= 0.6:
        raise ValueError(f"abdomen_gain_delta must be in [0, 0.6], got {p.abdomen_gain_delta!r}")
    if not 0.5 <= p.heart_scale <= 2.0:
        raise ValueError(f"heart_scale must be in [0.5, 2.0], got {p.heart_scale!r}")
    c = p.spine_curve
    real = isinstance(c, (int, float, np.integer, np.floating)) and not isinstance(c, bool)
    if not real or not -1.0 <= c <= 1.0:
        raise ValueError(f"spine_curve must be a number in [-1, 1], got {c!r}")
    g = p.abdomen_gain_override
    if g is not None and not (0.3 <= float(g) <= 2.0):
        raise ValueError(f"abdomen_gain_override must be None or in [0.3, 2.0], got {g!r}")
    _validate_sites(p)


_STYLE_RANGES = {"gamma": (0.5, 2.0), "sharpness": (-1.0, 2.0), "grain_sd": (0.0, 0.1),
                 "grain_sigma": (0.0, 4.0), "border": (0.0, 0.05), "border_value": (0.0, 1.0)}


def _validate_sites(p: PhantomParams) -> None:
    _checks.in_unit_interval(p.site_strength, "site_strength")
    prev = p.site_prevalence
    if not isinstance(prev, (tuple, list)) or len(prev) != 2:
        raise ValueError(f"site_prevalence must be a pair (COVID share at site A, at site B), got {prev!r}")
    for k, q in enumerate(prev):
        _checks.in_unit_interval(q, f"site_prevalence[{k}]")
    styles = p.site_styles
    if (not isinstance(styles, (tuple, list)) or len(styles) != 2
            or not all(isinstance(st, SiteStyle) for st in styles)):
        raise ValueError(f"site_styles must be a pair of SiteStyle, got {styles!r}")
    for k, st in enumerate(styles):
        for name, (lo, hi) in _STYLE_RANGES.items():
            value = getattr(st, name)
            if not lo <= value <= hi:
                raise ValueError(f"site_styles[{k}].{name} must be in [{lo}, {hi}], got {value!r}")
    lo, hi = sorted(float(q) for q in prev)
    if p.site_strength > 0 and not lo <= p.covid_fraction <= hi:
        raise ValueError(f"covid_fraction {p.covid_fraction:.3g} must lie between the site prevalences "
                         f"{tuple(prev)}: the overall COVID share is a mix of the two sites' shares")


# --------------------------------------------------------------------------- random draws
def _class_rates(p: PhantomParams) -> tuple[float, float]:
    """P(marker | normal), P(marker | COVID) after strength and flip."""
    base = 0.5 * (p.marker_rate_normal + p.marker_rate_covid)
    s = float(p.marker_strength)
    rn = base + s * (p.marker_rate_normal - base)
    rc = base + s * (p.marker_rate_covid - base)
    return (rc, rn) if p.flip_shortcuts else (rn, rc)


def _draw(p: PhantomParams) -> dict[str, np.ndarray]:
    """All per-image random numbers, drawn in a fixed order (independent of render switches)."""
    rng = np.random.default_rng(p.seed)
    n = p.n
    d: dict[str, np.ndarray] = {}
    n_covid = int(round(n * p.covid_fraction))
    labels = np.zeros(n, np.int64)
    labels[rng.permutation(n)[:n_covid]] = 1
    d["labels"] = labels
    u01 = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    # pose and habitus
    d["theta"] = np.deg2rad(u01(-5.0, 5.0))
    d["shift_x"], d["shift_y"] = u01(-0.05, 0.05), u01(-0.05, 0.04)
    d["scale"] = u01(0.90, 1.04)
    d["body_w"] = u01(0.90, 1.04)
    d["lung_w"] = u01(0.93, 1.05)
    d["apex"] = u01(-0.80, -0.72)
    d["cp"] = u01(0.40, 0.52)
    d["dome_h"] = u01(0.18, 0.28)
    d["heart_s"] = u01(0.92, 1.08) * p.heart_scale
    d["heart_x"] = u01(0.13, 0.19)
    d["rib_phase"] = u01(0.0, 1.0)
    d["rib_space"] = u01(0.16, 0.19)
    d["vert_phase"] = u01(0.0, 1.0)
    # exposure
    d["contrast"] = u01(0.85, 1.15)
    d["gamma"] = np.exp(u01(-0.25, 0.25))
    d["exposure"] = rng.normal(0.0, 0.04, n)
    d["noise_sd"] = u01(0.010, 0.030)
    d["vessel"] = u01(0.6, 1.2)
    # shortcuts: marker presence depends on class, corner does not
    rn, rc = _class_rates(p)
    d["marker_u"] = rng.uniform(0, 1, n)
    d["has_marker"] = d["marker_u"] < np.where(labels == 1, rc, rn)
    d["marker_corner"] = rng.choice(4, n, p=_MARKER_CORNER_P)
    d["marker_dx"], d["marker_dy"] = u01(0.02, 0.07), u01(0.02, 0.07)
    d["marker_val"] = u01(0.90, 1.0)
    sign = np.where(labels == 1, 0.5, -0.5) * (-1.0 if p.flip_shortcuts else 1.0)
    d["abdomen_gain"] = 1.0 + p.abdomen_strength * p.abdomen_gain_delta * sign + rng.normal(0, 0.06, n)
    # disease
    d["subtle"] = (labels == 1) & (rng.uniform(0, 1, n) < p.subtle_fraction)
    d["severity"] = np.where(d["subtle"], u01(0.40, 0.70), u01(0.70, 1.0))
    d["benign"] = rng.uniform(0, 1, n) < p.benign_blob_rate
    d["chunk_seeds"] = rng.integers(0, 2**63 - 1, max(1, math.ceil(n / _CHUNK)))
    d["tex_seed"] = rng.integers(0, 2**63 - 1, 1)
    d.update(_draw_blobs(rng, d, labels))
    if p.site_strength > 0:  # drawn last: everything above is the same with or without sites
        d.update(_draw_sites(rng, p, labels))
    return d


def _site_shares(p: PhantomParams, f: float) -> tuple[float, float]:
    """P(site B | normal), P(site B | COVID) that give the site prevalences ``p.site_prevalence``
    with an overall COVID share ``f``.
    """
    pa, pb = (float(q) for q in p.site_prevalence)
    w = 0.5 if pa == pb else float(np.clip((f - pa) / (pb - pa), 0.0, 1.0))  # share of site B
    q_covid = w * pb / f if f > 0 else 0.0
    q_normal = w * (1.0 - pb) / (1.0 - f) if f < 1 else 0.0
    return float(np.clip(q_normal, 0, 1)), float(np.clip(q_covid, 0, 1))


def _draw_sites(rng: np.random.Generator, p: PhantomParams, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Site of each image (exact counts per class) and the site-independent processing draws."""
    n = labels.shape[0]
    site = np.zeros(n, np.int64)
    for cls, q in zip((0, 1), _site_shares(p, float(labels.mean()))):
        members = np.flatnonzero(labels == cls)
        site[rng.permutation(members)[:int(round(q * members.size))]] = 1
    return {"site": site, "site_seed": rng.integers(0, 2**63 - 1, 1),
            "grain_idx": rng.integers(0, _TEX_BANK, n),
            "grain_oy": rng.integers(0, p.image_size, n), "grain_ox": rng.integers(0, p.image_size, n),
            "grain_jit": rng.uniform(0.7, 1.3, n), "frame_jit": rng.uniform(0.6, 1.4, (n, 4))}


_K_LES = 6   # max COVID patches per image
_K_BEN = 1   # benign blobs per image


def _draw_blobs(rng: np.random.Generator, d: dict, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Lesion/benign blob centres (canonical u, v), radii and amplitudes, shape (n, K)."""
    n = labels.shape[0]
    subtle = d["subtle"][:, None]
    # number of active COVID patches: subtle 1-2, otherwise 2-6 (extent varies)
    k = np.where(d["subtle"], rng.integers(1, 3, n), rng.integers(2, _K_LES + 1, n))
    active = (np.arange(_K_LES)[None, :] < k[:, None]) & (labels[:, None] == 1)
    first_side = rng.integers(0, 2, n)[:, None]
    side = np.where((np.arange(_K_LES)[None, :] + first_side) % 2 == 0, -1.0, 1.0)  # bilateral
    t = rng.beta(3.0, 1.4, (n, _K_LES))                 # lower-zone predominant (0 apex, 1 base)
    depth = np.abs(rng.normal(0.0, 0.06, (n, _K_LES)))  # distance in from the lateral border
    rad = rng.uniform(0.07, 0.15, (n, _K_LES)) * np.where(subtle, 0.7, 1.0)
    amp = rng.uniform(0.7, 1.0, (n, _K_LES)) * d["severity"][:, None] * active
    v = d["apex"][:, None] + t * (d["cp"][:, None] - 0.1 - d["apex"][:, None])
    lat = _lat_border(np.clip(t, 0, 1), d["lung_w"][:, None])
    a = np.maximum(lat - 0.05 - depth - 0.3 * rad, 0.2)
    # benign blob: anywhere in the lungs, round, faint
    bt = rng.uniform(0.15, 0.9, (n, _K_BEN))
    bside = np.where(rng.integers(0, 2, (n, _K_BEN)) == 0, -1.0, 1.0)
    bfrac = rng.uniform(0.3, 0.9, (n, _K_BEN))
    blat = _lat_border(bt, d["lung_w"][:, None])
    bv = d["apex"][:, None] + bt * (d["cp"][:, None] - 0.1 - d["apex"][:, None])
    ba = 0.14 + bfrac * (blat - 0.14 - 0.05)
    brad = rng.uniform(0.06, 0.11, (n, _K_BEN))
    bamp = rng.uniform(0.25, 0.55, (n, _K_BEN)) * d["benign"][:, None]
    return {"les_u": side * a, "les_v": v, "les_r": rad, "les_amp": amp,
            "ben_u": bside * ba, "ben_v": bv, "ben_r": brad, "ben_amp": bamp}


# --------------------------------------------------------------------------- geometry
def _lat_border(t: np.ndarray, lung_w: np.ndarray | float) -> np.ndarray:
    """Lateral lung border |u| as a function of t (0 apex, 1 costophrenic level)."""
    out = 1.0 - t
    out **= 3
    np.subtract(1.0, out, out=out)
    out *= 0.55
    out += 0.17
    out *= lung_w
    return out


def _ramp(margin: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Soft inside-ness in [0, 1] from a signed margin (canonical units, >0 inside), computed in
    place: ``margin`` (a temporary) is overwritten and returned.
    """
    margin *= k
    margin += 0.5
    return np.clip(margin, 0.0, 1.0, out=margin)


def _to_pixels(dc: dict, bu: np.ndarray, bv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (u, v) -> normalised pixel coordinates (x, y) in [-1, 1], per image."""
    th, sc = dc["theta"][:, None], dc["scale"][:, None]
    c, s = np.cos(th), np.sin(th)
    x = dc["shift_x"][:, None] + sc * (c * bu - s * bv)
    y = dc["shift_y"][:, None] + sc * (s * bu + c * bv)
    return x, y


def _blob_field(dc: dict, bu, bv, br, bamp, grid: np.ndarray) -> np.ndarray:
    """Sum of isotropic Gaussian blobs, (B, H, W) float32, rendered separably (batched matmul)."""
    x, y = _to_pixels(dc, bu, bv)
    sig = (br * dc["scale"][:, None]).astype(np.float32)
    inv = (-0.5 / sig**2)[:, :, None]
    gx = np.exp(inv * (grid[None, None, :] - x[:, :, None].astype(np.float32)) ** 2)
    gy = np.exp(inv * (grid[None, None, :] - y[:, :, None].astype(np.float32)) ** 2)
    gy *= bamp[:, :, None].astype(np.float32)
    return np.matmul(gy.transpose(0, 2, 1), gx)


def _texture_bank(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Fine (vessel-like) and coarse (patchy) zero-mean unit-ish texture fields, (K, 2S, 2S)."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((2, _TEX_BANK, 2 * size, 2 * size)).astype(np.float32)
    fine = ndimage.gaussian_filter(white[0], (0, 0.012 * size, 0.012 * size), mode="wrap")
    coarse = ndimage.gaussian_filter(white[1], (0, 0.035 * size, 0.035 * size), mode="wrap")
    fine /= fine.std()
    coarse /= coarse.std()
    return fine, coarse


def _crop(bank: np.ndarray, idx: np.ndarray, oy: np.ndarray, ox: np.ndarray, size: int) -> np.ndarray:
    """Per-image random crops of a texture bank -> (B, S, S) float32 (slice copies only)."""
    out = np.empty((idx.size, size, size), np.float32)
    for i, (k, y, x) in enumerate(zip(idx, oy, ox)):
        out[i] = bank[k, y:y + size, x:x + size]
    return out


# --------------------------------------------------------------------------- rendering
_f32 = np.float32


def _col(dc: dict, key: str) -> np.ndarray:
    """Per-image parameter as a (B, 1, 1) float32 column for broadcasting."""
    return dc[key].astype(_f32)[:, None, None]


def _coords(dc: dict, S: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical coordinates u (right), v (down), each (B, S, S) float32, after the pose
    (rotation, shift, scale; 1 canonical unit = S/2 * scale pixels), and the ramp slope k
    (B, 1, 1) that gives soft edges of about ``2 * _EDGE_PX`` pixels.
    """
    grid = (np.arange(S, dtype=_f32) + 0.5) / (S / 2) - 1.0
    th, sc = dc["theta"], dc["scale"]
    cu = (np.cos(th) / sc).astype(_f32)[:, None, None]
    su = (np.sin(th) / sc).astype(_f32)[:, None, None]
    X = grid[None, None, :] - _col(dc, "shift_x")
    Y = grid[None, :, None] - _col(dc, "shift_y")
    k = (sc.astype(_f32) * S / 2 / _EDGE_PX / 2)[:, None, None]
    return cu * X + su * Y, cu * Y - su * X, k


def _spine_offset(v: np.ndarray, curve: float) -> np.ndarray:
    """Lateral position u of the spine's midline at height v (canonical units, same shape as v).

    A half-sine bow over :data:`_SPINE_BEND`, peaking at ``curve * SPINE_SHIFT`` halfway down
    (positive: towards the image right); 0 (straight) above and below the bent segment.
    """
    top, bottom = _SPINE_BEND
    s = np.clip((v - _f32(top)) / _f32(bottom - top), 0.0, 1.0)
    return _f32(curve * SPINE_SHIFT) * np.sin(s * _f32(np.pi))



def spine_cobb_angle(curve: float) -> float:
    """Cobb-like angle, in degrees, of the spine bend ``spine_curve=curve`` (curve in [-1, 1]).

    The angle between the tangents to the midline at the two ends of the bent segment (where a
    radiologist's Cobb angle takes its end vertebrae): 2·atan(π·|curve|·:data:`SPINE_SHIFT` / L)
    with L = 1.2 the segment's height in canonical units; ≈35° at |curve| = 1, 0 for a
    straight spine (10° is the usual threshold for calling a curve scoliosis).
    """
    top, bottom = _SPINE_BEND
    return float(np.degrees(2 * np.arctan(np.pi * abs(curve) * SPINE_SHIFT / (bottom - top))))

def _anatomy(dc: dict, u: np.ndarray, v: np.ndarray, k: np.ndarray,
             spine_curve: float = 0.0) -> dict[str, np.ndarray]:
    """Soft (B, S, S) float32 fields in [0, 1]: body, abdomen, lungs, heart, spine, ribs,
    clavicles, plus the vertebral modulation ``vert`` and lung height coordinate ``t``.
    ``spine_curve`` in [-1, 1] bends the spine sideways (:func:`_spine_offset`); only the
    spine field changes.

    Each field is computed in place in one or two buffers (the same operations in the same
    order as the formulas in the comments): fewer, cache-warm temporaries.
    """
    col = lambda key: _col(dc, key)  # noqa: E731
    a = np.abs(u)
    # body outline, a superellipse: ramp((1 - ((u / (0.88 body_w))^4 + ((v - 0.12) / 1.22)^4)) * 0.22)
    ub = u / (0.88 * col("body_w"))
    ub *= ub
    ub *= ub
    vb = v - 0.12
    vb /= 1.22
    vb *= vb
    vb *= vb
    ub += vb
    body = _ramp(_times(np.subtract(1.0, ub, out=ub), 0.22), k)
    # diaphragm: domes peaking mid-lung; right hemidiaphragm (image left) higher
    # cp - dome_h * clip(1 - ((|u| - 0.38 lung_w) / (0.36 lung_w))^2, 0, 1)
    cp = _f32(0.05) * (u < 0)
    np.subtract(col("cp"), cp, out=cp)
    lw = col("lung_w")
    dome = a - 0.38 * lw
    dome /= 0.36 * lw
    dome *= dome
    np.clip(np.subtract(1.0, dome, out=dome), 0, 1, out=dome)
    dome *= col("dome_h")
    np.subtract(cp, dome, out=dome)
    abdomen = _ramp(v - dome, k)
    abdomen *= body
    # lungs: between the mediastinum and the lateral border, apex to dome:
    # ramp(min(|u| - (0.085 + 0.05 t), lat_border(t) - |u|, v - apex, dome - v)) * (1 - heart)
    apex = col("apex")
    t = v - apex
    t /= cp - apex
    np.clip(t, 0.0, 1.0, out=t)
    m = 0.05 * t
    m += 0.085
    np.subtract(a, m, out=m)
    scratch = _lat_border(t, lw)
    scratch -= a
    np.minimum(m, scratch, out=m)
    np.minimum(m, np.subtract(v, apex, out=scratch), out=m)
    np.minimum(m, np.subtract(dome, v, out=scratch), out=m)
    lung_shape = _ramp(m, k)
    heart = _heart(dc, u, v, k)
    heart *= np.subtract(1.0, abdomen, out=scratch)  # the abdomen hides the heart
    lung_shape *= np.subtract(1.0, heart, out=scratch)
    spine = _spine(dc, u, v, a, k, body, spine_curve)
    return {"body": body, "abdomen": abdomen, "lungs": lung_shape, "heart": heart, "spine": spine,
            "vert": _vertebrae(dc, v, spine), "ribs": _ribs(dc, v, a, k, dome, body),
            "clav": _clavicles(v, a, k), "t": t, "a": a}


def _times(x: np.ndarray, factor: float) -> np.ndarray:
    """``x * factor`` in place (float32)."""
    x *= factor
    return x


def _heart(dc: dict, u: np.ndarray, v: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Heart (B, S, S) before the abdomen covers it: a rotated ellipse on the image right
    (patient's left), sitting on the diaphragm: ramp((1 - (pu / 0.36 hs)^2 - (qv / 0.25 hs)^2)
    * 0.1 hs) with (pu, qv) the offset from its centre rotated by 0.45 rad.
    """
    hs = _col(dc, "heart_s")
    du, dv = u - _col(dc, "heart_x"), v - (_col(dc, "cp") - _col(dc, "dome_h") - 0.03)
    cphi, sphi = _f32(math.cos(0.45)), _f32(math.sin(0.45))
    pu = du * cphi
    pu += dv * sphi
    qv = dv * cphi
    qv -= np.multiply(du, sphi, out=du)
    pu /= 0.36 * hs
    pu *= pu
    qv /= 0.25 * hs
    qv *= qv
    pu += qv
    np.subtract(1.0, pu, out=pu)
    pu *= 0.1
    pu *= hs
    return _ramp(pu, k)


def _vertebrae(dc: dict, v: np.ndarray, spine: np.ndarray) -> np.ndarray:
    """Vertebral bodies and disc spaces along the spine, (B, S, S) in {0.6, 0.8, 1}:
    0.8 + 0.2 sign(cos(2 pi (v / 0.115 + vert_phase)) + 0.5). It only ever multiplies the
    ``spine`` (B, S, S), so it is computed only in the columns where that is non-zero (1 in the
    others).
    """
    cols = np.flatnonzero(spine.any(axis=(0, 1)))
    vert = np.ones_like(v)
    if not cols.size:
        return vert
    cols = slice(cols[0], cols[-1] + 1)
    x = v[:, :, cols] / 0.115
    x += _col(dc, "vert_phase")
    x *= _f32(2 * np.pi)
    np.cos(x, out=x)
    x += 0.5
    np.sign(x, out=x)
    x *= 0.2
    x += 0.8
    vert[:, :, cols] = x
    return vert


def _spine(dc: dict, u: np.ndarray, v: np.ndarray, a: np.ndarray, k: np.ndarray,
           body: np.ndarray, spine_curve: float) -> np.ndarray:
    """Spine (B, S, S): a band of half-width 0.06 about the midline (bent sideways by
    ``spine_curve``, see :func:`_spine_offset`), inside the body.
    """
    if spine_curve == 0:
        x = np.subtract(0.06, a)
    else:
        x = u - _spine_offset(v, spine_curve)
        np.abs(x, out=x)
        np.subtract(0.06, x, out=x)
    x = _ramp(x, k)
    x *= body
    return x


def _ribs(dc: dict, v: np.ndarray, a: np.ndarray, k: np.ndarray, dome: np.ndarray,
          body: np.ndarray) -> np.ndarray:
    """Posterior ribs (both sides), (B, S, S): arcs rising slightly, then falling laterally,
    clip(3 (cos(2 pi ph) - 0.45), 0, 1) with ph = (v + 0.25|u| - 0.9 u^2) / rib_space + rib_phase,
    lateral of the mediastinum, above the diaphragm and below the neck, inside the body.
    """
    ph = 0.25 * a
    ph += v
    ph -= _times(0.9 * a, a)
    ph /= _col(dc, "rib_space")
    ph += _col(dc, "rib_phase")
    ph *= _f32(2 * np.pi)
    np.cos(ph, out=ph)
    ph -= 0.45
    ph *= 3.0
    ribs = np.clip(ph, 0.0, 1.0, out=ph)
    where = _ramp(a - 0.12, k)
    below = dome + 0.06
    below -= v
    where *= _ramp(below, k)
    where *= _ramp(np.add(v, 0.92, out=below), k)
    where *= body
    ribs *= where
    return ribs


def _clavicles(v: np.ndarray, a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Clavicles (B, S, S): within 0.032 of the curve v = -0.70 - 0.12|u| + 0.25 u^2, for
    0.05 < |u| < 0.58.
    """
    d = 0.12 * a
    np.subtract(-0.70, d, out=d)
    d += _times(0.25 * a, a)
    np.subtract(v, d, out=d)
    np.abs(d, out=d)
    clav = _ramp(np.subtract(0.032, d, out=d), k)
    clav *= _ramp(np.subtract(0.58, a), k)
    clav *= _ramp(a - 0.05, k)
    return clav


def _chunk_draws(chunk_seed: int, B: int, S: int) -> dict[str, np.ndarray]:
    """A chunk's own random numbers, drawn for all its ``B`` images in a fixed order: texture
    crops ``tex_idx`` (2, B) and ``offs`` (4, B), and quantum ``noise`` (B, S, S) float32.

    Drawn for the whole chunk even when only some of its rows are rendered, so a row's pixels
    never depend on which other rows are rendered with it.
    """
    rng = np.random.default_rng(chunk_seed)
    tex_idx = rng.integers(0, _TEX_BANK, (2, B))
    offs = rng.integers(0, S, (4, B))
    return {"tex_idx": tex_idx, "offs": offs, "noise": rng.standard_normal((B, S, S), dtype=_f32)}


def _density(p: PhantomParams, dc: dict, an: dict, tex: tuple[np.ndarray, np.ndarray],
             draws: dict[str, np.ndarray], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Density ("attenuation") image (B, S, S) float32, roughly in [0, 1], and the COVID
    opacity density (zero outside the lesion mask). ``draws``: :func:`_chunk_draws` of these rows.

    Computed in place (the operations, in order, of the formulas in the comments).
    """
    B, S = dc["theta"].shape[0], grid.size
    (fine_idx, coarse_idx), offs = draws["tex_idx"], draws["offs"]
    lungs = an["lungs"]
    lung_w = 2.0 * lungs
    lung_w -= 1.0
    np.clip(lung_w, 0.0, 1.0, out=lung_w)  # 0 on and outside the lung mask border
    # body * (0.50 + 0.12 * clip(1 - |u|, 0, 1)) + 0.05 - lungs * (0.42 - 0.10 * t)
    D = np.subtract(1.0, an["a"])
    np.clip(D, 0, 1, out=D)
    D *= 0.12
    D += 0.50
    D *= an["body"]
    D += 0.05
    x = 0.10 * an["t"]
    np.subtract(0.42, x, out=x)
    x *= lungs
    D -= x
    # + (0.06 * heart + 0.10 * spine * vert + 0.09 * ribs + 0.16 * clav)
    dense = 0.06 * an["heart"]
    np.multiply(an["spine"], 0.10, out=x)
    x *= an["vert"]
    dense += x
    dense += np.multiply(an["ribs"], 0.09, out=x)
    dense += np.multiply(an["clav"], 0.16, out=x)
    D += dense
    # hila and vessel markings, fading towards the periphery:
    # + lung_w * (hil + 0.022 * vessel * fine * (0.4 + 3.0 * hil))
    hil = _blob_field(dc, np.array([[-0.2, 0.2]] * B), np.full((B, 2), -0.05),
                      np.full((B, 2), 0.12), np.full((B, 2), 0.10), grid)
    vessels = _crop(tex[0], fine_idx, offs[0], offs[1], S)
    vessels *= 0.022 * _col(dc, "vessel")
    np.multiply(hil, 3.0, out=x)
    x += 0.4
    vessels *= x
    vessels += hil
    vessels *= lung_w
    D += vessels
    # benign blobs (both classes) and COVID lesions: thresholded, texture-modulated, lungs only
    texture = _crop(tex[1], coarse_idx, offs[2], offs[3], S)
    texture *= 0.25
    texture += 0.75  # 0.75 + 0.25 * coarse
    D += _opacity(p, dc, "ben", texture, lung_w, grid)
    les = _opacity(p, dc, "les", texture, lung_w, grid)
    if p.render_lesions:
        D += les
    # abdomen brightness (shortcut): multiplies the abdomen's density, exactly 1 outside its mask:
    # * (1 + (gain - 1) * clip(2 * abdomen - 1, 0, 1))
    gain = _abdomen_gain(p, dc).astype(_f32)[:, None, None]
    np.multiply(an["abdomen"], 2.0, out=x)
    x -= 1.0
    np.clip(x, 0.0, 1.0, out=x)
    x *= gain - 1.0
    x += 1.0
    D *= x
    return D, les


def _expose(dc: dict, D: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Pointwise exposure mapping (gamma, contrast, offset) plus quantum ``noise`` (B, S, S,
    standard normal) -> [0, 1], in place: the density ``D`` becomes the image.

    clip((clip(D, 0, 1) ** gamma - 0.5) * contrast + 0.5 + exposure + noise * noise_sd, 0, 1)
    """
    img = np.clip(D, 0.0, 1.0, out=D)
    img **= _col(dc, "gamma")
    img -= 0.5
    img *= _col(dc, "contrast")
    img += 0.5
    img += _col(dc, "exposure")
    img += noise * _col(dc, "noise_sd")
    return np.clip(img, 0.0, 1.0, out=img)


def _grain_banks(p: PhantomParams, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each site's grain: zero-mean unit-variance noise fields with its correlation, (K, 2S, 2S)."""
    S = p.image_size
    white = np.random.default_rng(seed).standard_normal((_TEX_BANK, 2 * S, 2 * S)).astype(_f32)
    banks = []
    for st in p.site_styles:
        sigma = st.grain_sigma * S / 128
        bank = ndimage.gaussian_filter(white, (0, sigma, sigma), mode="wrap") if sigma > 0 else white
        banks.append(bank / bank.std())
    return banks[0], banks[1]


def _style_values(p: PhantomParams, site: np.ndarray, name: str) -> np.ndarray:
    """Per-image value (B,) of a :class:`SiteStyle` field for the given sites, before strength."""
    return np.array([getattr(st, name) for st in p.site_styles], np.float64)[site]


def _site_process(p: PhantomParams, dc: dict, img: np.ndarray,
                  banks: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each image's site processing (tone curve, sharpness, grain, frame), strength-scaled.

    Returns the processed (B, S, S) float32 images in [0, 1] and the frame widths (B, 4) in
    pixels (top, bottom, left, right). Every draw it uses was made for every image whatever its
    site, so rendering the other site's processing (``flip_site``) changes nothing else.
    """
    s, S = float(p.site_strength), img.shape[1]
    site = dc["site"] ^ int(bool(p.flip_site))
    col = lambda x: x.astype(_f32)[:, None, None]  # noqa: E731
    gamma = _style_values(p, site, "gamma") ** s
    if (gamma != 1).any():
        np.power(img, col(gamma), out=img)
    amount = _style_values(p, site, "sharpness") * s
    if (amount != 0).any():  # unsharp mask (> 0) or softening (< 0) against a small Gaussian
        sigma = S / 128
        x = np.arange(-math.ceil(2 * sigma), math.ceil(2 * sigma) + 1)
        w = np.exp(-0.5 * (x / sigma) ** 2)
        w = (w / w.sum()).astype(_f32)
        blur = ndimage.correlate1d(ndimage.correlate1d(img, w, axis=1, mode="nearest"),
                                   w, axis=2, mode="nearest")
        blur -= img
        blur *= col(-amount)
        img += blur
    sd = _style_values(p, site, "grain_sd") * s * dc["grain_jit"]
    for k in (0, 1):
        rows = np.flatnonzero((site == k) & (sd > 0))
        if rows.size:
            grain = _crop(banks[k], dc["grain_idx"][rows], dc["grain_oy"][rows], dc["grain_ox"][rows], S)
            img[rows] += grain * col(sd[rows])
    np.clip(img, 0.0, 1.0, out=img)
    width = np.rint(_style_values(p, site, "border")[:, None] * s * S * dc["frame_jit"]).astype(np.int64)
    value = _style_values(p, site, "border_value").astype(_f32)
    for i in np.flatnonzero(width.any(axis=1)):
        t, b, left, r = width[i]
        img[i, :t] = img[i, S - b:] = value[i]
        img[i, :, :left] = img[i, :, S - r:] = value[i]
    return img, width


def _render_chunk(p: PhantomParams, dc: dict, chunk_seed: int, tex: tuple[np.ndarray, np.ndarray],
                  banks: tuple[np.ndarray, np.ndarray] | None, rows: np.ndarray,
                  ) -> Iterator[tuple[slice, _Rendered]]:
    """Render the ``rows`` (m,) of a chunk (``dc``: its per-image values), :func:`_block_size`
    rows at a time: yields (which of ``rows``, their :func:`_render_rows` output).

    Every row gets its own values and draws, so its pixels do not depend on the rows rendered
    with it (nor on the block size).
    """
    draws = _chunk_draws(chunk_seed, dc["theta"].shape[0], p.image_size)
    block = _block_size(p.image_size)
    for start in range(0, len(rows), block):
        part = slice(start, start + block)
        r = rows[part]
        yield part, _render_rows(p, {key: value[r] for key, value in dc.items()},
                                 {"tex_idx": draws["tex_idx"][:, r], "offs": draws["offs"][:, r],
                                  "noise": draws["noise"][r]}, tex, banks)


def _block_size(S: int) -> int:
    """Images composed at once at S px (16 at 128 px): temporaries of at most :data:`_BLOCK_BYTES`,
    at most half a chunk. With larger ones (a whole chunk's, 2 MB at 128 px) the C allocator
    returned and re-faulted the memory of most temporaries: about half of the CPU time.
    """
    return max(1, min(_CHUNK // 2, _BLOCK_BYTES // (4 * S * S)))


class _Rendered(NamedTuple):
    """What :func:`_render_rows` returns for B images of S px."""

    images: np.ndarray  # (B, S, S) float32 in [0, 1]
    mask_bits: np.ndarray  # (B, S, S) uint8, the region masks packed as in PackedMasks
    border: np.ndarray  # (B, 4) int64, the site frame's widths in pixels (top, bottom, left, right)
    pixels: np.ndarray  # (B, 3) int64, pixels in the lungs, lesions and marker masks


def _render_rows(p: PhantomParams, dc: dict, draws: dict[str, np.ndarray],
                 tex: tuple[np.ndarray, np.ndarray],
                 banks: tuple[np.ndarray, np.ndarray] | None) -> _Rendered:
    """Render the B images whose per-image values are ``dc`` and chunk draws ``draws``.

    Without sites only pointwise operations follow the compositing, so switching a component off
    changes no pixel outside that component's mask. With sites, the sharpness filter spreads a
    change by up to ``2 * S / 128`` pixels (rounded up) beyond the mask.
    """
    S = p.image_size
    grid = (np.arange(S, dtype=_f32) + 0.5) / (S / 2) - 1.0
    u, v, k = _coords(dc, S)
    an = _anatomy(dc, u, v, k, float(p.spine_curve))
    D, les = _density(p, dc, an, tex, draws, grid)
    img = _expose(dc, D, draws["noise"])
    border = np.zeros((img.shape[0], 4), np.int64)
    if banks is not None:  # acquisition site: global processing of the film (not of the marker)
        img, border = _site_process(p, dc, img, banks)
    # burnt-in "L" marker (detector coordinates, after everything else)
    marker = _marker_mask(dc, S)
    if p.render_marker:
        np.copyto(img, _col(dc, "marker_val"), where=marker)
    else:
        marker[:] = False
    masks = {
        "lungs": an["lungs"] > 0.5,
        "lesions": les > 0 if p.render_lesions else np.zeros(img.shape, bool),
        "heart": an["heart"] > 0.5,
        "spine": an["spine"] > 0.5,
        "abdomen": an["abdomen"] > 0.5,
        "marker": marker,
        "body": an["body"] > 0.5,
    }
    pixels = np.stack([np.count_nonzero(masks[key], axis=(1, 2)) for key in ("lungs", "lesions", "marker")],
                      axis=1)
    return _Rendered(img, _pack_masks(masks), border, pixels.astype(np.int64, copy=False))


def _pack_masks(masks: dict[str, np.ndarray]) -> np.ndarray:
    """(B, S, S) bool masks, keys :data:`MASK_KEYS` -> (B, S, S) uint8, bit k = region k."""
    bits = masks[MASK_KEYS[0]].astype(np.uint8)
    for k, key in enumerate(MASK_KEYS[1:], start=1):
        bits |= masks[key].view(np.uint8) * np.uint8(1 << k)  # a multiply is vectorised, a shift not
    return bits


def _opacity(p: PhantomParams, dc: dict, kind: str, texture: np.ndarray, lung_w: np.ndarray,
             grid: np.ndarray) -> np.ndarray:
    """Ground-glass opacity density (B, S, S) float32 of the blobs ``kind`` ("les": COVID
    lesions, "ben": benign blobs): blob field modulated by ``texture`` (B, S, S), cut off, lungs
    (``lung_w``) only. Zero for images whose blobs all have amplitude 0 (not computed).
    """
    amp = dc[f"{kind}_amp"]
    out = np.zeros(lung_w.shape, _f32)
    rows = np.flatnonzero(amp.any(axis=1))
    if not rows.size:
        return out
    sub = {key: dc[key][rows] for key in ("theta", "scale", "shift_x", "shift_y")}
    field = _blob_field(sub, dc[f"{kind}_u"][rows], dc[f"{kind}_v"][rows], dc[f"{kind}_r"][rows],
                        amp[rows], grid)
    thr = (0.18 * amp[rows].max(axis=1)).astype(np.float32)[:, None, None]
    field *= texture[rows]
    field -= thr
    np.maximum(field, 0.0, out=field)
    field *= lung_w[rows]
    field *= np.float32(p.lesion_intensity)
    out[rows] = field
    return out


def _abdomen_gain(p: PhantomParams, dc: dict) -> np.ndarray:
    if p.abdomen_gain_override is not None:
        return np.full(dc["abdomen_gain"].shape, float(p.abdomen_gain_override))
    return dc["abdomen_gain"]


def _marker_mask(dc: dict, S: int) -> np.ndarray:
    """(B, S, S) bool: a letter "L" (vertical + horizontal stroke) in the drawn corner."""
    h, w = round(0.11 * S), round(0.075 * S)
    t = max(2, round(0.024 * S))
    corner = dc["marker_corner"]
    mx = np.round(dc["marker_dx"] * S).astype(int)
    my = np.round(dc["marker_dy"] * S).astype(int)
    x0 = np.where(corner % 2 == 0, S - mx - w, mx)   # right corners: 0, 2
    y0 = np.where(corner < 2, my, S - my - h)         # top corners: 0, 1
    mask = np.zeros((corner.shape[0], S, S), bool)
    for i in np.flatnonzero(dc["has_marker"]):
        x, y = int(x0[i]), int(y0[i])
        mask[i, _span(y, y + h), _span(x, x + t)] = True          # vertical stroke
        mask[i, _span(y + h - t, y + h), _span(x, x + w)] = True  # horizontal stroke
    return mask


def _span(lo: int, hi: int) -> slice:
    """The pixels lo <= i < hi of an axis as a slice (negative bounds clipped, not wrapped)."""
    return slice(max(lo, 0), max(hi, 0))


# --------------------------------------------------------------------------- public API
_D = PhantomParams(n=1)  # single source of the default knob values
def make_phantom_cxr(
    n: int,
    image_size: int = 128,
    seed: int = 0,
    *,
    covid_fraction: float = COVID_FRACTION,
    marker_strength: float = _D.marker_strength,
    abdomen_strength: float = _D.abdomen_strength,
    flip_shortcuts: bool = False,
    lesion_intensity: float = _D.lesion_intensity,
    subtle_fraction: float = _D.subtle_fraction,
    benign_blob_rate: float = _D.benign_blob_rate,
    marker_rate_normal: float = _D.marker_rate_normal,
    marker_rate_covid: float = _D.marker_rate_covid,
    abdomen_gain_delta: float = _D.abdomen_gain_delta,
    heart_scale: float = 1.0,
    spine_curve: float = _D.spine_curve,
    render_marker: bool = True,
    render_lesions: bool = True,
    abdomen_gain_override: float | None = None,
    site_strength: float = _D.site_strength,
    site_prevalence: tuple[float, float] = _D.site_prevalence,
    site_styles: tuple[SiteStyle, SiteStyle] = SITE_STYLES,
    flip_site: bool = False,
    rows: np.ndarray | None = None,
) -> PhantomSet:
    """Generate ``n`` synthetic frontal chest radiographs with ground-truth masks.

    Args:
        n: number of images (> 0).
        image_size: side length H = W in pixels (>= 64; 128 default, 224 works).
        seed: integer seed; the same arguments give bit-identical output.
        covid_fraction: share of label-1 images in [0, 1]; exactly ``round(n * covid_fraction)``
            images are COVID, at random positions. Default: 3,616 / 13,808 as in the COVID-19
            Radiography Database.
        marker_strength: in [0, 1]. 0: the "L" marker appears in every image with the same
            probability (the mean of the two class rates); 1: with ``marker_rate_normal`` in
            normals and ``marker_rate_covid`` in COVID images; linear in between.
        abdomen_strength: in [0, 1]. Abdomen gain ~ 1 + strength * delta * (±1/2) + N(0, 0.06),
            + for COVID and - for normals (delta = ``abdomen_gain_delta``).
        flip_shortcuts: swap the class dependence of both shortcuts (markers mostly in COVID,
            bright abdomen in normals); everything else, images included, stays the same.
        lesion_intensity: peak density (in [0, 1], before exposure mapping) of a severe opacity;
            lung fields are ≈0.2 and soft tissue ≈0.6 on the same scale.
        subtle_fraction: share of COVID cases with only 1-2 faint, small patches, in [0, 1].
        benign_blob_rate: probability, in [0, 1], that an image of either class has one faint
            benign blob somewhere in the lungs.
        marker_rate_normal: marker probability of a normal image at strength 1.
        marker_rate_covid: marker probability of a COVID image at strength 1.
        abdomen_gain_delta: difference in mean abdomen gain between classes at strength 1.
        heart_scale: multiplies the heart's size (1 normal; ≈1.3 cardiomegaly-like), in [0.5, 2].
        spine_curve: a scoliosis-like lateral bend of the thoracic spine, in [-1, 1]. 0
            (default): straight, the images of earlier versions. ±1: the midline bows by
            :data:`SPINE_SHIFT` (0.12 canonical units, ≈6 % of the image width) towards the
            image right (+) or left (-), halfway between the upper thorax and the diaphragm;
            a Cobb-like angle between the tangents at the ends of the bend of
            2·atan(π·0.12·|c|/1.2) ≈ 35° at |c| = 1, ≈ 18° at 0.5 (pose rotation does not
            change it). Only the spine is drawn differently (lungs, heart and the other masks
            stay), so ``rerender(ps, spine_curve=c)`` changes pixels only near the old and the
            new spine; its mask moves with it.
        render_marker: False renders the same images without any "L" (exact counterfactual).
        render_lesions: False renders the same images without COVID opacities (labels kept).
        abdomen_gain_override: if given, every image's abdomen gain is set to this value.
        site_strength: in [0, 1]. 0 (default): one site, no site processing (the images are
            exactly those of earlier versions). > 0: every image comes from one of two simulated
            acquisition sites whose films differ in *global* character -- tone curve, sharpness,
            grain and a collimation frame (``site_styles``) -- scaled by the strength (1:
            clearly different but plausible films). A diffuse source shortcut (DeGrave et al.
            2021) that no region of the image localises.
        site_prevalence: (COVID share at site A, at site B), each in [0, 1]; with
            ``covid_fraction`` between them it fixes the site sizes (default 0.1 / 0.6 with the
            default fraction: about 32 % of the films from site B, and P(site B) ≈ 0.74 for
            COVID, ≈ 0.18 for normals). Counts per class and site are exact up to rounding.
        site_styles: the two sites' :class:`SiteStyle` (default :data:`SITE_STYLES`).
        flip_site: render every image with the *other* site's processing (same patients,
            labels, masks and random numbers: an exact counterfactual of the site alone).
        rows: render only these rows of the set (the same pixels as the whole set's rows, as
            :func:`rerender` with ``indices``); None renders all ``n``.

    Returns:
        A :class:`PhantomSet`; ``images`` (n, H, W, 1) float32 in [0, 1], ``labels`` (n,) int64,
        ``masks`` (a :class:`PackedMasks`: a read-only dict of (n, H, W) bool). Memory ≈ 5 * n * H * W
        bytes (float32 image + one byte of mask bits), e.g. 0.8 GB for 10,000 images at 128 px.

    Raises:
        ValueError: on n <= 0, image_size < 64, fractions/strengths outside [0, 1],
            ``heart_scale`` outside [0.5, 2], ``spine_curve`` outside [-1, 1], site styles
            outside their ranges, or (with sites) ``covid_fraction`` outside ``site_prevalence``.
    """
    params = PhantomParams(
        n=n, image_size=image_size, seed=seed, covid_fraction=covid_fraction,
        marker_strength=marker_strength, abdomen_strength=abdomen_strength,
        flip_shortcuts=bool(flip_shortcuts), lesion_intensity=lesion_intensity,
        subtle_fraction=subtle_fraction, benign_blob_rate=benign_blob_rate,
        marker_rate_normal=marker_rate_normal, marker_rate_covid=marker_rate_covid,
        abdomen_gain_delta=abdomen_gain_delta, heart_scale=heart_scale, spine_curve=spine_curve,
        render_marker=bool(render_marker), render_lesions=bool(render_lesions),
        abdomen_gain_override=abdomen_gain_override, site_strength=site_strength,
        site_prevalence=tuple(site_prevalence), site_styles=tuple(site_styles),
        flip_site=bool(flip_site))
    return _generate(params, rows)


def _generate(p: PhantomParams, indices: np.ndarray | None = None) -> PhantomSet:
    """Render the set ``p`` describes, or only its rows ``indices`` (same pixels, less memory)."""
    _validate(p)
    n, S = int(p.n), int(p.image_size)
    keep = np.arange(n) if indices is None else _checks.indices(indices, n)
    d = _draw(p)
    tex = _texture_bank(int(d["tex_seed"][0]), S)
    sites = p.site_strength > 0
    banks = _grain_banks(p, int(d["site_seed"][0])) if sites else None
    images = np.empty((len(keep), S, S, 1), np.float32)
    bits = np.empty((len(keep), S, S), np.uint8)
    border = np.empty((len(keep), 4), np.int64)
    pixels = np.empty((len(keep), 3), np.int64)  # lungs, lesions, marker
    per_image = {k: v for k, v in d.items() if isinstance(v, np.ndarray) and v.shape[:1] == (n,)}

    def render(c: int, lo: int) -> None:
        hi = min(n, lo + _CHUNK)
        wanted = np.flatnonzero((keep >= lo) & (keep < hi))  # output rows from this chunk
        if not wanted.size:
            return  # chunks have their own seeds: skipping one changes nothing else
        # a random test split has a few rows in every chunk: render those rows only
        dc = {k: v[lo:hi] for k, v in per_image.items()}
        blocks = _render_chunk(p, dc, int(d["chunk_seeds"][c]), tex, banks, keep[wanted] - lo)
        for part, out in blocks:
            dest = _consecutive(wanted[part])
            images[dest, :, :, 0] = out.images
            bits[dest] = out.mask_bits
            border[dest] = out.border
            pixels[dest] = out.pixels

    # Chunks are independent (own seeds, own output rows) and NumPy releases the GIL inside its
    # array operations, so threads render them in parallel; the pixels do not depend on it.
    starts = list(enumerate(range(0, n, _CHUNK)))
    workers = min(_WORKERS, len(starts))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(lambda cs: render(*cs), starts):
                pass  # re-raises a chunk's error here
    else:
        for c, lo in starts:
            render(c, lo)
    extent = pixels[:, 1] / np.maximum(pixels[:, 0], 1)
    return PhantomSet(
        images=images, labels=d["labels"][keep], masks=PackedMasks(bits),
        has_marker=pixels[:, 2] > 0,
        marker_corner=d["marker_corner"][keep].astype(np.int64),
        abdomen_gain=_abdomen_gain(p, d)[keep].astype(np.float32),
        lesion_extent=extent.astype(np.float32), subtle=d["subtle"][keep],
        has_benign_blob=d["benign"][keep],
        site=(d["site"][keep] ^ int(p.flip_site)) if sites else np.zeros(len(keep), np.int64),
        border_px=border, params=p, indices=None if indices is None else keep)


def _consecutive(rows: np.ndarray) -> slice | np.ndarray:
    """Ascending row indices as a slice when they are consecutive (a plain copy to assign)."""
    return slice(rows[0], rows[-1] + 1) if rows[-1] - rows[0] == rows.size - 1 else rows


def rerender(ps: PhantomSet, indices: np.ndarray | None = None, **changes: object) -> PhantomSet:
    """Re-generate ``ps`` with some :class:`PhantomParams` fields changed (exact counterfactual).

    Every random number is drawn regardless of the rendering switches, so e.g.
    ``rerender(ps, render_marker=False)`` gives the same images as ``ps`` except inside
    ``ps.masks["marker"]``, and ``rerender(ps, flip_site=True)`` the same patients filmed at
    the other site (see :func:`other_site`). ``indices``: render only these rows of ``ps`` (in
    this order), e.g. the test split: the pixels are identical to the whole set's rows, the
    memory is that of the rows (an 8,000-image set takes about 0.65 GB with its masks). Returns a new
    :class:`PhantomSet`: as long as ``ps`` or as ``indices``.
    """
    rows = ps.indices
    if indices is not None:
        sub = _checks.indices(indices, len(ps))
        rows = sub if rows is None else rows[sub]
    return _generate(dataclasses.replace(ps.params, **changes), rows)


def remove_marker(ps: PhantomSet, indices: np.ndarray | None = None) -> PhantomSet:
    """The same images without the "L" marker; pixels outside ``ps.masks["marker"]`` are unchanged.
    ``indices``: as in :func:`rerender`.
    """
    return rerender(ps, indices, render_marker=False)


def remove_lesions(ps: PhantomSet, indices: np.ndarray | None = None) -> PhantomSet:
    """The same images without COVID opacities (labels kept); pixels outside
    ``ps.masks["lesions"]`` are unchanged. ``indices``: as in :func:`rerender`.
    """
    return rerender(ps, indices, render_lesions=False)


def set_abdomen_brightness(ps: PhantomSet, gain: float,
                           indices: np.ndarray | None = None) -> PhantomSet:
    """The same images with every abdomen gain set to ``gain`` (dimensionless, in [0.3, 2];
    1 = neutral; the default class means are 0.95 and 1.05); pixels outside
    ``ps.masks["abdomen"]`` are unchanged. ``indices``: as in :func:`rerender`.
    """
    return rerender(ps, indices, abdomen_gain_override=float(gain))


def other_site(ps: PhantomSet, indices: np.ndarray | None = None) -> PhantomSet:
    """The same patients with the other acquisition site's processing (toggles ``flip_site``).

    Labels, masks, markers and every random number stay the same; only the site's tone curve,
    sharpness, grain and frame change, so ``other_site(other_site(ps))`` gives ``ps`` back
    exactly. Needs a set made with ``site_strength`` > 0. ``indices``: as in :func:`rerender`.
    """
    if ps.params.site_strength <= 0:
        raise ValueError("this phantom set has no sites (site_strength=0): there is no other site")
    return rerender(ps, indices, flip_site=not ps.params.flip_site)


def erase_marker(images: np.ndarray, marker_masks: np.ndarray, radius: int = 3) -> np.ndarray:
    """Approximate in-painting of masked pixels from their surroundings (for any image set).

    Each masked pixel becomes the mean of the unmasked pixels in a window of growing size
    (normalised convolution), so a bright "L" is replaced by the local background.

    Args:
        images: (n, H, W) or (n, H, W, 1) float array, any range.
        marker_masks: (n, H, W) bool, True where to in-paint.
        radius: initial half-width of the averaging window, in pixels (doubles until every
            masked pixel has unmasked neighbours).

    Returns:
        float32 array of the same shape as ``images``; unmasked pixels are unchanged.
    """
    imgs = np.asarray(images, np.float32)
    squeeze = imgs.ndim == 4
    x = imgs[..., 0] if squeeze else imgs
    mask = np.asarray(marker_masks, bool)
    if mask.shape != x.shape:
        raise ValueError(f"marker_masks shape {mask.shape} does not match images {x.shape}")
    out = x.copy()
    todo = mask.copy()
    keep = (~mask).astype(np.float32)
    num_src = x * keep
    r = max(1, int(radius))
    while todo.any() and r <= max(x.shape[1:]):
        size = (1, 2 * r + 1, 2 * r + 1)
        num = ndimage.uniform_filter(num_src, size, mode="nearest")
        den = ndimage.uniform_filter(keep, size, mode="nearest")
        ok = todo & (den > 1e-3)
        out[ok] = num[ok] / den[ok]
        todo &= ~ok
        r *= 2
    return out[..., None] if squeeze else out
