"""Downloading a finished video into a part file: streamed, resumable, size-capped and SSRF-guarded.

The archive must never hold a partial or wrong file, so `download()` only ever fills `part_path` and
returns once it holds the complete body; the caller then moves it into place atomically. A part file left
by an earlier attempt (or a worker killed mid-download) is resumed with `Range`. Video URLs come from
callbacks, so the host is untrusted: every connection, redirects included, goes through outbound.py's
guarded client, which refuses internal addresses at the moment it connects.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx

from webhook_service.integrations.outbound import BlockedAddress, guarded_client
from webhook_service.redaction import url_without_secrets

# Reasons that a later retry cannot fix; the part file is deleted with them.
PERMANENT = frozenset(
    {"not_found", "too_large", "blocked_address", "too_many_redirects", "bad_url", "client_error"}
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)")
# Every this many bytes, start writing the part file out (and drop it from the page cache), so the fsync
# at the end has little left to wait for. posix_fadvise is missing on macOS: there the fsync does it all.
_WRITEBACK_EVERY = 32 << 20
_fadvise = getattr(os, "posix_fadvise", None)
_WRITE_BUFFER = 1 << 20


@dataclass(frozen=True)
class DownloadPolicy:
    max_bytes: int = 2 * 1024**3
    allowed_hosts: frozenset[str] = frozenset()  # hostnames or IPs exempt from the address check
    max_redirects: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    attempts: int = 3  # tries within one call for truncated/dropped/5xx responses, resuming each time
    backoff: float = 0.5  # seconds before the second try, doubled after that, at most 4x


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size: int
    sha256: str
    final_url: str
    content_type: str | None


class DownloadError(Exception):
    """Why a download failed; `permanent` ones will fail again, the others may succeed on a later try.

    Reasons: not_found (403/404/410), client_error (other 4xx), too_large, blocked_address,
    too_many_redirects, bad_url (all permanent); incomplete, server_error (5xx, 408, 429), connection,
    busy (another process is filling the same part file).
    """

    def __init__(self, reason: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.permanent = reason in PERMANENT
        self.http_status = http_status
        self.url = ""  # set by download(): without credentials or query (signed URLs carry tokens there)


def _client(policy: DownloadPolicy) -> httpx.Client:
    timeout = httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout)
    # Offsets in Range must be offsets in the stored bytes.
    return guarded_client(policy.allowed_hosts, timeout, headers={"Accept-Encoding": "identity"})


class _Part:
    """The part file, locked and open for appending, with the size and digest of what it holds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.etag: str | None = None
        self._file = open(path, "a+b", buffering=_WRITE_BUFFER)  # noqa: SIM115 - closed by close()
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise DownloadError("busy", f"{path.name} is being downloaded by another process") from None
        self._file.seek(0)
        self._hasher = hashlib.file_digest(self._file, "sha256")  # type: ignore[arg-type]  # a real file
        self.size = self._written_back = self._file.tell()

    def reset(self) -> None:
        self._file.truncate(0)
        self._hasher = hashlib.sha256()
        self.size = self._written_back = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hasher.update(data)
        self.size += len(data)
        if _fadvise and self.size - self._written_back >= _WRITEBACK_EVERY:
            # On Linux DONTNEED starts asynchronous writeback of the dirty range: disk and network overlap.
            _fadvise(self._file.fileno(), self._written_back, 0, os.POSIX_FADV_DONTNEED)
            self._written_back = self.size

    def finish(self, final_url: str, content_type: str | None) -> Downloaded:
        """Flush to disk before the caller renames, so the archive never shows a file the disk lacks."""
        self._file.flush()
        os.fsync(self._file.fileno())
        return Downloaded(self.path, self.size, self._hasher.hexdigest(), final_url, content_type)

    def close(self) -> None:
        self._file.close()


def download(url: str, part_path: Path, policy: DownloadPolicy) -> Downloaded:
    """Fill `part_path` with the body at `url`, resuming what it already holds; see the module docstring.

    Raises DownloadError; on a permanent one the part file is deleted, otherwise it stays for the next
    try. Local I/O errors (OSError) propagate unchanged.
    """
    try:
        with closing(_Part(part_path)) as part, _client(policy) as client:
            try:
                return _retrying(client, url, part, policy)
            except DownloadError as exc:
                if exc.permanent:
                    part_path.unlink(missing_ok=True)  # while still locked, so no other download loses it
                raise
    except DownloadError as exc:
        exc.url = url_without_secrets(url)
        raise


