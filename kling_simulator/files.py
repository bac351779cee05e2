"""Extra result files with the faults a real CDN shows, for testing the downloader.

A file is registered by name and served at `/files/extra/<name>`: either given bytes or `size` bytes of
deterministic pseudo-random content generated block by block (so a 1 GiB file costs no memory). Each
request consumes the next queued fault; once the queue is empty the file is served normally, with
`Range`/`If-Range` support and a stable ETag unless `ranges=False`.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, jsonify, request

FAULTS = ("truncate", "drop", "slow", "chunked", "500", "503", "404", "410", "403")
BLOCK = 1 << 20
# How long a "slow" response stalls mid-body: longer than the read timeouts tests give the downloader.
SLOW_PAUSE = 1.0
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def generated_block(name: str, index: int) -> bytes:
    """Block `index` of a `size=` file; seeded per block so any offset can be served without the rest."""
    return random.Random(f"{name}:{index}").randbytes(BLOCK)


@dataclass
class ExtraFile:
    name: str
    size: int
    data: bytes | None
    ranges: bool
    redirect_to: str | None
    faults: deque[str] = field(default_factory=deque)
    digest: str | None = None

    @property
    def etag(self) -> str:
        """Stable per content: generated content depends only on the name, so name and size identify it."""
        return f'"{hashlib.sha256(self.data or f"{self.name}:{self.size}".encode()).hexdigest()[:20]}"'

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes [start, end) in pieces of at most BLOCK."""
        offset = start
        while offset < end:
            base = offset - offset % BLOCK
            stop = min(end, base + BLOCK)
            if self.data is not None:
                yield self.data[offset:stop]
            else:
                yield generated_block(self.name, offset // BLOCK)[offset - base : stop - base]
            offset = stop

    def sha256(self) -> str:
        if self.digest is None:
            hasher = hashlib.sha256()
            for chunk in self.chunks(0, self.size):
                hasher.update(chunk)
            self.digest = hasher.hexdigest()
        return self.digest


class FileStore:
    """The registered files and a log of every request for them; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, ExtraFile] = {}
        self._requests: list[dict[str, Any]] = []

    def add(
        self,
        name: str,
        *,
        size: int | None = None,
        data: bytes | None = None,
        faults: list[str] | tuple[str, ...] = (),
        ranges: bool = True,
        redirect_to: str | None = None,
    ) -> None:
        if not name or "/" in name:
            raise ValueError("file name must be non-empty and without '/'")
        if size is not None and data is not None:
            raise ValueError("give size or data, not both")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise ValueError("size must be a non-negative integer")
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown faults {unknown}; known: {FAULTS}")
        body_size = len(data) if data is not None else size or 0
        extra = ExtraFile(name, body_size, data, ranges, redirect_to, deque(faults))
        with self._lock:
            self._files[name] = extra

    def take(self, name: str) -> tuple[ExtraFile | None, str | None]:
        """The file and the fault this request gets (consumed from the queue)."""
        with self._lock:
            extra = self._files.get(name)
            return extra, (extra.faults.popleft() if extra and extra.faults else None)

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(entry)

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._requests]

    def expected_sha256(self, name: str) -> str:
        """The digest of the file's full body, computed by streaming it once (then cached)."""
        with self._lock:
            extra = self._files[name]
        return extra.sha256()

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
            self._requests.clear()


def _byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """[start, end) for a single-range header, None to serve the whole body, "unsatisfiable" for 416."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return None  # absent, multi-range or malformed: a server may ignore it
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), min(size, int(last) + 1) if last else size
    return (start, end) if start < end else "unsatisfiable"


def _body(extra: ExtraFile, start: int, end: int, fault: str | None) -> Iterator[bytes]:
    length = end - start
    if fault == "truncate":
        # The headers promised `length`; ending early makes werkzeug close the connection (it always
        # sends `Connection: close`), so the client sees a short body.
        yield from extra.chunks(start, start + length // 2)
    elif fault == "drop":
        # Sent chunked (no Content-Length): raising a connection error makes werkzeug drop the connection
        # without the final chunk, so the client sees an unterminated body.
        yield from extra.chunks(start, start + max(1, length // 8))
        raise ConnectionAbortedError("simulated dropped connection")
    elif fault == "slow":
        middle = start + length // 4
        yield from extra.chunks(start, middle)
        time.sleep(SLOW_PAUSE)
        yield from extra.chunks(middle, end)
    else:
        yield from extra.chunks(start, end)


def _serve(store: FileStore, name: str) -> Response:
    """Answer one request for an extra file, applying its next fault, and log it."""
    extra, fault = store.take(name)
    range_header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    response = _respond(extra, fault, range_header, if_range)
    store.record(
        {
            "name": name,
            "range": range_header,
            "if_range": if_range,
            "status": response.status_code,
            "fault": fault,
            "time": time.time(),
        }
    )
    return response


def _respond(
    extra: ExtraFile | None, fault: str | None, range_header: str | None, if_range: str | None
) -> Response:
    if extra is None:
        return Response("no such file\n", 404, mimetype="text/plain")
    if fault is not None and fault.isdigit():
        return Response(f"simulated {fault}\n", int(fault), mimetype="text/plain")
    if extra.redirect_to is not None:
        return Response("", 302, headers={"Location": extra.redirect_to})
    headers = {"Content-Type": "video/mp4"}
    wanted = None
    if extra.ranges:
        headers |= {"Accept-Ranges": "bytes", "ETag": extra.etag}
        if if_range is None or if_range == extra.etag:
            wanted = _byte_range(range_header, extra.size)
    if wanted == "unsatisfiable":
        return Response("", 416, headers={"Content-Range": f"bytes */{extra.size}"})
    status, (start, end) = (206, wanted) if isinstance(wanted, tuple) else (200, (0, extra.size))
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{extra.size}"
    if fault not in ("drop", "chunked"):  # without a length werkzeug sends the body chunked
        headers["Content-Length"] = str(end - start)
    return Response(_body(extra, start, end, fault), status, headers=headers, direct_passthrough=True)


def files_blueprint(store: FileStore) -> Blueprint:
    """The file route, plus unauthenticated control endpoints mirroring the Python API."""
    bp = Blueprint("sim_files", __name__)

    @bp.get("/files/extra/<name>")
    def extra_file(name: str) -> Response:
        return _serve(store, name)

    @bp.put("/_sim/files/<name>")
    def put_file(name: str) -> tuple[Response, int]:
        """JSON body: {size, faults, ranges, redirect_to} (bytes content is Python-API only)."""
        spec = request.get_json(silent=True)
        if not isinstance(spec, dict) or set(spec) - {"size", "faults", "ranges", "redirect_to"}:
            return jsonify({"error": "body must be an object with size, faults, ranges, redirect_to"}), 400
        try:
            store.add(name, **spec)
        except (TypeError, ValueError) as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify({"ok": True}), 200

    @bp.get("/_sim/file-requests")
    def get_file_requests() -> Response:
        return jsonify(store.requests())

    return bp
