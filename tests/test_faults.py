"""A classroom's faults, one test each: shared and read-only folders, damaged caches, concurrent
runs, misbehaving servers (on 127.0.0.1 only) and odd inputs. Each failed before its fix."""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from course_utils import __main__ as cli
from course_utils import assets, config, cxr, data, images, models

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = bytes(range(256)) * 64  # 16 kB


# ------------------------------------------------------------------ a misbehaving HTTP server
def _jpeg_bytes(size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), 120, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _reply(conn: socket.socket, route: str) -> None:
    if route == "/ok.bin" or route == "/photo.jpg":
        body = PAYLOAD if route == "/ok.bin" else _jpeg_bytes()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % len(body) + body)
    elif route == "/chunked-cut":  # a chunk announced as 4096 bytes, cut after 100
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" + b"x" * 100)
    elif route == "/not-http":  # e.g. a proxy or another protocol on that port
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
    elif route == "/many-headers":
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150))
                     + b"\r\n")
    elif route == "/trickle":  # one byte every 0.2 s: alive, but would take hours
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(40):
            conn.sendall(b"x")
            time.sleep(0.2)
    else:
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
def raw_server():
    """A scripted HTTP server on 127.0.0.1; yields (base URL, hit counter)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    hits: list[str] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    def handle(conn):
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            route = request.split(b" ")[1].decode()
            hits.append(route)
            try:
                _reply(conn, route)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", hits
    stop.set()
    thread.join(2)
    sock.close()


def _fake_asset(url: str, name: str = "fake", **kw) -> assets.Asset:
    fields = {"name": name, "kind": "metadata", "url": url, "filename": f"misc/{name}.bin",
              "description": "a test file", "licence": "none", "attribution": "tests",
              "source": url, "sha256": hashlib.sha256(PAYLOAD).hexdigest()} | kw
    return assets.Asset(**fields)


# ------------------------------------------------------------------ 5: network failures
@pytest.mark.parametrize("route", ["/chunked-cut", "/not-http", "/many-headers"])
def test_every_network_failure_becomes_a_download_error(raw_server, tmp_path, route):
    base, _ = raw_server
    with pytest.raises(assets.DownloadError, match="failed"):
        assets.download(base + route, tmp_path / "f.bin", progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []  # no hidden partial file left


def test_a_trickling_server_hits_the_deadline(raw_server, tmp_path):
    base, _ = raw_server
    start = time.monotonic()
    with pytest.raises(assets.DownloadError, match="too slow"):
        assets.download(base + "/trickle", tmp_path / "f.bin", progress=False, deadline=1.0)
    assert time.monotonic() - start < 5 and list(tmp_path.iterdir()) == []


def test_partial_files_left_by_a_killed_download_are_cleaned(raw_server, tmp_path):
    base, _ = raw_server
    stale, fresh = tmp_path / ".vgg16.h5.abc.part", tmp_path / ".other.xyz.part"
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y")
    old = time.time() - 2 * assets.STALE_PART_AGE
    os.utime(stale, (old, old))
    assets.download(base + "/ok.bin", tmp_path / "ok.bin", progress=False)
    assert not stale.exists() and fresh.exists()  # a running download's file is left alone


def test_a_failing_mirror_falls_through_to_the_next(raw_server, monkeypatch):
    base, _ = raw_server
    monkeypatch.setitem(assets.MANIFEST, "fake", _fake_asset(base + "/not-http",
                                                             mirrors=(base + "/ok.bin",)))
    assert assets.fetch("fake", offline=False, progress=False).read_bytes() == PAYLOAD


# ------------------------------------------------------------------ 2: readable by others
def test_downloaded_files_follow_the_umask_not_mkstemps_0600(raw_server, tmp_path):
    base, _ = raw_server
    old = os.umask(0o022)
    try:
        path = assets.download(base + "/ok.bin", tmp_path / "shared" / "f.bin", progress=False)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_new_folders_in_a_group_writable_folder_are_group_writable(tmp_path):
    shared = tmp_path / "workshop"
    shared.mkdir()
    os.chmod(shared, 0o2775)
    old = os.umask(0o022)
    try:
        config.make_dir(shared / "models" / "deep")
    finally:
        os.umask(old)
    for folder in (shared / "models", shared / "models" / "deep"):
        mode = folder.stat().st_mode
        assert mode & 0o020 and mode & 0o2000, oct(mode)


# ------------------------------------------------------------------ 2/3: as another user
def _other_user_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess | None:
    """Run ``code`` as user 65534 ("nobody") with this venv's packages; None if impossible.

    Our interpreter may live where nobody may go (pyenv under /root): the system Python of the
    same minor version is used then, with the venv's site-packages and the checkout on its path.
    """
    import sysconfig

    paths = os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]])
    full_env = {**os.environ, **env, "HOME": env["XDG_CACHE_HOME"], "PYTHONPATH": paths}
    for python in (sys.executable, f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"):
        try:
            probe = subprocess.run([python, "-c", "import numpy, PIL, course_utils.config"],
                                   user=65534, group=65534, env=full_env, capture_output=True,
                                   timeout=120, cwd="/")
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return subprocess.run([python, "-c", code], user=65534, group=65534, env=full_env,
                                  capture_output=True, text=True, timeout=300, cwd="/")
    return None


@pytest.fixture
def world_dir():
    """A folder under /tmp that another user can enter (pytest's tmp_path is private)."""
    path = Path(tempfile.mkdtemp(prefix="course-faults-"))
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root to act as another user")
def test_another_learner_reads_the_shared_cache_and_writes_to_their_own(raw_server, world_dir):
    base, _ = raw_server
    shared = world_dir / "shared"
    own = world_dir / "nobody-cache"
    own.mkdir()
    os.chown(own, 65534, 65534)
    old = os.umask(0o022)
    try:  # the instructor stages the photo: downloaded through the real code path
        os.environ["COURSE_DATA_DIR"] = str(shared)
        assets.download(base + "/photo.jpg", assets.get("dog").path, progress=False)
        config.make_dir(shared / "models")
    finally:
        os.umask(old)
    code = ("from course_utils import images, config\n"
            "p = images.course_photo('dog', offline=True)\n"
            "print('fallback', p.is_fallback, p.note)\n"
            "print('writes to', config.writable_dir('models'))\n")
    done = _other_user_python(code, {"COURSE_DATA_DIR": str(shared), "XDG_CACHE_HOME": str(own),
                                     "COURSE_OFFLINE": "1"})
    if done is None:
        pytest.skip("no Python that user 65534 may run with this checkout's packages")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fallback False" in done.stdout  # the shared photo was readable
    assert f"writes to {own}/saliency-course/models" in done.stdout
    assert "not writable for you" in done.stdout


def test_a_read_only_shared_folder_is_read_and_new_files_go_to_the_user_cache(
        raw_server, monkeypatch, isolated_cache, capsys):
    """Works as any user: the shared folder is declared unwritable for this process."""
    base, _ = raw_server
    monkeypatch.setitem(assets.MANIFEST, "fake", _fake_asset(base + "/ok.bin"))
    monkeypatch.setitem(assets.MANIFEST, "kept", _fake_asset(base + "/ok.bin", name="kept"))
    staged = assets.get("kept").path
    staged.parent.mkdir(parents=True)
    staged.write_bytes(PAYLOAD)
    shared = config.data_dir()
    monkeypatch.setattr(config, "is_writable", lambda folder: shared not in (folder, *folder.parents))
    assert assets.fetch("kept", offline=True) == staged  # read from the shared folder
    new = assets.fetch("fake", offline=False, progress=False)
    assert new == config.user_cache_dir() / "misc" / "fake.bin" and new.read_bytes() == PAYLOAD
    assert "not writable for you" in capsys.readouterr().out
    assert assets.fetch("fake", offline=True) == new  # and found there next time


# ------------------------------------------------------------------ 6: concurrent repair
def test_concurrent_fetches_of_a_damaged_file_all_succeed(raw_server, monkeypatch, isolated_cache):
    base, _ = raw_server
    monkeypatch.setitem(assets.MANIFEST, "fake", _fake_asset(base + "/ok.bin"))
    damaged = assets.get("fake").path
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"half a file")
    results, errors = [], []

    def worker():
        try:
            results.append(assets.fetch("fake", offline=False, progress=False).read_bytes())
        except Exception as e:  # noqa: BLE001 - the test reports any failure
            errors.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and results == [PAYLOAD] * 3