def _retrying(client: httpx.Client, url: str, part: _Part, policy: DownloadPolicy) -> Downloaded:
    try:
        start = _checked(httpx.URL(url))
    except httpx.InvalidURL as exc:
        raise DownloadError("bad_url", f"invalid URL: {exc}") from None
    failure: DownloadError | None = None
    for attempt in range(max(1, policy.attempts)):
        if attempt:
            time.sleep(min(policy.backoff * 2 ** (attempt - 1), policy.backoff * 4))
        try:
            return _attempt(client, start, part, policy)
        except DownloadError as exc:
            if exc.permanent:
                raise
            failure = exc
    assert failure is not None
    raise failure


def _checked(url: httpx.URL) -> httpx.URL:
    if url.scheme not in ("http", "https") or not url.host:
        raise DownloadError("bad_url", f"only http(s) URLs with a host are fetched, not {url.scheme}:")
    return url


def _attempt(client: httpx.Client, start: httpx.URL, part: _Part, policy: DownloadPolicy) -> Downloaded:
    """One try: redirects are followed by hand, each hop's scheme checked here and address by the backend."""
    url = start
    for _ in range(policy.max_redirects + 1):
        headers = {"Range": f"bytes={part.size}-"} if part.size else {}
        if part.size and part.etag:
            headers["If-Range"] = part.etag
        try:
            response = client.send(client.build_request("GET", url, headers=headers), stream=True)
        except BlockedAddress as exc:
            raise DownloadError("blocked_address", str(exc)) from None
        except httpx.TransportError as exc:
            raise DownloadError("connection", f"cannot fetch from {url.host}: {exc!r}") from None
        with closing(response):
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                try:
                    return _receive(response, part, policy)
                except httpx.TransportError as exc:
                    message = f"body from {url.host} cut short at {part.size} bytes: {exc!r}"
                    raise DownloadError("incomplete", message) from None
        try:
            url = _checked(url.join(location))
        except httpx.InvalidURL as exc:
            raise DownloadError("bad_url", f"{url.host} redirected to an invalid URL: {exc}") from None
    raise DownloadError("too_many_redirects", f"over {policy.max_redirects} redirects from {start.host}")


def _receive(response: httpx.Response, part: _Part, policy: DownloadPolicy) -> Downloaded:
    status, host = response.status_code, response.url.host
    match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
    first, total = (None, None) if match is None else (match[1], match[2])
    size = int(total) if total and total.isdigit() else None
    if status == 416 and part.size and size == part.size:
        return part.finish(str(response.url), None)  # an earlier try got it all but did not get to say so
    if status in (403, 404, 410):
        raise DownloadError("not_found", f"{host} answered {status}", status)
    if status >= 500 or status in (408, 416, 429):
        if status == 416:
            part.reset()
        raise DownloadError("server_error", f"{host} answered {status}", status)
    if status not in (200, 206):
        reason = "client_error" if status >= 400 else "server_error"
        raise DownloadError(reason, f"{host} answered {status}", status)
    if status == 206 and (first is None or int(first) != part.size):
        part.reset()
        raise DownloadError("incomplete", f"{host} answered a range not asked for", status)
    if status == 200:
        part.reset()  # no Range asked, or the server ignored it (or the If-Range validator changed)
        length = response.headers.get("content-length", "")
        size = int(length) if length.isdigit() else None
    if size is not None and size > policy.max_bytes:
        raise DownloadError("too_large", f"{host} announces {size} bytes, over {policy.max_bytes}")
    etag = response.headers.get("etag")
    part.etag = etag if etag and not etag.startswith("W/") else None  # If-Range needs a strong validator
    for chunk in response.iter_raw():
        part.write(chunk)
        if part.size > policy.max_bytes:
            raise DownloadError("too_large", f"{host} sent more than {policy.max_bytes} bytes")
    if size is not None and part.size != size:
        raise DownloadError("incomplete", f"{host} sent {part.size} of {size} bytes")
    return part.finish(str(response.url), response.headers.get("content-type"))
