"""Every downloadable thing the course uses, in one manifest, and a safe downloader.

A download goes to a temporary file in the destination folder, is checked against the
expected size and checksum, and only then renamed into place: the cache never holds a
half-written file. With no network (or ``COURSE_OFFLINE=1``) :func:`fetch` raises
:class:`AssetUnavailable`, whose message names the asset, where it should be and how to
stage it (``python -m course_utils prefetch`` on a connected machine, then copy ``data/``).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from . import config

#: Sent with every request. Wikimedia refuses anonymous library user agents.
USER_AGENT = "saliency-course/0.1 (teaching notebooks; Python urllib)"
CHUNK = 1 << 16


@dataclass(frozen=True)
class Asset:
    """One downloadable file.

    ``filename`` is relative to :func:`course_utils.config.data_dir`. ``size_bytes`` and the
    checksums are verified when given; ``approx_size`` is for people. ``manual`` assets
    (the Kaggle data set) cannot be fetched by a plain URL: :func:`fetch` explains instead.
    """

    name: str
    kind: str  # "weights" | "photo" | "metadata" | "dataset"
    url: str
    filename: str
    description: str
    licence: str
    attribution: str
    source: str
    approx_size: str = ""
    size_bytes: int | None = None
    sha256: str | None = None
    md5: str | None = None
    manual: bool = False
    mirrors: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        """Where the asset lives in the course cache."""
        return config.data_dir() / self.filename


def _wikimedia(name: str, title: str, description: str, licence: str, attribution: str,
               width: int = 960) -> Asset:
    """A Wikimedia Commons file: a ``width``-pixel rendering first, the original as a mirror.

    Commons stores a file under ``/<h[0]>/<h[:2]>/`` where ``h`` is the MD5 of its name.
    """
    file_name = title.replace(" ", "_")
    h = hashlib.md5(file_name.encode("utf-8")).hexdigest()
    quoted = urllib.parse.quote(file_name)
    base = "https://upload.wikimedia.org/wikipedia/commons"
    return Asset(
        name=name, kind="photo",
        url=f"{base}/thumb/{h[0]}/{h[:2]}/{quoted}/{width}px-{quoted}",
        mirrors=(f"{base}/{h[0]}/{h[:2]}/{quoted}",),
        filename=f"photos/{name}{Path(file_name).suffix.lower()}",
        description=description, licence=licence, attribution=attribution,
        source=f"https://commons.wikimedia.org/wiki/File:{quoted}",
        approx_size="0.1-0.5 MB",
    )


_ASSETS: tuple[Asset, ...] = (
    Asset(
        name="vgg16_weights", kind="weights",
        url="https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
            "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        filename="weights/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        description="VGG16 trained on ImageNet (Simonyan & Zisserman 2014), Keras release",
        licence="CC BY 4.0 (VGG authors); Keras packaging Apache-2.0",
        attribution="K. Simonyan and A. Zisserman, Visual Geometry Group, University of Oxford",
        source="https://keras.io/api/applications/vgg/",
        approx_size="528 MB",
        md5="64373286793e3c8b2b4e3219cbf3544b",  # the hash keras.applications.VGG16 checks
    ),
    _wikimedia(
        "drone", "DJI Mini 2.jpg",
        "A DJI Mini 2 consumer quadcopter (the source article photographed a Mini 2)",
        "CC BY-SA 4.0", "Florian Fuchs",
    ),
    _wikimedia(
        "dog", "A Havanese judging.jpg",
        "A Havanese (the source article used a Havanese-Maltese mix)",
        "CC BY-SA 2.0", "audrey_sel",
    ),
    _wikimedia(
        "ai_dog", "A Shiba Inu dog wearing a beret and black turtleneck DALLE2.jpg",
        "An AI-generated dog: a Shiba Inu in a beret, made with DALL-E 2 (the source article "
        "used an Adobe Firefly golden retriever)",
        "Public domain as algorithmic output ({{PD-algorithm}}); check the Commons file page",
        "Generated with OpenAI DALL-E 2",
    ),
    _wikimedia(
        "dome", "US Capitol dome Jan 2006.jpg",
        "The dome of the United States Capitol, Washington, D.C.",
        "CC BY 2.5", "Diliff",
    ),
    Asset(
        name="covid_radiography", kind="dataset", manual=True,
        url="https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database",
        filename="COVID-19_Radiography_Dataset",
        description="COVID-19 Radiography Database (Chowdhury et al. 2020; Rahman et al. 2021): "
                    "3,616 COVID-19 and 10,192 normal chest X-rays with lung masks, 299x299 PNG",
        licence="See the Kaggle page; images come from several sources with their own terms",
        attribution="T. Rahman, M. E. H. Chowdhury, A. Khandakar et al. (Qatar University, "
                    "University of Dhaka and collaborators)",
        source="https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database",
        approx_size="800 MB",
    ),
)

#: name -> Asset, for every downloadable item of the course.
MANIFEST: dict[str, Asset] = {a.name: a for a in _ASSETS}

#: The four photos of notebook 01, in the paper's order.
PHOTOS: tuple[str, ...] = ("drone", "dog", "ai_dog", "dome")


class AssetUnavailable(RuntimeError):
    """An asset is neither cached nor downloadable right now. The message says how to fix it."""


class DownloadError(AssetUnavailable):
    """A download started or was attempted but failed (HTTP error, truncation, bad checksum)."""


def get(name: str) -> Asset:
    """The manifest entry called ``name`` (KeyError lists the valid names)."""
    try:
        return MANIFEST[name]
    except KeyError:
        raise KeyError(f"unknown asset {name!r}; known assets: {', '.join(MANIFEST)}") from None


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks (``algorithm`` is a :mod:`hashlib` name)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, *, size_bytes: int | None = None, sha256: str | None = None,
           md5: str | None = None) -> str | None:
    """Check a file against what is expected; return None if fine, else what is wrong."""
    actual = path.stat().st_size
    if size_bytes is not None and actual != size_bytes:
        return f"size is {actual:,} bytes, expected {size_bytes:,}"
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected and (got := file_digest(path, algorithm)) != expected.lower():
            return f"{algorithm} is {got}, expected {expected}"
    return None


def _staging_hint(asset: Asset) -> str:
    return (
        f"To stage it by hand: on a machine with internet run `python -m course_utils prefetch`"
        f" (or download {asset.url}) and copy the file to {asset.path} "
        f"(set COURSE_DATA_DIR to use another cache folder)."
    )


#: A download slower than this on average (bytes per second) is abandoned, so that a server
#: that trickles data cannot hang a notebook; small files always get at least MIN_DEADLINE s.
MIN_RATE = 20_000
MIN_DEADLINE = 120.0
#: Hidden partial files older than this (seconds) are left-overs of killed downloads.
STALE_PART_AGE = 3600.0


def clean_stale_parts(folder: Path, *, max_age: float = STALE_PART_AGE) -> list[Path]:
    """Delete hidden ``.*.part`` files in ``folder`` older than ``max_age`` s (killed downloads)."""
    removed = []
    now = time.time()
    for part in Path(folder).glob(".*.part"):
        try:
            if part.is_file() and now - part.stat().st_mtime > max_age:
                part.unlink()
                removed.append(part)
        except OSError:  # another user's file, or removed meanwhile
            pass
    return removed


def download(url: str, dest: Path, *, size_bytes: int | None = None, sha256: str | None = None,
             md5: str | None = None, progress: bool = True, timeout: float = 30.0,
             label: str | None = None, deadline: float | None = None) -> Path:
    """Download ``url`` to ``dest`` safely and return ``dest``.

    The bytes go to a temporary file next to ``dest``; the transfer is checked against the
    server's Content-Length (a truncated transfer fails) and against ``size_bytes`` /
    ``sha256`` / ``md5`` when given; only then is the file renamed to ``dest``. On any failure
    the temporary file is removed and :class:`DownloadError` is raised; an existing ``dest``
    is never touched unless the new file is complete and verified. The file gets the usual
    permissions (umask), so others can read it in a shared folder. ``deadline``: seconds for the
    whole transfer (default: enough for :data:`MIN_RATE` bytes/s, at least :data:`MIN_DEADLINE`).
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    config.make_dir(dest.parent)
    clean_stale_parts(dest.parent)
    label = label or dest.name
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    started = time.monotonic()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            limit = deadline if deadline is not None else max(
                MIN_DEADLINE, (total or size_bytes or 0) / MIN_RATE)
            with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress) as bar:
                while chunk := resp.read1(CHUNK):  # returns what has arrived: deadline checks run
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    if time.monotonic() - started > limit:
                        raise DownloadError(
                            f"download of {label} from {url} is too slow: {received:,} bytes in "
                            f"{limit:.0f} s. The network may be congested; try again later or "
                            "stage the file by hand.")
        if total is not None and received != total:
            raise DownloadError(f"download of {label} from {url} was cut off: received "
                                f"{received:,} of {total:,} bytes. Try again.")
        problem = verify(tmp, size_bytes=size_bytes, sha256=sha256, md5=md5)
        if problem:
            raise DownloadError(f"download of {label} from {url} is not the expected file "
                                f"({problem}); it was discarded.")
        os.chmod(tmp, config.file_mode())  # mkstemp made it private (0600)
        os.replace(tmp, dest)
        return dest
    except DownloadError:
        raise
    except urllib.error.HTTPError as e:
        raise DownloadError(f"download of {label} failed: {url} answered HTTP {e.code} "
                            f"{e.reason}.") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        # URLError: DNS failure, refused connection; HTTPException: IncompleteRead (a chunk cut
        # off), BadStatusLine (not HTTP), too many headers; OSError: timeouts, resets, disk full.
        reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
        raise DownloadError(f"download of {label} from {url} failed: {reason}.") from None
    finally:
        tmp.unlink(missing_ok=True)


