"""Loading photos for the ImageNet notebook: any format, any size, clear errors.

Photos come back as (H, W, 3) uint8 RGB. Grayscale is replicated to three channels, an
alpha channel is composited onto white, 16-bit images are scaled down, and the camera's
EXIF orientation is applied. A file that is missing, not an image, or damaged raises
:class:`ImageError` naming the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import assets, config

#: File endings treated as images when scanning a folder of the learner's own pictures
#: (HEIC/AVIF are included so that a phone photo Pillow cannot read is reported, not ignored).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".heic",
                  ".heif", ".avif"}

#: Photos are downscaled on load so that their longer side is at most this many pixels
#: (a 100-megapixel phone photo would otherwise cost ~300 MB; the models look at 224 px).
MAX_SIDE = 2048

#: Offline stand-ins shipped with scikit-image, one per course photo (same order as PHOTOS).
FALLBACKS: dict[str, tuple[str, str]] = {
    "drone": ("rocket", "Falcon 9 rocket (SpaceX, public domain), scikit-image sample data"),
    "dog": ("chelsea", "Chelsea the cat (Stefan van der Walt, CC0), scikit-image sample data"),
    "ai_dog": ("astronaut", "Astronaut Eileen Collins (NASA, public domain), scikit-image "
                            "sample data"),
    "dome": ("coffee", "A cup of coffee (Rachel Michetti, CC0), scikit-image sample data"),
}


class ImageError(ValueError):
    """An image file could not be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Photo:
    """A photo with its provenance. ``pixels``: (H, W, 3) uint8 RGB at the original size."""

    key: str
    title: str
    pixels: np.ndarray
    credit: str
    is_fallback: bool = False
    note: str = ""  # why a stand-in was used, if one was


def to_rgb(img: Image.Image) -> np.ndarray:
    """A PIL image in any mode as (H, W, 3) uint8 RGB (alpha composited onto white)."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # the full 16-bit range maps onto 0-255, whatever the image holds: the same value
        # always gets the same grey (scaling by the image's own maximum would not be monotonic)
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max() <= 1.0 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_image(path: str | Path, *, max_side: int = MAX_SIDE) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; :class:`ImageError` if it cannot be used.

    Images larger than ``max_side`` on their longer side are downscaled while loading (JPEG
    decodes at reduced size directly), so a huge photo costs little memory.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    if not path.is_file():
        raise ImageError(f"{path} is not a regular file (a folder or a pipe?)")
    try:
        with Image.open(path) as img:
            img.draft(None, (max_side, max_side))  # JPEG: decode at a reduced scale
            img.load()  # decode now, so truncated files fail here and not later
            if max(img.size) > max_side:
                img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            pixels = to_rgb(img)
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path} claims to be too large to open safely ({e}); it is skipped. "
                         "Resize it (e.g. to 2000 px) and try again.") from None
    except UnidentifiedImageError:
        hint = (" HEIC/AVIF phone photos need converting to JPEG first."
                if path.suffix.lower() in {".heic", ".heif", ".avif"} else "")
        raise ImageError(f"{path} is not an image file Pillow can read (is it a PNG/JPEG? "
                         f"its first bytes are {path.read_bytes()[:8]!r}).{hint}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path} is damaged or truncated and cannot be decoded ({e}); "
                         "delete it and download or copy it again") from None
    if min(pixels.shape[:2]) < 2:
        raise ImageError(f"{path} is only {pixels.shape[1]}x{pixels.shape[0]} pixels")
    return pixels


def resize(pixels: np.ndarray, size: int = 224, fit: str = "squash") -> np.ndarray:
    """Resize (H, W, 3) uint8 to (size, size, 3) float32 in [0, 255].

    ``fit="squash"`` stretches the whole photo to a square (what ``keras.utils.load_img``
    with ``target_size`` does, and what the source article's workflow implies);
    ``fit="crop"`` keeps the aspect ratio and cuts the centre square.
    """
    img = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    if fit == "crop":
        img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
    elif fit == "squash":
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    else:
        raise ValueError(f"fit must be 'squash' or 'crop', got {fit!r}")
    return np.asarray(img, dtype=np.float32)


def fallback_photo(key: str) -> Photo:
    """The offline stand-in for course photo ``key`` (a scikit-image sample image)."""
    from skimage import data

    name, credit = FALLBACKS[key]
    pixels = np.asarray(getattr(data, name)(), dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    return Photo(key=key, title=f"{name} (offline stand-in for '{key}')", pixels=pixels[..., :3],
                 credit=credit, is_fallback=True)


def course_photo(key: str, *, offline: bool | None = None) -> Photo:
    """Course photo ``key`` from the cache or Wikimedia Commons, else its offline stand-in.

    A stand-in's ``note`` says why the real photo could not be used.
    """
    asset = assets.get(key)
    problem = None
    for _attempt in range(2):  # a cached file that does not decode is set aside and fetched again
        path, problem = assets.try_fetch(key, offline=offline)
        if path is None:
            break
        try:
            return Photo(key=key, title=asset.description, pixels=load_image(path),
                         credit=f"{asset.attribution}, {asset.licence}, via Wikimedia Commons "
                                f"({asset.source})")
        except ImageError as e:
            problem = f"{e}; {assets.set_aside(path)}"
    photo = fallback_photo(key)
    return Photo(photo.key, photo.title, photo.pixels, photo.credit, True, note=problem)


def course_photos(*, offline: bool | None = None) -> list[Photo]:
    """The paper's four photos (drone, dog, AI-generated dog, dome), or their stand-ins."""
    return [course_photo(key, offline=offline) for key in assets.PHOTOS]


def my_images_dir() -> Path:
    """The folder where learners drop their own pictures (``<data dir>/my_images``)."""
    folder = config.data_dir() / "my_images"
    try:
        if folder.exists() and not folder.is_dir():
            raise ImageError(f"{folder} should be a folder for your own pictures but is a file; "
                             "rename that file.")
        config.make_dir(folder)
    except OSError as e:
        raise ImageError(f"{folder} cannot be used as the folder for your own pictures "
                         f"({e.strerror or e}; a broken or looping link?).") from None
    return folder


def folder_photos(folder: str | Path | None = None) -> tuple[list[Photo], list[str]]:
    """Every readable image in ``folder`` (default :func:`my_images_dir`), sorted by name.

    Returns ``(photos, problems)``: a file that cannot be read is reported in ``problems``
    rather than stopping the others.
    """
    folder = Path(folder) if folder is not None else my_images_dir()
    if not folder.is_dir():
        raise ImageError(f"image folder not found: {folder}")
    photos, problems = [], []
    try:
        entries = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as e:
        raise ImageError(f"cannot list {folder} ({e.strerror or e})") from None
    for path in entries:
        try:
            photos.append(Photo(key=path.stem, title=path.name, pixels=load_image(path),
                                credit=f"your image ({path})"))
        except ImageError as e:
            problems.append(str(e))
    return photos, problems
