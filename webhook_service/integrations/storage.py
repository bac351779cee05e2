"""Archive storage for finished videos and their metadata: a local directory or an S3 bucket, by ARCHIVE_URL.

Writers stage bytes in a local file (a download can resume into it after a crash), then `commit`, so an
object is complete at its key or absent. Local: the staging file is a hidden `.<name>.part` beside the
destination and commit is an atomic rename; the sha256 sits in a hidden sidecar `.<name>.sha256`, written
just before that rename and tied to the file's identity (inode, size, mtime), so `stat` never hashes and a
crash between the two renames leaves the checksum unknown, never wrong. S3: staging files live in a local
spool directory and the sha256 is object metadata set by the upload itself.

Keys are relative POSIX paths (`2026/11/21/ext-id/video-1.mp4`); parts starting with "." are refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

DEFAULT_ARCHIVE_URL = "./data/archive"
DEFAULT_SPOOL_DIR = Path("data/spool")
MULTIPART_THRESHOLD = 64 * 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str | None  # from the object's metadata; None when it was not written by this module


class StorageError(Exception):
    """A backend failure, with a message naming the operation and key (never credentials)."""


class Storage(Protocol):
    def staging_path(self, key: str) -> Path:
        """Where to write the bytes before `commit`; the same path every call, so a write can resume."""

    def commit(
        self, staging: Path, key: str, *, sha256: str, content_type: str = "video/mp4"
    ) -> StoredObject:
        """Make the staged file the object at `key`, all or nothing; the staging file is gone afterwards."""

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        """Write a small object (metadata.json) atomically."""

    def stat(self, key: str) -> StoredObject | None:
        """The object's size and recorded sha256 (never computed here), or None when it is absent."""

    def local_path(self, key: str) -> Path | None:
        """The object's file for serving with Range (local), or None (S3)."""

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        """A time-limited GET URL (S3), or None (local)."""

    def read_bytes(self, key: str) -> bytes:
        """A small object's bytes; StorageError when it is absent."""

    def delete_staging(self, key: str) -> None:
        """Remove a leftover staging file for `key`, if any."""

    def remove_days_before(self, cutoff: float) -> int:
        """Remove the archive's day folders (`YYYY/MM/DD`) of days that ended before `cutoff` (epoch s);
        returns how many. Optional retention: by default the archive keeps everything."""


def check_key(key: str) -> str:
    """Refuse keys that could escape the root or collide with staging and sidecar files."""
    segments = key.split("/")
    if not key or key.startswith("/") or any(not s or s.startswith(".") or "\0" in s for s in segments):
        raise ValueError(
            f"invalid storage key {key!r}: need a relative POSIX path, no part empty or starting with '.'"
        )
    return key


def _identity(st: os.stat_result) -> list[int]:
    """What a rename keeps and a rewrite changes: ties a sidecar to one version of its file."""
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _wrapped(what: str) -> Iterator[None]:
    """Turn OS and boto failures into StorageError, so callers catch one type."""
    try:
        yield
    except (OSError, BotoCoreError, ClientError, Boto3Error) as exc:
        raise StorageError(f"{what} failed: {exc}") from exc


def _with_parent(path: Path) -> Path:
    """`path`, once its folder exists (a staging file is written next)."""
    with _wrapped(f"create {path.parent}"):
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.absolute()  # fixed now, so a later chdir changes nothing

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _staging(self, key: str) -> Path:
        path = self._path(key)
        return path.with_name(f".{path.name}.part")

    def _sidecar(self, path: Path) -> Path:
        return path.with_name(f".{path.name}.sha256")

    def staging_path(self, key: str) -> Path:
        return _with_parent(self._staging(key))

    def commit(
        self, staging: Path, key: str, *, sha256: str, content_type: str = "video/mp4"
    ) -> StoredObject:
        path = self._path(key)
        with _wrapped(f"commit {path}"):
            with open(staging, "rb") as f:
                os.fsync(f.fileno())
            st = os.stat(staging)
            record = {"sha256": sha256, "file": _identity(st)}
            sidecar = self._sidecar(path)
            sidecar_part = sidecar.with_name(sidecar.name + ".part")
            with open(sidecar_part, "w") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(sidecar_part, sidecar)
            os.replace(staging, path)
            _fsync_dir(path.parent)
        return StoredObject(key, st.st_size, sha256)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        staging = self.staging_path(key)
        with _wrapped(f"write {staging}"):
            staging.write_bytes(data)
        self.commit(staging, key, sha256=hashlib.sha256(data).hexdigest(), content_type=content_type)

    def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        with _wrapped(f"stat {path}"):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return None
            try:
                record = json.loads(self._sidecar(path).read_text())
            except (FileNotFoundError, ValueError):
                record = {}
        same_file = record.get("file") == _identity(st)
        return StoredObject(key, st.st_size, record["sha256"] if same_file else None)

    def local_path(self, key: str) -> Path | None:
        """The object's file, whether or not it exists yet (check `stat`)."""
        return self._path(key)

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        check_key(key)
        return None

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        with _wrapped(f"read {path}"):
            return path.read_bytes()

    def delete_staging(self, key: str) -> None:
        self._staging(key).unlink(missing_ok=True)

    def remove_days_before(self, cutoff: float) -> int:
        """Walks the year, month and day folders only (a few hundred a year), never the files."""
        removed = 0
        limit = datetime.fromtimestamp(cutoff, UTC).date()
        for day in sorted(self.root.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]")):
            try:
                date = datetime.strptime("/".join(day.parts[-3:]), "%Y/%m/%d").date()
            except ValueError:
                continue  # not a day folder of ours
            if date < limit:
                with _wrapped(f"remove {day}"):
                    shutil.rmtree(day)
                removed += 1
        return removed