def network_available(host: str = "commons.wikimedia.org", port: int = 443,
                      timeout: float = 3.0) -> bool:
    """True if a TCP connection to ``host`` can be opened (False when ``COURSE_OFFLINE=1``)."""
    if config.offline_forced():
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_verified: dict[tuple[str, int, int], None] = {}


def _decodes(path: Path) -> str | None:
    """None if ``path`` is an image Pillow can decode, else why not (e.g. an HTML error page)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for a non-image
        head = path.read_bytes()[:64].lstrip().lower()
        what = "an HTML page (a captive portal or an error page?)" if head.startswith(
            (b"<!doctype html", b"<html")) else f"not an image ({type(e).__name__})"
        return f"it is {what}"
    return None


def check_cached(asset: Asset, path: Path | None = None) -> str | None:
    """None if the cached copy at ``path`` (default ``asset.path``) is fine, else what is wrong.

    Checks size and checksums where the manifest has them and, for photos, that the file
    decodes. Memoised per file (path, size, modification time). Never writes anything.
    """
    path = Path(path or asset.path)
    try:
        if not path.is_file():
            return "it is not a regular file" if path.exists() else "it is missing"
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key in _verified:
            return None
        problem = verify(path, size_bytes=asset.size_bytes, sha256=asset.sha256, md5=asset.md5)
        if problem is None and asset.kind == "photo":
            problem = _decodes(path)
    except PermissionError:
        return "it cannot be read (permission denied: another user's private file?)"
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})"
    if problem is None:
        _verified[key] = None
    return problem


def set_aside(path: Path) -> str:
    """Move a damaged cached file to ``<file>.corrupt``; say what happened (never raises)."""
    try:
        path.replace(path.with_name(path.name + ".corrupt"))
        return "it was moved aside (.corrupt)"
    except FileNotFoundError:
        return "another process moved it aside"
    except OSError:
        return "it was left in place (read-only folder) and is ignored"


def locate(name: str) -> Path | None:
    """The first good cached copy of asset ``name`` (data folder, then user cache), or None."""
    asset = get(name)
    for base in config.read_dirs():
        path = base / asset.filename
        if path.exists() and check_cached(asset, path) is None:
            return path
    return None


def fetch(name: str, *, offline: bool | None = None, progress: bool = True) -> Path:
    """Return the local path of asset ``name``, downloading it first if needed.

    Looks in the data folder, then in this user's cache (a shared folder may be read-only). A
    cached file that fails its size/checksum/decoding check is never used: it is moved aside to
    ``<file>.corrupt`` (where it may be) and fetched again. New files go to the data folder if
    it is writable, else to the user cache. ``offline=None`` follows ``COURSE_OFFLINE``.
    Raises :class:`AssetUnavailable` (with how to stage the file) when it cannot be had.
    """
    asset = get(name)
    if asset.manual:
        for base in config.read_dirs():
            if (base / asset.filename).is_dir():
                return base / asset.filename
        raise AssetUnavailable(f"{asset.description} is not in {asset.path}. It needs a Kaggle "
                               f"account: see {asset.source} and README, section 'Real data'.")
    notes = []
    for base in config.read_dirs():
        path = base / asset.filename
        if not path.exists() and not path.is_symlink():
            continue
        problem = check_cached(asset, path)
        if problem is None:
            return path
        notes.append(f" The cached copy {path} was damaged ({problem}); {set_aside(path)}."
                     if path.is_file() else f" {path} is unusable ({problem}).")
    if path_now := locate(name):  # another process may have fetched it meanwhile
        return path_now
    note = "".join(notes)
    if offline if offline is not None else config.offline_forced():
        raise AssetUnavailable(f"asset {name!r} ({asset.description}) is not cached at "
                               f"{asset.path} and the course is offline (COURSE_OFFLINE=1).{note} "
                               + _staging_hint(asset))
    try:
        target = config.writable_dir(str(Path(asset.filename).parent)) / Path(asset.filename).name
    except OSError as e:
        raise AssetUnavailable(f"asset {name!r} cannot be stored: no writable cache folder "
                               f"({e}).{note} " + _staging_hint(asset)) from None
    failures = []
    for url in (asset.url, *asset.mirrors):
        try:
            return download(url, target, size_bytes=asset.size_bytes, sha256=asset.sha256,
                            md5=asset.md5, progress=progress, label=name)
        except DownloadError as e:
            failures.append(str(e))
    raise AssetUnavailable(f"asset {name!r} is not cached and could not be downloaded: "
                           + " / ".join(failures) + f"{note} " + _staging_hint(asset))


def try_fetch(name: str, *, offline: bool | None = None, progress: bool = True
              ) -> tuple[Path | None, str | None]:
    """Like :func:`fetch` but returns ``(path, None)`` or ``(None, reason)`` instead of raising."""
    try:
        return fetch(name, offline=offline, progress=progress), None
    except AssetUnavailable as e:
        return None, str(e)


def status() -> list[dict[str, object]]:
    """One row per asset: name, kind, state ("ok", "missing" or "damaged: why"), present (bool),
    path (the good copy, else the expected place), approximate size, licence.
    """
    rows = []
    for a in _ASSETS:
        found, state = None, "missing"
        for base in config.read_dirs():
            path = base / a.filename
            if path.exists():
                problem = check_cached(a, path) if not a.manual else (
                    None if path.is_dir() else "not a folder")
                if problem is None:
                    found, state = path, "ok"
                    break
                state = f"damaged: {path} - {problem}"
        rows.append({"asset": a.name, "kind": a.kind, "state": state, "present": found is not None,
                     "path": str(found or a.path), "size": a.approx_size, "licence": a.licence})
    return rows


def prefetch(names: Iterable[str] | None = None, *, progress: bool = True) -> dict[str, str]:
    """Fetch every downloadable asset (or ``names``); return name -> "ok" or the reason it failed."""
    results: dict[str, str] = {}
    for name in names or MANIFEST:
        get(name)  # unknown names fail before any download
    for name in names or MANIFEST:
        if get(name).manual:
            results[name] = "manual download (see README 'Real data')"
            continue
        _, problem = try_fetch(name, offline=False, progress=progress)
        results[name] = "ok" if problem is None else problem
    return results
