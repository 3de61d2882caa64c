"""The real download code, exercised against a local HTTP server (127.0.0.1 only)."""
from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from course_utils import assets

PAYLOAD = bytes(range(256)) * 1000  # 256 kB, several read chunks


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[str, bytes]] = {}
    hits: dict[str, int] = {}

    def do_GET(self):  # noqa: N802 (http.server API)
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        kind, body = self.routes.get(self.path, ("404", b""))
        if kind == "404":
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if kind == "truncate":  # promise the whole body, send half, hang up
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server():
    _Handler.routes = {
        "/ok.bin": ("ok", PAYLOAD),
        "/truncated.bin": ("truncate", PAYLOAD),
    }
    _Handler.hits = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_and_shows_progress(server, tmp_path, capsys):
    base, _ = server
    dest = tmp_path / "dl" / "file.bin"
    out = assets.download(f"{base}/ok.bin", dest, sha256=_sha(PAYLOAD), size_bytes=len(PAYLOAD),
                          progress=True)
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["file.bin"]  # no temporary file left behind
    err = capsys.readouterr().err
    assert "100%" in err and "file.bin" in err  # the tqdm bar ran to completion


def test_wrong_checksum_is_rejected_and_nothing_is_written(server, tmp_path):
    base, _ = server
    dest = tmp_path / "dl" / "file.bin"
    with pytest.raises(assets.DownloadError, match="sha256"):
        assets.download(f"{base}/ok.bin", dest, sha256=_sha(b"something else"), progress=False)
    assert _leftovers(dest.parent) == []


def test_wrong_size_is_rejected(server, tmp_path):
    base, _ = server
    dest = tmp_path / "file.bin"
    with pytest.raises(assets.DownloadError, match="size"):
        assets.download(f"{base}/ok.bin", dest, size_bytes=len(PAYLOAD) + 1, progress=False)
    assert not dest.exists()


def test_truncated_transfer_is_detected(server, tmp_path):
    base, _ = server
    dest = tmp_path / "dl" / "file.bin"
    with pytest.raises(assets.DownloadError, match="cut off|failed"):
        assets.download(f"{base}/truncated.bin", dest, progress=False)
    assert _leftovers(dest.parent) == []


def test_http_404_names_the_status(server, tmp_path):
    base, _ = server
    dest = tmp_path / "file.bin"
    with pytest.raises(assets.DownloadError, match="HTTP 404"):
        assets.download(f"{base}/missing.bin", dest, progress=False)
    assert not dest.exists()


def test_refused_connection(tmp_path):
    with socket.socket() as s:  # find a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "file.bin"
    with pytest.raises(assets.DownloadError, match="refused|failed"):
        assets.download(f"http://127.0.0.1:{port}/x.bin", dest, progress=False, timeout=5)
    assert _leftovers(tmp_path) == []


def test_failed_download_keeps_an_existing_file(server, tmp_path):
    base, _ = server
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"precious")
    with pytest.raises(assets.DownloadError):
        assets.download(f"{base}/truncated.bin", dest, progress=False)
    assert dest.read_bytes() == b"precious"


def _fake_asset(base: str, **kw) -> assets.Asset:
    fields = dict(name="fake", kind="metadata", url=f"{base}/ok.bin", filename="misc/fake.bin",
                  description="a test file", licence="CC0", attribution="tests",
                  source="http://example.invalid", sha256=_sha(PAYLOAD))
    return assets.Asset(**(fields | kw))


def test_fetch_downloads_once_then_uses_the_cache(server, monkeypatch, isolated_cache):
    base, handler = server
    monkeypatch.setitem(assets.MANIFEST, "fake", _fake_asset(base))
    first = assets.fetch("fake", offline=False, progress=False)
    second = assets.fetch("fake", offline=False, progress=False)
    assert first == second == isolated_cache / "misc" / "fake.bin"
    assert first.read_bytes() == PAYLOAD
    assert handler.hits == {"/ok.bin": 1}