def test_setting_aside_a_file_another_process_moved_is_not_an_error(tmp_path):
    assert "another process" in assets.set_aside(tmp_path / "gone.h5")


# ------------------------------------------------------------------ 9: validity, not existence
def test_doctor_reports_damaged_weights_and_an_html_page_saved_as_a_photo(capsys):
    weights, dog = assets.get("vgg16_weights").path, assets.get("dog").path
    for path, content in ((weights, b"\0" * 1024), (dog, b"<!DOCTYPE html><html>portal</html>")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    states = {r["asset"]: r["state"] for r in assets.status()}
    assert states["vgg16_weights"].startswith("damaged") and "md5" in states["vgg16_weights"]
    assert states["dog"].startswith("damaged") and "HTML page" in states["dog"]
    assert states["dome"] == "missing"
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "[BAD] vgg16_weights" in out and "[BAD] dog" in out


# ------------------------------------------------------------------ 13, 14, 18: settings
def test_a_data_dir_that_is_a_file_is_a_clear_error(monkeypatch, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    for value, words in ((tmp_path / "file", "is a file"), (tmp_path / "file" / "sub", "under the file")):
        monkeypatch.setenv("COURSE_DATA_DIR", str(value))
        with pytest.raises(config.ConfigError, match=words):
            config.data_dir()
    assert cli.main(["doctor"]) == 2 and "COURSE_DATA_DIR" in capsys.readouterr().err


def test_a_relative_data_dir_is_relative_to_the_checkout(monkeypatch, tmp_path):
    name = f"data/test-relative-{os.getpid()}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COURSE_DATA_DIR", name)
    try:
        assert config.data_dir() == ROOT / name
    finally:
        (ROOT / name).rmdir()


def test_an_unknown_home_folder_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", "~no-such-user-4711/cache")
    with pytest.raises(config.ConfigError, match="home folder"):
        config.data_dir()


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("On", True), ("0", False),
                                                 ("off", False), ("", False)])
