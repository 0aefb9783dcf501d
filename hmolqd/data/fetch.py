"""Download the VGLC Zelda corpus at a pinned commit, verified file by file against a SHA-256 manifest.

The manifest (``vglc_manifest.json`` next to this module) lists every file of the corpus: its local path
under the data dir (the layout the loader reads), its remote path relative to the TheVGLC repository root,
its SHA-256 and its size. Files are streamed into a temp file in the target folder, checked, fsynced and
renamed into place with ``os.replace``, so a data dir never holds a partial or unverified file.
Only the standard library is used (urllib), so a bare Kaggle kernel can run it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from hmolqd.atomic import TEMP_SUFFIX, atomic_write

VGLC_REPO = "TheVGLC/TheVGLC"
VGLC_COMMIT = "0e86a8f31f20ecad4eaa5741ff061af88767f7fb"
# Repository root at the pinned commit; remote paths in the manifest are relative to it, because the
# MIT licence lives at the repository root, outside the Zelda folder.
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/{VGLC_REPO}/{VGLC_COMMIT}"
ZELDA_FOLDER = "The Legend of Zelda"
LICENSE_LOCAL = "LICENSE-VGLC.md"
# The licence's name at the pinned commit, exactly (GitHub paths are case-sensitive); stored locally as LICENSE_LOCAL.
LICENSE_REMOTE = "License.md"
MANIFEST_PATH = Path(__file__).with_name("vglc_manifest.json")

_CHUNK = 64 * 1024
_OFFLINE_HINT = (
    "Without network access, attach the Kaggle dataset with the VGLC Zelda files to the notebook "
    "or pass the folder of an existing copy as the data dir."
)


class FetchError(RuntimeError):
    """A file of the corpus could not be downloaded and verified."""


class HashMismatchError(FetchError):
    """The downloaded bytes do not match the manifest (tampered or wrong file)."""


class SizeMismatchError(HashMismatchError):
    """The server sends more (or other) bytes than the manifest's size: not the pinned file; never retried."""


class IncompleteDownloadError(FetchError):
    """The connection closed before the whole file arrived."""


class NetworkUnavailableError(FetchError):
    """The server could not be reached at all."""


@dataclass(frozen=True)
class ManifestEntry:
    path: str  # local, relative to the data dir, POSIX separators
    remote: str  # relative to the repository root at the pinned commit
    sha256: str
    size: int