class S3Storage:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        spool_dir: Path = DEFAULT_SPOOL_DIR,
        multipart_threshold: int = MULTIPART_THRESHOLD,
    ) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.spool_dir = spool_dir.absolute()
        self.multipart_threshold = multipart_threshold
        self._client: Any = None
        self._client_pid: int | None = None

    @property
    def client(self) -> Any:
        """One boto3 client per process: clients don't survive a fork (a horse, with WORKER_FORK_QUEUES)."""
        if self._client is None or self._client_pid != os.getpid():
            # Path-style addressing: MinIO and local endpoints don't serve bucket subdomains.
            style = "path" if self.endpoint_url else "auto"
            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                config=Config(signature_version="s3v4", s3={"addressing_style": style}),
            )
            self._client_pid = os.getpid()
        return self._client

    def _object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._object_key(key)}"

    def _staging(self, key: str) -> Path:
        digest = hashlib.sha256(self._where(key).encode()).hexdigest()[:32]
        return self.spool_dir / f"{digest}-{key.rsplit('/', 1)[-1]}.part"

    def staging_path(self, key: str) -> Path:
        return _with_parent(self._staging(key))

    def commit(
        self, staging: Path, key: str, *, sha256: str, content_type: str = "video/mp4"
    ) -> StoredObject:
        config = TransferConfig(multipart_threshold=self.multipart_threshold)
        extra = {"ContentType": content_type, "Metadata": {"sha256": sha256}}
        with _wrapped(f"upload to {self._where(key)}"):
            size = staging.stat().st_size
            # A multipart upload becomes visible only when completed, and s3transfer aborts it on failure.
            self.client.upload_file(
                str(staging), self.bucket, self._object_key(key), ExtraArgs=extra, Config=config
            )
            staging.unlink(missing_ok=True)
        return StoredObject(key, size, sha256)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        with _wrapped(f"put {self._where(key)}"):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._object_key(key),
                Body=data,
                ContentType=content_type,
                Metadata={"sha256": hashlib.sha256(data).hexdigest()},
            )

    def stat(self, key: str) -> StoredObject | None:
        with _wrapped(f"stat {self._where(key)}"):
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=self._object_key(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
        return StoredObject(key, head["ContentLength"], head.get("Metadata", {}).get("sha256"))

    def local_path(self, key: str) -> Path | None:
        check_key(key)
        return None

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        with _wrapped(f"presign {self._where(key)}"):
            url: str = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._object_key(key)},
                ExpiresIn=expires_s,
            )
            return url

    def read_bytes(self, key: str) -> bytes:
        with _wrapped(f"read {self._where(key)}"):
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._object_key(key))["Body"].read()
            return body

    def delete_staging(self, key: str) -> None:
        self._staging(key).unlink(missing_ok=True)

    def remove_days_before(self, cutoff: float) -> int:
        """Nothing: a bucket expires its objects itself, by a lifecycle rule (docs/operations.md), which
        costs no listing and no request per object."""
        return 0


def storage_from_url(
    archive_url: str, *, s3_endpoint_url: str | None = None, spool_dir: Path | None = None
) -> Storage:
    """Build the storage ARCHIVE_URL names: `s3://bucket[/prefix]`, `file:///abs/path` or a plain path."""
    url = archive_url or DEFAULT_ARCHIVE_URL
    if "://" not in url:
        return LocalStorage(Path(url))
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path:
        return LocalStorage(Path(unquote(parts.path)))
    if parts.scheme == "s3" and parts.netloc:
        return S3Storage(
            parts.netloc,
            unquote(parts.path),
            endpoint_url=s3_endpoint_url or None,
            spool_dir=spool_dir or DEFAULT_SPOOL_DIR,
        )
    raise ValueError(
        f"ARCHIVE_URL {archive_url!r} is not s3://bucket/prefix, file:///path or a directory path"
    )