def test_flags_accept_the_usual_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("COURSE_FAST", value)
    assert config.fast_mode() is expected


def test_an_unknown_flag_value_is_an_error_not_off(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "ture")
    with pytest.raises(config.ConfigError, match="COURSE_FAST='ture'"):
        config.fast_mode()


# ------------------------------------------------------------------ 18, 21: prefetch
def test_prefetch_respects_offline_and_names_unknown_assets(raw_server, monkeypatch, capsys):
    base, hits = raw_server
    monkeypatch.setitem(assets.MANIFEST, "fake", _fake_asset(base + "/ok.bin"))
    assert cli.main(["prefetch", "fake"]) == 2  # COURSE_OFFLINE=1 from the fixture
    assert "COURSE_OFFLINE" in capsys.readouterr().err and hits == []
    monkeypatch.delenv("COURSE_OFFLINE")
    assert cli.main(["prefetch", "vgg16"]) == 2
    err = capsys.readouterr().err
    assert "unknown asset 'vgg16'" in err and "vgg16_weights" in err and hits == []


# ------------------------------------------------------------------ 15: VGG16 weights by env var
def test_vgg16_weights_named_by_the_environment_are_checked(monkeypatch, tmp_path):
    fake = tmp_path / "vgg16.h5"
    fake.write_bytes(b"\0" * 2048)
    monkeypatch.setenv("COURSE_VGG16_WEIGHTS", str(fake))
    bundle = models.load_vgg16()
    assert not bundle.trained and any("not the Keras VGG16" in n for n in bundle.notes)
    monkeypatch.setenv("COURSE_VGG16_WEIGHTS", str(tmp_path))
    bundle = models.load_vgg16()
    assert not bundle.trained and any("is a folder" in n for n in bundle.notes)


# ------------------------------------------------------------------ 1, 4, 12: model cache
@pytest.fixture(scope="module")
def tiny():
    return data.load_course_cxr(image_size=64, seed=7, n=120)


@pytest.mark.parametrize("damage", ["truncated", "empty", "foreign", "bad json", "other settings"])
def test_a_damaged_model_cache_is_set_aside_and_retrained(tiny, damage, capsys):
    first = models.load_or_train_cxr_model(tiny, epochs=1, seed=3)
    meta = first.path.with_suffix(".json")
    if damage == "truncated":
        first.path.write_bytes(first.path.read_bytes()[:1000])
    elif damage == "empty":
        first.path.write_bytes(b"")
    elif damage == "foreign":
        first.path.write_bytes(b"PK\x03\x04 not a keras archive")
    elif damage == "bad json":
        meta.write_text("{not json")
    else:
        meta.write_text(json.dumps({"history": {}, "seconds": 1, "settings": {"seed": 99}}))
    capsys.readouterr()
    again = models.load_or_train_cxr_model(tiny, epochs=1, seed=3)
    out = capsys.readouterr().out
    assert again.trained_now and again.path == first.path and "could not be used" in out
    assert (first.path.parent / (first.path.name + ".corrupt")).exists()
    third = models.load_or_train_cxr_model(tiny, epochs=1, seed=3)
    assert not third.trained_now  # the retrained model was cached properly