def test_fetch_falls_back_to_a_mirror(server, monkeypatch):
    base, handler = server
    asset = _fake_asset(base, url=f"{base}/gone.bin", mirrors=(f"{base}/ok.bin",))
    monkeypatch.setitem(assets.MANIFEST, "fake", asset)
    assert assets.fetch("fake", offline=False, progress=False).read_bytes() == PAYLOAD
    assert handler.hits == {"/gone.bin": 1, "/ok.bin": 1}


def test_offline_with_nothing_cached_explains_how_to_stage(monkeypatch, isolated_cache):
    monkeypatch.setitem(assets.MANIFEST, "fake", _fake_asset("http://127.0.0.1:9"))
    with pytest.raises(assets.AssetUnavailable) as err:
        assets.fetch("fake")  # COURSE_OFFLINE=1 from the autouse fixture
    message = str(err.value)
    assert "'fake'" in message and "offline" in message
    assert "prefetch" in message and str(isolated_cache / "misc" / "fake.bin") in message


def test_corrupt_cache_is_moved_aside_and_fetched_again(server, monkeypatch, isolated_cache):
    base, handler = server
    monkeypatch.setitem(assets.MANIFEST, "fake", _fake_asset(base))
    cached = isolated_cache / "misc" / "fake.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD[:1000])  # a half-downloaded copy from some other tool
    assert assets.fetch("fake", offline=False, progress=False).read_bytes() == PAYLOAD
    assert (cached.parent / "fake.bin.corrupt").read_bytes() == PAYLOAD[:1000]  # kept, not used
    assert handler.hits == {"/ok.bin": 1}


def test_corrupt_cache_offline_is_never_used(monkeypatch, isolated_cache):
    monkeypatch.setitem(assets.MANIFEST, "fake", _fake_asset("http://127.0.0.1:9"))
    cached = isolated_cache / "misc" / "fake.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half")
    with pytest.raises(assets.AssetUnavailable, match="damaged"):
        assets.fetch("fake")


def test_try_fetch_and_prefetch_report_instead_of_raising(server, monkeypatch):
    base, _ = server
    monkeypatch.setitem(assets.MANIFEST, "fake", _fake_asset(base))
    monkeypatch.setitem(assets.MANIFEST, "broken", _fake_asset(base, name="broken",
                                                              url=f"{base}/nope.bin",
                                                              filename="misc/broken.bin"))
    path, problem = assets.try_fetch("broken", offline=False, progress=False)
    assert path is None and "HTTP 404" in problem
    results = assets.prefetch(["fake", "broken", "covid_radiography"], progress=False)
    assert results["fake"] == "ok"
    assert "HTTP 404" in results["broken"]
    assert results["covid_radiography"].startswith("manual")


def test_manual_dataset_points_to_instructions():
    with pytest.raises(assets.AssetUnavailable, match="Kaggle"):
        assets.fetch("covid_radiography")


def test_unknown_asset_lists_known_names():
    with pytest.raises(KeyError, match="vgg16_weights"):
        assets.get("nope")


def test_manifest_is_complete_and_commons_urls_are_consistent():
    for asset in assets.MANIFEST.values():
        assert asset.url.startswith("https://") and asset.licence and asset.attribution
        assert asset.source.startswith("https://") and asset.description
    for key in assets.PHOTOS:
        asset = assets.get(key)
        file_name = asset.source.rsplit("File:", 1)[1]
        unquoted = assets.urllib.parse.unquote(file_name)
        h = hashlib.md5(unquoted.encode()).hexdigest()
        for url in (asset.url, *asset.mirrors):
            assert f"/{h[0]}/{h[:2]}/{file_name}" in url  # Commons' hashed folder layout
    assert assets.get("vgg16_weights").md5 == "64373286793e3c8b2b4e3219cbf3544b"


def test_network_probe_respects_offline_flag():
    assert assets.network_available() is False  # COURSE_OFFLINE=1: never even tries
