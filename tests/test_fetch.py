"""fetch-data end to end against a fake raw.githubusercontent.com on 127.0.0.1 (never the real network).

The fake server serves the shared corpus under the file names of TheVGLC/TheVGLC at the pinned commit,
written out here (not taken from the manifest) and matched case-sensitively, as GitHub does: a wrong
remote name in the manifest is a 404 here as it is there.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from hmolqd.atomic import TEMP_SUFFIX
from hmolqd.cli import main
from hmolqd.data.fetch import (
    DEFAULT_BASE_URL,
    MANIFEST_PATH,
    VGLC_COMMIT,
    FetchError,
    HashMismatchError,
    IncompleteDownloadError,
    ManifestEntry,
    NetworkUnavailableError,
    SizeMismatchError,
    build_manifest,
    fetch_vglc,
    file_url,
    load_manifest,
    verify_vglc,
)

MANIFEST = load_manifest()
ROOM_FILE = "Processed/tloz1_1.txt"
FAST = {"timeout": 5.0, "progress": False, "retries": 1, "backoff_s": 0.0}
REPO = Path(__file__).resolve().parents[1]
# TheVGLC/TheVGLC at the pinned commit: the licence is "License.md" at the repository root (its SHA-256 is the
# manifest's LICENSE-VGLC.md), the corpus lies under "The Legend of Zelda/" in the layout the loader reads.
UPSTREAM_LICENCE = "License.md"
UPSTREAM_ZELDA = "The Legend of Zelda"


def upstream_files(vglc_dir: Path) -> dict[str, bytes]:
    """The shared corpus under its upstream paths (SOURCE.md is our note about the copy, not an upstream file)."""
    files = {}
    for path in sorted(p for p in vglc_dir.rglob("*") if p.is_file()):
        local = path.relative_to(vglc_dir).as_posix()
        if local != "SOURCE.md":
            files[UPSTREAM_LICENCE if local == "LICENSE-VGLC.md" else f"{UPSTREAM_ZELDA}/{local}"] = path.read_bytes()
    return files


@dataclass
class FakeRepo:
    """What the fake server serves (remote path -> bytes) and how it misbehaves per remote path."""

    files: dict[str, bytes]
    tamper: set[str] = field(default_factory=set)  # serve the bytes with one byte changed
    truncate: set[str] = field(default_factory=set)  # full Content-Length, half the body, then close
    truncate_once: set[str] = field(default_factory=set)  # truncate only the first request
    missing: set[str] = field(default_factory=set)  # answer 404
    extra: dict[str, bytes] = field(default_factory=dict)  # serve the bytes with these appended (oversized)
    no_length: set[str] = field(default_factory=set)  # send no Content-Length (the body ends when the socket closes)
    requests: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def tampered(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x01]) + data[1:]


def make_handler(repo: FakeRepo, prefix: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            path = urllib.parse.unquote(self.path)
            remote = path[len(prefix) :] if path.startswith(prefix) else None
            with repo.lock:
                repo.requests[remote] += 1
                first = repo.requests[remote] == 1
            # An exact, case-sensitive lookup: "LICENSE.md" is not "License.md" (GitHub answers 404 too).
            if remote not in repo.files or remote in repo.missing:
                self.send_error(404)
                return
            body = repo.files[remote]
            if remote in repo.tamper:
                body = tampered(body)
            body += repo.extra.get(remote, b"")
            self.send_response(200)
            if remote not in repo.no_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if remote in repo.truncate or (first and remote in repo.truncate_once):
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True  # the socket closes with half the promised body sent
                return
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

    return Handler


@dataclass
class Server:
    repo: FakeRepo
    base_url: str


@pytest.fixture
def server(vglc_dir: Path) -> Iterator[Server]:
    """Serves the shared corpus under its upstream paths, like raw.githubusercontent.com/<repo>/<sha>/."""
    repo = FakeRepo(upstream_files(vglc_dir))
    prefix = f"/TheVGLC/TheVGLC/{VGLC_COMMIT}/"
    httpd = HTTPServer(("127.0.0.1", 0), make_handler(repo, prefix))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Server(repo, f"http://127.0.0.1:{httpd.server_address[1]}{prefix.rstrip('/')}")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def entry(path: str) -> ManifestEntry:
    return next(e for e in MANIFEST if e.path == path)


def part_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


def corpus_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# --- manifest -------------------------------------------------------------------------------------


@pytest.mark.real_data
def test_package_manifest_matches_shared_corpus(vglc_dir: Path) -> None:
    assert build_manifest(vglc_dir) == json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))
    assert verify_vglc(vglc_dir) == []
    assert len(MANIFEST) == 39  # 18 level texts + README, 18 graphs, zelda.json, licence
    assert corpus_files(vglc_dir) - {e.path for e in MANIFEST} == {"SOURCE.md"}


def test_build_manifest_maps_licence_and_skips_extras(tmp_path: Path) -> None:
    (tmp_path / "Processed").mkdir()
    (tmp_path / "Graph Processed").mkdir()
    (tmp_path / "Processed" / "tloz1_1.txt").write_bytes(b"WWWW\n")
    (tmp_path / "Graph Processed" / "LoZ_1.dot").write_bytes(b"digraph {}\n")
    (tmp_path / "Graph Processed" / "LoZ_1.svg").write_bytes(b"<svg/>")
    (tmp_path / "zelda.json").write_bytes(b"{}")
    (tmp_path / "LICENSE-VGLC.md").write_bytes(b"MIT")
    (tmp_path / "SOURCE.md").write_bytes(b"notes")
    files = build_manifest(tmp_path)["files"]
    assert [(f["path"], f["remote"]) for f in files] == [
        ("Processed/tloz1_1.txt", "The Legend of Zelda/Processed/tloz1_1.txt"),
        ("Graph Processed/LoZ_1.dot", "The Legend of Zelda/Graph Processed/LoZ_1.dot"),
        ("zelda.json", "The Legend of Zelda/zelda.json"),
        ("LICENSE-VGLC.md", "License.md"),
    ]
    assert files[3] == {
        "path": "LICENSE-VGLC.md",
        "remote": "License.md",
        "sha256": hashlib.sha256(b"MIT").hexdigest(),
        "size": 3,
    }
    (tmp_path / "LICENSE-VGLC.md").unlink()
    with pytest.raises(FetchError, match="LICENSE-VGLC.md"):
        build_manifest(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"path": "../escape.txt"}, "'path' must be a relative POSIX path"),
        ({"remote": "/etc/passwd"}, "'remote' must be a relative POSIX path"),
        ({"sha256": "abc"}, "'sha256' must be 64 lowercase hex digits"),
        ({"size": -1}, "'size' must be a non-negative int"),
    ],
)
def test_load_manifest_rejects_bad_entries(tmp_path: Path, change: dict, message: str) -> None:
    good = {"path": "zelda.json", "remote": "The Legend of Zelda/zelda.json", "sha256": "0" * 64, "size": 1}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"files": [{**good, **change}]}), encoding="utf-8")
    with pytest.raises(FetchError, match=r"files\[0\]: " + message):
        load_manifest(path)


def test_default_url_is_pinned_commit_with_spaces_quoted() -> None:
    dot = ManifestEntry("Graph Processed/LoZ_1.dot", "The Legend of Zelda/Graph Processed/LoZ_1.dot", "0" * 64, 0)
    assert file_url(DEFAULT_BASE_URL, dot) == (
        "https://raw.githubusercontent.com/TheVGLC/TheVGLC/0e86a8f31f20ecad4eaa5741ff061af88767f7fb"
        "/The%20Legend%20of%20Zelda/Graph%20Processed/LoZ_1.dot"
    )


# --- download end to end --------------------------------------------------------------------------


@pytest.mark.real_data
def test_full_download_then_second_run_skips(server: Server, vglc_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    report = fetch_vglc(dest, server.base_url, **FAST)
    assert len(report.downloaded) == len(MANIFEST) and report.skipped == () and report.replaced == ()
    assert report.bytes_downloaded == sum(e.size for e in MANIFEST)
    assert verify_vglc(dest) == []
    # The loader reads the folder directly: same relative layout and bytes as the shared copy.
    assert corpus_files(dest) == corpus_files(vglc_dir) - {"SOURCE.md"}
    for name in (ROOM_FILE, "Graph Processed/LoZ_1.dot", "zelda.json", "LICENSE-VGLC.md"):
        assert (dest / name).read_bytes() == (vglc_dir / name).read_bytes()
    assert server.repo.requests == Counter({e.remote: 1 for e in MANIFEST})

    again = fetch_vglc(dest, server.base_url, **FAST)
    assert again.downloaded == () and len(again.skipped) == len(MANIFEST)
    assert sum(server.repo.requests.values()) == len(MANIFEST)  # no request on the second run


@pytest.mark.real_data
def test_tampered_file_is_rejected_and_not_written(server: Server, tmp_path: Path) -> None:
    target = entry(ROOM_FILE)
    server.repo.tamper.add(target.remote)
    bad_sha = hashlib.sha256(tampered(server.repo.files[target.remote])).hexdigest()
    dest = tmp_path / "data"
    with pytest.raises(HashMismatchError) as info:
        fetch_vglc(dest, server.base_url, **FAST)
    message = str(info.value)
    assert ROOM_FILE in message and target.sha256 in message and bad_sha in message
    assert not (dest / ROOM_FILE).exists()
    assert part_files(dest) == []
    assert server.repo.requests[target.remote] == 1  # a hash mismatch is not retried


@pytest.mark.real_data
def test_tampered_download_leaves_earlier_copy_untouched(server: Server, tmp_path: Path) -> None:
    target = entry(ROOM_FILE)
    server.repo.tamper.add(target.remote)
    dest = tmp_path / "data"
    (dest / "Processed").mkdir(parents=True)
    (dest / ROOM_FILE).write_bytes(b"old corrupt copy\n")
    with pytest.raises(HashMismatchError, match=ROOM_FILE):
        fetch_vglc(dest, server.base_url, **FAST)
    assert (dest / ROOM_FILE).read_bytes() == b"old corrupt copy\n"
    assert part_files(dest) == []


@pytest.mark.real_data
def test_valid_local_copy_is_kept_even_if_server_is_tampered(server: Server, vglc_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    fetch_vglc(dest, server.base_url, **FAST)
    server.repo.tamper.add(entry(ROOM_FILE).remote)
    report = fetch_vglc(dest, server.base_url, **FAST)
    assert report.downloaded == ()
    assert (dest / ROOM_FILE).read_bytes() == (vglc_dir / ROOM_FILE).read_bytes()


@pytest.mark.real_data
def test_connection_dropped_mid_file(server: Server, tmp_path: Path) -> None:
    target = entry(ROOM_FILE)
    server.repo.truncate.add(target.remote)
    dest = tmp_path / "data"
    with pytest.raises(IncompleteDownloadError, match=rf"{ROOM_FILE}: connection closed after {target.size // 2} of "):
        fetch_vglc(dest, server.base_url, **FAST)
    assert not (dest / ROOM_FILE).exists()
    assert part_files(dest) == []
    assert server.repo.requests[target.remote] == 2  # FAST allows one retry


@pytest.mark.real_data
def test_connection_dropped_once_is_retried(server: Server, tmp_path: Path) -> None:
    target = entry(ROOM_FILE)
    server.repo.truncate_once.add(target.remote)
    dest = tmp_path / "data"
    report = fetch_vglc(dest, server.base_url, **FAST)
    assert ROOM_FILE in report.downloaded and verify_vglc(dest) == []
    assert server.repo.requests[target.remote] == 2


@pytest.mark.real_data
def test_corrupt_local_file_is_replaced(server: Server, vglc_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    fetch_vglc(dest, server.base_url, **FAST)
    (dest / ROOM_FILE).write_bytes(b"W" * entry(ROOM_FILE).size)  # right size, wrong bytes
    (dest / "Processed" / f".{Path(ROOM_FILE).name}.abc123{TEMP_SUFFIX}").write_bytes(b"left by a killed run")
    report = fetch_vglc(dest, server.base_url, **FAST)
    assert report.downloaded == (ROOM_FILE,) and report.replaced == (ROOM_FILE,)
    assert (dest / ROOM_FILE).read_bytes() == (vglc_dir / ROOM_FILE).read_bytes()
    assert part_files(dest) == []
    assert server.repo.requests[entry(ROOM_FILE).remote] == 2


@pytest.mark.real_data
def test_http_404_names_the_url(server: Server, tmp_path: Path) -> None:
    target = entry("zelda.json")
    server.repo.missing.add(target.remote)
    with pytest.raises(FetchError, match=r"HTTP 404 .*/The%20Legend%20of%20Zelda/zelda\.json") as info:
        fetch_vglc(tmp_path / "data", server.base_url, **FAST)
    assert type(info.value) is FetchError
    assert server.repo.requests[target.remote] == 1  # 404 is not retried


@pytest.mark.real_data
def test_main_exit_codes(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch-data", str(tmp_path / "ok"), "--base-url", server.base_url, "--timeout", "5", "--quiet"]) == 0
    assert verify_vglc(tmp_path / "ok") == []
    server.repo.missing.add(entry("zelda.json").remote)
    assert main(["fetch-data", str(tmp_path / "bad"), "--base-url", server.base_url, "--quiet"]) == 1
    assert "fetch-data failed: HTTP 404" in capsys.readouterr().err


def test_no_network_tells_user_about_offline_options(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port that nothing listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    one = [ManifestEntry("zelda.json", "The Legend of Zelda/zelda.json", "0" * 64, 1)]
    with pytest.raises(
        NetworkUnavailableError, match=r"cannot reach http://127\.0\.0\.1:\d+/.*Kaggle dataset.*data dir"
    ):
        fetch_vglc(tmp_path / "data", f"http://127.0.0.1:{port}", manifest=one, **FAST)
    assert part_files(tmp_path) == []


# --- upstream file names (case-sensitive) ---------------------------------------------------------


@pytest.mark.real_data
def test_manifest_asks_for_the_upstream_names_and_bytes(vglc_dir: Path) -> None:
    upstream = upstream_files(vglc_dir)
    assert {e.remote for e in MANIFEST} == set(upstream)
    for e in MANIFEST:
        assert hashlib.sha256(upstream[e.remote]).hexdigest() == e.sha256, e.remote
    assert entry("LICENSE-VGLC.md").remote == UPSTREAM_LICENCE


@pytest.mark.real_data
@pytest.mark.parametrize(
    ("remote", "status"),
    [(UPSTREAM_LICENCE, 200), ("LICENSE.md", 404), ("license.md", 404), ("the legend of zelda/zelda.json", 404)],
)
def test_fake_server_matches_names_case_sensitively(server: Server, remote: str, status: int) -> None:
    url = file_url(server.base_url, ManifestEntry("x", remote, "0" * 64, 0))
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            got = response.status
    except urllib.error.HTTPError as err:
        got = err.code
    assert got == status


@pytest.mark.real_data
def test_old_licence_name_fails_against_the_upstream_names(server: Server, tmp_path: Path) -> None:
    lic = entry("LICENSE-VGLC.md")
    old = [ManifestEntry(lic.path, "LICENSE.md", lic.sha256, lic.size)]
    with pytest.raises(FetchError, match=r"HTTP 404 .*/LICENSE\.md \(file LICENSE-VGLC\.md\)"):
        fetch_vglc(tmp_path / "data", server.base_url, manifest=old, **FAST)
    assert fetch_vglc(tmp_path / "data", server.base_url, manifest=[lic], **FAST).downloaded == (lic.path,)


# --- oversized download -----------------------------------------------------------------------------


@pytest.mark.real_data
@pytest.mark.parametrize("extra", [b"\n", b"x" * 100_000], ids=["one_byte", "100k"])
@pytest.mark.parametrize("content_length", [True, False], ids=["content_length", "no_length"])
def test_oversized_download_is_a_size_mismatch_not_retried(
    server: Server, tmp_path: Path, extra: bytes, content_length: bool
) -> None:
    target = entry("zelda.json")
    server.repo.extra[target.remote] = extra
    if not content_length:
        server.repo.no_length.add(target.remote)
    dest = tmp_path / "data"
    with pytest.raises(
        SizeMismatchError, match=rf"^zelda\.json: size mismatch: .*the manifest's file is {target.size} bytes"
    ) as info:
        fetch_vglc(dest, server.base_url, manifest=[target], **FAST)
    assert "connection closed" not in str(info.value)
    assert server.repo.requests[target.remote] == 1  # a size mismatch is not retried as a network fault
    assert not (dest / "zelda.json").exists() and part_files(dest) == []


# --- README command (a) end to end -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.real_data
def test_readme_command_a_fetches_then_trains(server: Server, tmp_path: Path) -> None:
    """README command (a) against the fake upstream: `fetch-data DIR`, then `train --set data_dir=DIR`.

    The server holds the real corpus under the upstream names (case included). Training uses the `smoke`
    preset instead of the README's `cpu` preset to keep CI short: it is the same command and code path.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    data = tmp_path / "data" / "vglc-zelda"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hmolqd", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )

    fetched = run("fetch-data", str(data), "--base-url", server.base_url)
    assert fetched.returncode == 0, fetched.stderr
    assert verify_vglc(data) == [] and (data / "LICENSE-VGLC.md").is_file()
    assert server.repo.requests[UPSTREAM_LICENCE] == 1 and sum(server.repo.requests.values()) == len(MANIFEST)

    trained = run("train", "--preset", "smoke", "--set", f"data_dir={data}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert f"data: {data}: 404 training rooms" in trained.stdout
    final = tmp_path / "runs" / "smoke" / "outputs" / "model_final.pt"
    assert final.is_file()
    from hmolqd.checkpointing.export import load_model

    assert load_model(final).config.data.data_dir == str(data)