def test_a_full_disk_while_saving_leaves_no_partial_file(tiny, monkeypatch, capsys):
    import keras

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", no_space)
    result = models.load_or_train_cxr_model(tiny, epochs=1, seed=4)
    assert result.trained_now and result.model is not None
    assert "could not be cached" in capsys.readouterr().out
    folder = config.data_dir() / "models"
    assert not [p for p in folder.iterdir() if "partial" in p.name or p.suffix == ".keras"]


_TRAIN = """
import json, sys
from course_utils import data, models
tiny = data.load_course_cxr(image_size=64, seed=7, n=120)
r = models.load_or_train_cxr_model(tiny, epochs=1, seed=5)
print(json.dumps({"trained": r.trained_now, "path": str(r.path)}))
"""


def test_three_processes_share_one_training(tmp_path):
    """A classroom on one shared folder: one process trains, the others wait and load."""
    env = {**os.environ, "COURSE_DATA_DIR": str(tmp_path / "shared"), "COURSE_OFFLINE": "1",
           "TF_CPP_MIN_LOG_LEVEL": "3", "XDG_CACHE_HOME": str(tmp_path / "own")}
    procs = [subprocess.Popen([sys.executable, "-c", _TRAIN], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert sum(r["trained"] for r in results) == 1 and len({r["path"] for r in results}) == 1
    folder = tmp_path / "shared" / "models"
    assert not [p for p in folder.iterdir() if "partial" in p.name]


# ------------------------------------------------------------------ 7, 16, 17: photos
def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def test_a_lying_png_is_named_and_skipped_not_fatal(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(_png_claiming(1_000_000, 1_000_000))
    Image.fromarray(np.full((20, 30, 3), 9, np.uint8)).save(folder / "ok.png")
    photos, problems = images.folder_photos(folder)
    assert [p.title for p in photos] == ["ok.png"]
    assert len(problems) == 1 and "bomb.png" in problems[0] and "too large" in problems[0]


def test_a_huge_photo_is_downscaled_while_loading(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(np.full((3000, 4500, 3), 60, np.uint8)).save(path, quality=50)
    pixels = images.load_image(path)
    assert max(pixels.shape[:2]) <= images.MAX_SIDE and pixels.shape[1] > pixels.shape[0]


def test_sixteen_bit_greys_keep_their_order(tmp_path):
    greys = []
    for value in (200, 300, 40000):
        path = tmp_path / f"g{value}.png"
        Image.fromarray(np.full((8, 8), value, np.uint16)).save(path)
        greys.append(int(images.load_image(path)[0, 0, 0]))
    assert greys == sorted(greys) and greys[-1] > greys[0]


def test_phone_formats_and_folders_named_like_images_are_reported(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 100)
    (folder / "album.png").mkdir()
    photos, problems = images.folder_photos(folder)
    assert photos == [] and len(problems) == 2
    text = " ".join(problems)
    assert "HEIC" in text and "converting to JPEG" in text and "not a regular file" in text


def test_my_images_that_is_a_file_is_a_clear_error(isolated_cache):
    isolated_cache.mkdir(parents=True, exist_ok=True)
    (isolated_cache / "my_images").write_text("oops")
    with pytest.raises(images.ImageError, match="is a file"):
        images.my_images_dir()


# ------------------------------------------------------------------ 8: real data where doctor says
def test_real_data_in_the_data_folder_is_found_without_the_variable(monkeypatch, isolated_cache):
    monkeypatch.delenv("COURSE_CXR_DIR", raising=False)
    assert cxr.real_data_dir() is None
    where = assets.get("covid_radiography").path
    where.mkdir(parents=True)
    assert cxr.real_data_dir() == where
    assert next(r for r in assets.status() if r["asset"] == "covid_radiography")["present"]


# ------------------------------------------------------------------ 10, 20: saliency misuse
@pytest.fixture(scope="module")
def small_cnn():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 1)),
                              keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(1, activation="sigmoid")])
    x = np.random.default_rng(0).uniform(size=(5, 16, 16, 1)).astype("float32")
    return model, x