@dataclass(frozen=True)
class FetchReport:
    dest: Path
    downloaded: tuple[str, ...]
    skipped: tuple[str, ...]  # already present and valid
    replaced: tuple[str, ...]  # subset of downloaded: a local copy existed but failed verification
    bytes_downloaded: int

    def summary(self) -> str:
        return (
            f"{self.dest}: {len(self.downloaded)} downloaded ({self.bytes_downloaded} bytes, "
            f"{len(self.replaced)} replaced a corrupt copy), {len(self.skipped)} already valid"
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _remote_path(local: str) -> str:
    return LICENSE_REMOTE if local == LICENSE_LOCAL else f"{ZELDA_FOLDER}/{local}"


def build_manifest(folder: Path) -> dict:
    """Manifest of a local copy: Processed/*.txt, Graph Processed/*.dot, zelda.json and the licence.

    Anything else in ``folder`` (SOURCE.md, images, svg) is not part of the corpus and is left out.
    """
    folder = Path(folder)
    if not (folder / "Processed").is_dir():
        raise FetchError(f"{folder}: no Processed/ folder; expected a VGLC 'The Legend of Zelda' copy")
    required = [folder / "zelda.json", folder / LICENSE_LOCAL]
    missing = [str(p) for p in required if not p.is_file()]
    if missing:
        raise FetchError(f"{folder}: missing {', '.join(missing)} (every corpus copy keeps them)")
    files = sorted(folder.glob("Processed/*.txt")) + sorted(folder.glob("Graph Processed/*.dot")) + required
    entries = []
    for file in files:
        local = file.relative_to(folder).as_posix()
        entries.append(
            {"path": local, "remote": _remote_path(local), "sha256": sha256_file(file), "size": file.stat().st_size}
        )
    return {"repo": VGLC_REPO, "commit": VGLC_COMMIT, "files": entries}


def _checked_relpath(value: object, key: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise FetchError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    pure = PurePosixPath(value)
    if pure.is_absolute() or ".." in pure.parts or "\\" in value:
        raise FetchError(f"{where}: '{key}' must be a relative POSIX path inside the folder, got {value!r}")
    return value


def load_manifest(path: Path = MANIFEST_PATH) -> list[ManifestEntry]:
    """Parse and validate the manifest; every entry names a relative path, a remote path, sha256 and size."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise FetchError(f"{path}: cannot read the manifest: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("files"), list) or not data["files"]:
        raise FetchError(f"{path}: expected an object with a non-empty 'files' list")
    entries, seen = [], set()
    for i, item in enumerate(data["files"]):
        where = f"{path}: files[{i}]"
        if not isinstance(item, dict):
            raise FetchError(f"{where}: expected an object, got {item!r}")
        local = _checked_relpath(item.get("path"), "path", where)
        remote = _checked_relpath(item.get("remote"), "remote", where)
        digest, size = item.get("sha256"), item.get("size")
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise FetchError(f"{where}: 'sha256' must be 64 lowercase hex digits, got {digest!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise FetchError(f"{where}: 'size' must be a non-negative int, got {size!r}")
        if local in seen:
            raise FetchError(f"{where}: duplicate path {local!r}")
        seen.add(local)
        entries.append(ManifestEntry(local, remote, digest, size))
    return entries


def _is_valid(target: Path, entry: ManifestEntry) -> bool:
    return target.is_file() and target.stat().st_size == entry.size and sha256_file(target) == entry.sha256


def verify_vglc(folder: Path, manifest: Sequence[ManifestEntry] | None = None) -> list[str]:
    """Problems of a local copy ('<path>: missing' / '<path>: sha256 mismatch'); empty when it is complete."""
    entries = load_manifest() if manifest is None else manifest
    problems = []
    for entry in entries:
        target = Path(folder) / entry.path
        if not target.is_file():
            problems.append(f"{entry.path}: missing")
        elif not _is_valid(target, entry):
            problems.append(f"{entry.path}: size or sha256 differs from the manifest")
    return problems


def file_url(base_url: str, entry: ManifestEntry) -> str:
    # Quote each segment ("The Legend of Zelda" -> "The%20Legend%20of%20Zelda"), keep the slashes.
    return f"{base_url.rstrip('/')}/{urllib.parse.quote(entry.remote, safe='/')}"


def _remove_stale_parts(target: Path) -> None:
    # Temp files of a run that was killed (a killed process cannot run the cleanup in _stream_to).
    for stale in target.parent.glob(f".{target.name}.*{TEMP_SUFFIX}"):
        stale.unlink()


def _download_once(url: str, entry: ManifestEntry, target: Path, timeout: float) -> int:
    """One attempt: stream into a temp file beside ``target``, verify, then os.replace. Returns bytes."""
    request = urllib.request.Request(url, headers={"User-Agent": "hmolqd-fetch"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        raise FetchError(f"HTTP {err.code} {err.reason} for {url} (file {entry.path})") from err
    except http.client.HTTPException as err:  # connected, but the server hung up before a full header
        raise IncompleteDownloadError(f"{entry.path}: no complete response from {url}: {err!r}") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise NetworkUnavailableError(f"cannot reach {url}: {reason}. {_OFFLINE_HINT}") from err
    with response:
        atomic_write(target, lambda out: _stream_to(response, url, entry, out))
    return entry.size


def _stream_to(response: http.client.HTTPResponse, url: str, entry: ManifestEntry, out: BinaryIO) -> None:
    """Copy the body into `out` (a temp file that atomic_write moves into place only if this returns)."""
    declared = response.headers.get("Content-Length")
    expected_len = int(declared) if declared is not None and declared.isdigit() else None
    if expected_len is not None and expected_len > entry.size:  # announced too big: not the pinned file
        raise _size_mismatch(entry, url, f"the server announces {expected_len} bytes (Content-Length)")
    digest, received = hashlib.sha256(), 0
    try:
        # Read at most one byte past the manifest size: enough to detect an oversized body.
        while received <= entry.size:
            chunk = response.read(min(_CHUNK, entry.size + 1 - received))
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
            received += len(chunk)
    except (http.client.HTTPException, OSError) as err:  # reset, timeout (socket.timeout is OSError)
        raise IncompleteDownloadError(
            f"{entry.path}: connection failed after {received} bytes from {url}: {err}"
        ) from err
    if received > entry.size:  # more bytes than the pinned file has (no Content-Length to say so up front)
        raise _size_mismatch(entry, url, f"the server sent more than {entry.size} bytes")
    # http.client's read(amt) returns short data instead of raising when the server closes
    # early, so the length has to be checked here.
    if expected_len is not None and received < expected_len:
        raise IncompleteDownloadError(
            f"{entry.path}: connection closed after {received} of {expected_len} bytes from {url}"
        )
    actual = digest.hexdigest()
    if received != entry.size or actual != entry.sha256:
        raise HashMismatchError(
            f"{entry.path}: downloaded file does not match the manifest (from {url}): "
            f"expected sha256 {entry.sha256} ({entry.size} bytes), "
            f"got sha256 {actual} ({received} bytes)"
        )


def _size_mismatch(entry: ManifestEntry, url: str, what: str) -> SizeMismatchError:
    return SizeMismatchError(
        f"{entry.path}: size mismatch: {what}, but the manifest's file is {entry.size} bytes (from {url}); "
        "this is not the pinned file, so it is not downloaded and not retried"
    )


def _download(url: str, entry: ManifestEntry, target: Path, timeout: float, retries: int, backoff_s: float) -> int:
    """Retry transient failures (dropped connection, unreachable server, HTTP 5xx/429) with backoff."""
    for attempt in range(retries + 1):
        try:
            return _download_once(url, entry, target, timeout)
        except (IncompleteDownloadError, NetworkUnavailableError) as err:
            last: FetchError = err
        except FetchError as err:
            cause = err.__cause__
            if not (isinstance(cause, urllib.error.HTTPError) and (cause.code >= 500 or cause.code == 429)):
                raise  # 404, hash mismatch: the pinned commit is immutable, a retry cannot help
            last = err
        if attempt < retries:
            time.sleep(backoff_s * 2**attempt)
    raise last


def fetch_vglc(
    dest: Path,
    base_url: str = DEFAULT_BASE_URL,
    *,
    timeout: float = 30,
    progress: bool = True,
    retries: int = 2,
    backoff_s: float = 1.0,
    manifest: Sequence[ManifestEntry] | None = None,
) -> FetchReport:
    """Download every manifest file into ``dest`` (the loader's layout); valid files already there are kept.

    Stops at the first file that cannot be downloaded and verified; files finished before it stay
    (they are valid), nothing partial is left, so running again resumes; folders it made that are still
    empty then are removed.
    """
    if retries < 0 or backoff_s < 0 or not 0 < timeout < float("inf"):
        raise ValueError(
            f"need retries >= 0, backoff_s >= 0, a finite timeout > 0; got {retries}, {backoff_s}, {timeout}"
        )
    entries = load_manifest() if manifest is None else list(manifest)
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise FetchError(f"{dest}: exists and is not a folder")
    created: list[Path] = []  # folders this call made, removed again if they are still empty when it fails
    try:
        return _fetch_entries(
            dest, entries, base_url, created, timeout=timeout, progress=progress, retries=retries, backoff_s=backoff_s
        )
    except BaseException:
        for folder in reversed(created):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()  # only an empty folder made here: never a file, nor a folder that was there before
        raise


def _make_dirs(folder: Path, created: list[Path]) -> None:
    """`folder.mkdir(parents=True)`, recording each folder made in `created` (outermost first)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        created.append(new)


def _fetch_entries(
    dest: Path,
    entries: Sequence[ManifestEntry],
    base_url: str,
    created: list[Path],
    *,
    timeout: float,
    progress: bool,
    retries: int,
    backoff_s: float,
) -> FetchReport:
    downloaded, skipped, replaced, total_bytes = [], [], [], 0
    for i, entry in enumerate(entries, start=1):
        target = dest / entry.path
        _make_dirs(target.parent, created)
        _remove_stale_parts(target)
        if _is_valid(target, entry):
            skipped.append(entry.path)
            continue
        existed = target.exists()
        total_bytes += _download(file_url(base_url, entry), entry, target, timeout, retries, backoff_s)
        downloaded.append(entry.path)
        if existed:
            replaced.append(entry.path)
        if progress:
            note = " (replaced a corrupt copy)" if existed else ""
            print(f"[{i}/{len(entries)}] {entry.path}{note}", file=sys.stderr, flush=True)
    report = FetchReport(dest, tuple(downloaded), tuple(skipped), tuple(replaced), total_bytes)
    if progress:
        print(report.summary(), file=sys.stderr, flush=True)
    return report
