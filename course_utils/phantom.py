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
repeated calls on the same machine/NumPy version. 10,000 images of 128 px take ≈10 s on two
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
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

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
_CHUNK = 32           # images rendered at once (cache-friendly; fixed so results never depend on it)
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
    return (0.17 + 0.55 * (1.0 - (1.0 - t) ** 3)) * lung_w


def _ramp(margin: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Soft inside-ness in [0, 1] from a signed margin (canonical units, >0 inside)."""
    out = margin * k
    out += 0.5
    return np.clip(out, 0.0, 1.0, out=out)


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
    """
    col = lambda key: _col(dc, key)  # noqa: E731
    a = np.abs(u)
    # body outline: a superellipse
    ub, vb = np.square(u / (0.88 * col("body_w"))), np.square((v - 0.12) / 1.22)
    body = _ramp((1.0 - (ub * ub + vb * vb)) * 0.22, k)
    # diaphragm: domes peaking mid-lung; right hemidiaphragm (image left) higher
    cp = col("cp") - _f32(0.05) * (u < 0)
    lw = col("lung_w")
    dome = cp - col("dome_h") * np.clip(1.0 - ((a - 0.38 * lw) / (0.36 * lw)) ** 2, 0, 1)
    abdomen = _ramp(v - dome, k) * body
    # lungs: between the mediastinum and the lateral border, apex to dome
    apex = col("apex")
    t = np.clip((v - apex) / (cp - apex), 0.0, 1.0)
    m = np.minimum(a - (0.085 + 0.05 * t), _lat_border(t, lw) - a)
    np.minimum(m, v - apex, out=m)
    np.minimum(m, dome - v, out=m)
    lung_shape = _ramp(m, k)
    # heart: rotated ellipse on the image right (patient's left), sitting on the diaphragm
    hs = col("heart_s")
    du, dv = u - col("heart_x"), v - (col("cp") - col("dome_h") - 0.03)
    cphi, sphi = _f32(math.cos(0.45)), _f32(math.sin(0.45))
    pu, qv = du * cphi + dv * sphi, dv * cphi - du * sphi
    hf = 1.0 - ((pu / (0.36 * hs)) ** 2 + (qv / (0.25 * hs)) ** 2)
    heart = _ramp(hf * 0.1 * hs, k) * (1.0 - abdomen)
    # spine with vertebral bodies and disc spaces (optionally bent sideways, see _spine_offset)
    vert = 0.8 + 0.2 * np.sign(np.cos((v / 0.115 + col("vert_phase")) * _f32(2 * np.pi)) + 0.5)
    spine = _ramp(0.06 - (a if spine_curve == 0 else np.abs(u - _spine_offset(v, spine_curve))), k) * body
    # posterior ribs (both sides): arcs rising slightly, then falling laterally
    ph = (v + 0.25 * a - 0.9 * a * a) / col("rib_space") + col("rib_phase")
    ribs = np.clip((np.cos(ph * _f32(2 * np.pi)) - 0.45) * 3.0, 0.0, 1.0)
    ribs *= _ramp(a - 0.12, k) * _ramp(dome + 0.06 - v, k) * _ramp(v + 0.92, k) * body
    # clavicles
    clav_d = np.abs(v - (-0.70 - 0.12 * a + 0.25 * a * a))
    clav = _ramp(0.032 - clav_d, k) * _ramp(0.58 - a, k) * _ramp(a - 0.05, k)
    return {"body": body, "abdomen": abdomen, "lungs": lung_shape * (1.0 - heart), "heart": heart,
            "spine": spine, "vert": vert, "ribs": ribs, "clav": clav, "t": t, "a": a}


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
    """
    B, S = dc["theta"].shape[0], grid.size
    col = lambda key: _col(dc, key)  # noqa: E731
    (fine_idx, coarse_idx), offs = draws["tex_idx"], draws["offs"]
    fine = _crop(tex[0], fine_idx, offs[0], offs[1], S)
    coarse = _crop(tex[1], coarse_idx, offs[2], offs[3], S)
    lungs = an["lungs"]
    lung_w = np.clip(2.0 * lungs - 1.0, 0.0, 1.0)  # 0 on and outside the lung mask border
    D = an["body"] * (0.50 + 0.12 * np.clip(1.0 - an["a"], 0, 1))
    D += 0.05
    D -= lungs * (0.42 - 0.10 * an["t"])
    D += 0.06 * an["heart"] + 0.10 * an["spine"] * an["vert"] + 0.09 * an["ribs"] + 0.16 * an["clav"]
    # hila and vessel markings, fading towards the periphery
    hil = _blob_field(dc, np.array([[-0.2, 0.2]] * B), np.full((B, 2), -0.05),
                      np.full((B, 2), 0.12), np.full((B, 2), 0.10), grid)
    D += lung_w * (hil + 0.022 * col("vessel") * fine * (0.4 + 3.0 * hil))
    # benign blobs (both classes) and COVID lesions: thresholded, texture-modulated, lungs only
    ben = _blob_field(dc, dc["ben_u"], dc["ben_v"], dc["ben_r"], dc["ben_amp"], grid)
    D += _opacity(ben, coarse, dc["ben_amp"], lung_w, p.lesion_intensity)
    les = _blob_field(dc, dc["les_u"], dc["les_v"], dc["les_r"], dc["les_amp"], grid)
    les = _opacity(les, coarse, dc["les_amp"], lung_w, p.lesion_intensity)
    if p.render_lesions:
        D += les
    # abdomen brightness (shortcut): multiplies the abdomen's density, exactly 1 outside its mask
    gain = _abdomen_gain(p, dc).astype(_f32)[:, None, None]
    D *= 1.0 + (gain - 1.0) * np.clip(2.0 * an["abdomen"] - 1.0, 0.0, 1.0)
    return D, les


def _expose(dc: dict, D: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Pointwise exposure mapping (gamma, contrast, offset) plus quantum ``noise`` (B, S, S,
    standard normal) -> [0, 1].
    """
    img = np.clip(D, 0.0, 1.0) ** _col(dc, "gamma")
    img = (img - 0.5) * _col(dc, "contrast") + 0.5 + _col(dc, "exposure")
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
                  banks: tuple[np.ndarray, np.ndarray] | None = None,
                  rows: np.ndarray | None = None,
                  ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Render the B images of a chunk (or only its ``rows``, giving the same pixels): returns
    (B, S, S) float32 in [0, 1] (B = len(rows)), the region masks and the site frames' widths
    (B, 4) in pixels.

    Without sites only pointwise operations follow the compositing, so switching a component off
    changes no pixel outside that component's mask. With sites, the sharpness filter spreads a
    change by up to ``2 * S / 128`` pixels (rounded up) beyond the mask.
    """
    S = p.image_size
    draws = _chunk_draws(chunk_seed, dc["theta"].shape[0], S)
    if rows is not None:  # every row's own values and draws: a row is rendered on its own
        dc = {key: value[rows] for key, value in dc.items()}
        draws = {"tex_idx": draws["tex_idx"][:, rows], "offs": draws["offs"][:, rows],
                 "noise": draws["noise"][rows]}
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
        img = np.where(marker, _col(dc, "marker_val"), img)
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
    return img.astype(_f32, copy=False), masks, border


def _opacity(field: np.ndarray, coarse: np.ndarray, amp: np.ndarray, lung_w: np.ndarray,
             intensity: float) -> np.ndarray:
    """Ground-glass opacity density: blob field modulated by texture, cut off, lungs only."""
    thr = (0.18 * amp.max(axis=1)).astype(np.float32)[:, None, None]
    out = field * (0.75 + 0.25 * coarse) - thr
    np.maximum(out, 0.0, out=out)
    out *= lung_w
    out *= np.float32(intensity)
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
    x0 = np.where(corner % 2 == 0, S - mx - w, mx)[:, None, None]   # right corners: 0, 2
    y0 = np.where(corner < 2, my, S - my - h)[:, None, None]         # top corners: 0, 1
    ys = np.arange(S)[None, :, None]
    xs = np.arange(S)[None, None, :]
    in_y = (ys >= y0) & (ys < y0 + h)
    vert = in_y & (xs >= x0) & (xs < x0 + t)
    horiz = (ys >= y0 + h - t) & (ys < y0 + h) & (xs >= x0) & (xs < x0 + w)
    return (vert | horiz) & dc["has_marker"][:, None, None]


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
    bits = np.zeros((len(keep), S, S), np.uint8)
    border = np.zeros((len(keep), 4), np.int64)
    per_image = {k: v for k, v in d.items() if isinstance(v, np.ndarray) and v.shape[:1] == (n,)}

    def render(c: int, lo: int) -> None:
        hi = min(n, lo + _CHUNK)
        wanted = (keep >= lo) & (keep < hi)  # output rows that come from this chunk
        if not wanted.any():
            return  # chunks have their own seeds: skipping one changes nothing else
        dc = {k: v[lo:hi] for k, v in per_image.items()}
        rows = keep[wanted] - lo
        # a random test split has a few rows in every chunk: render those rows only
        whole = len(rows) == hi - lo and bool((rows == np.arange(hi - lo)).all())
        img, mk, frame = _render_chunk(p, dc, int(d["chunk_seeds"][c]), tex, banks,
                                       None if whole else rows)
        images[wanted, :, :, 0] = img
        border[wanted] = frame
        packed = np.zeros((len(rows), S, S), np.uint8)
        for k, key in enumerate(MASK_KEYS):
            packed |= mk[key].astype(np.uint8) << np.uint8(k)
        bits[wanted] = packed

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
    masks = PackedMasks(bits)
    lung_px = masks["lungs"].sum(axis=(1, 2))
    extent = masks["lesions"].sum(axis=(1, 2)) / np.maximum(lung_px, 1)
    return PhantomSet(
        images=images, labels=d["labels"][keep], masks=masks,
        has_marker=masks["marker"].any(axis=(1, 2)),
        marker_corner=d["marker_corner"][keep].astype(np.int64),
        abdomen_gain=_abdomen_gain(p, d)[keep].astype(np.float32),
        lesion_extent=extent.astype(np.float32), subtle=d["subtle"][keep],
        has_benign_blob=d["benign"][keep],
        site=(d["site"][keep] ^ int(p.flip_site)) if sites else np.zeros(len(keep), np.int64),
        border_px=border, params=p, indices=None if indices is None else keep)


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