@pytest.mark.parametrize(("targets", "words"), [
    (0.73, "probabilities"), (np.array([0.2, 0.9, 0.5, 0.1, 0.7]), "probabilities"),
    (np.ones((5, 1), int), "1-D"), ([1, 0], "2 entries for 5 images"), ([], "empty")])
def test_bad_targets_are_refused_not_turned_into_class_0(small_cnn, targets, words):
    from course_utils import saliency

    model, x = small_cnn
    with pytest.raises(ValueError, match=words):
        saliency.compute(model, x, "vanilla", targets)


def test_integer_valued_float_targets_are_fine(small_cnn):
    from course_utils import saliency

    model, x = small_cnn
    a = saliency.compute(model, x, "vanilla", np.ones(5, np.float32)).raw
    b = saliency.compute(model, x, "vanilla", 1).raw
    np.testing.assert_allclose(a, b)


@pytest.mark.parametrize(("method", "settings", "words"), [
    ("vanilla", {"batch_size": 0}, "batch_size"),
    ("integrated_gradients", {"ig_steps": 0}, "ig_steps")])
def test_settings_that_would_give_nothing_or_nan_are_refused(small_cnn, method, settings, words):
    from course_utils import saliency

    model, x = small_cnn
    with pytest.raises(ValueError, match=words):
        saliency.compute(model, x, method, 1, **settings)


def test_scorecam_asks_for_more_channels_than_the_layer_has(small_cnn):
    from course_utils import saliency

    model, x = small_cnn  # 4 channels; the default asks for 32
    maps = saliency.compute(model, x, "scorecam", 1).raw
    assert maps.shape == (5, 16, 16) and np.isfinite(maps).all()


# ------------------------------------------------------------------ 19: unreadable masks folder
def test_an_unreadable_masks_folder_keeps_the_images_with_skip_bad(tmp_path, monkeypatch):
    from test_cxr import build_fake_dataset

    root = build_fake_dataset(tmp_path)

    def denied(mask_dir):
        if mask_dir is not None:
            raise PermissionError(13, "Permission denied", str(mask_dir))
        return {}

    monkeypatch.setattr(cxr, "_mask_lookup", denied)
    with pytest.raises(cxr.DatasetError, match="Cannot list the lung masks"):
        cxr.load_radiography(root, image_size=16)
    with pytest.warns(UserWarning, match="skipped"):
        loaded = cxr.load_radiography(root, image_size=16, skip_bad=True)
    assert len(loaded) > 0 and not loaded.has_mask.any()
    assert any("unreadable mask folder" in why for _, why in loaded.skipped)


# ------------------------------------------------------------------ 20: statistics misuse
def test_statistics_refuse_inputs_that_give_meaningless_intervals():
    from course_utils import metrics, stats

    with pytest.raises(ValueError, match="inf"):
        stats.bootstrap_ci(np.array([1.0, 2.0, np.inf, 3.0]))
    with pytest.raises(ValueError, match="n >= 3"):
        stats.bootstrap_ci_paired(np.array([0.1, 0.2]), np.array([0.3, 0.5]))
    with pytest.raises(ValueError, match="not logits"):
        metrics.binary_report(np.array([0, 1, 0, 1]), np.array([-2.0, 3.0, -1.0, 2.0]))
    with pytest.raises(ValueError, match=r"class 0 has 1\b"):
        cxr.stratified_split(np.array([0, 1, 1, 1, 1]), 0.2, seed=0)


def test_attacks_refuse_a_boolean_budget_and_a_negative_step(small_cnn):
    from course_utils import perturb

    model, x = small_cnn
    with pytest.raises(ValueError, match="eps"):
        perturb.fgsm(model, x, eps=True)
    with pytest.raises(ValueError, match="step_size"):
        perturb.pgd(model, x, 0.01, step_size=-0.001)


def test_my_images_as_a_looping_link_is_a_clear_error(isolated_cache):
    isolated_cache.mkdir(parents=True, exist_ok=True)
    os.symlink(isolated_cache / "my_images", isolated_cache / "my_images")  # points at itself
    with pytest.raises(images.ImageError, match="my_images"):
        images.my_images_dir()
