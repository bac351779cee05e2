"""Archive storage: the same contract for a local directory and for S3 (moto's server on loopback)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import boto3
import httpx
import pytest

from tests.conftest import S3_SECRET as SECRET
from webhook_service.integrations.storage import (
    LocalStorage,
    S3Storage,
    Storage,
    StorageError,
    StoredObject,
    storage_from_url,
)

KEY = "2026/11/21/ext-id/video-1.mp4"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return storage_from_url(str(tmp_path / "archive"))
    bucket = request.getfixturevalue("bucket")
    return storage_from_url(
        f"s3://{bucket}/archive/v1",
        s3_endpoint_url=request.getfixturevalue("moto_url"),
        spool_dir=tmp_path / "spool",
    )


def test_commit_makes_the_staged_file_the_object(storage: Storage) -> None:
    data = b"\x00video bytes\xff" * 1000
    staging = storage.staging_path(KEY)
    staging.write_bytes(data)
    assert storage.stat(KEY) is None
    with pytest.raises(StorageError):
        storage.read_bytes(KEY)

    stored = storage.commit(staging, KEY, sha256=sha(data))

    assert stored == StoredObject(KEY, len(data), sha(data))
    assert storage.stat(KEY) == stored
    assert storage.read_bytes(KEY) == data
    assert not staging.exists()


def test_staging_path_is_stable_so_a_download_can_resume(storage: Storage) -> None:
    first = storage.staging_path(KEY)
    first.write_bytes(b"first half, ")
    resumed = storage.staging_path(KEY)
    assert resumed == first
    with resumed.open("ab") as f:
        f.write(b"second half")
    assert storage.staging_path("2026/11/21/ext-id/video-2.mp4") != first

    storage.commit(resumed, KEY, sha256=sha(b"first half, second half"))
    assert storage.read_bytes(KEY) == b"first half, second half"


def test_delete_staging_removes_a_leftover_and_tolerates_none(storage: Storage) -> None:
    staging = storage.staging_path(KEY)
    staging.write_bytes(b"partial")
    storage.delete_staging(KEY)
    assert not staging.exists()
    storage.delete_staging(KEY)
    assert storage.stat(KEY) is None


def test_put_bytes_writes_and_overwrites_small_objects(storage: Storage) -> None:
    key = "2026/11/21/ext-id/metadata.json"
    storage.put_bytes(key, b'{"v": 1}', "application/json")
    assert storage.read_bytes(key) == b'{"v": 1}'
    storage.put_bytes(key, b'{"v": 22}', "application/json")
    assert storage.read_bytes(key) == b'{"v": 22}'
    assert storage.stat(key) == StoredObject(key, 9, sha(b'{"v": 22}'))


@pytest.mark.parametrize("key", ["", "/abs/video.mp4", "a//b.mp4", "a/", "../x.mp4", "a/../b", "a/./b", ".x"])
def test_bad_keys_are_refused(storage: Storage, key: str) -> None:
    for call in (
        storage.staging_path,
        storage.stat,
        storage.read_bytes,
        storage.local_path,
        storage.presigned_url,
        storage.delete_staging,
        lambda k: storage.put_bytes(k, b"x", "text/plain"),
    ):
        with pytest.raises(ValueError, match="invalid storage key"):
            call(key)


def test_local_staging_is_hidden_beside_the_destination(tmp_path: Path) -> None:
    storage = storage_from_url(f"file://{tmp_path}/archive")
    staging = storage.staging_path(KEY)
    assert staging == tmp_path / "archive/2026/11/21/ext-id/.video-1.mp4.part"
    assert staging.parent.is_dir()
    assert storage.local_path(KEY) == tmp_path / "archive" / KEY
    assert storage.presigned_url(KEY) is None


def test_local_failed_commit_keeps_the_old_object_and_no_wrong_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the sidecar is renamed but before the file is: stat must not claim the new sha256."""
    storage = LocalStorage(tmp_path)
    old = storage.staging_path(KEY)
    old.write_bytes(b"old video")
    storage.commit(old, KEY, sha256=sha(b"old video"))
    new = storage.staging_path(KEY)
    new.write_bytes(b"new video!")

    real_replace = os.replace

    def replace(src: Path, dst: Path) -> None:
        if Path(src) == new:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(StorageError, match="No space left"):
        storage.commit(new, KEY, sha256=sha(b"new video!"))

    assert storage.read_bytes(KEY) == b"old video"
    assert storage.stat(KEY) == StoredObject(KEY, len(b"old video"), None)


def test_s3_staging_lives_in_the_spool_and_survives_a_restart(
    bucket: str, moto_url: str, tmp_path: Path
) -> None:
    url = f"s3://{bucket}/archive"
    before = storage_from_url(url, s3_endpoint_url=moto_url, spool_dir=tmp_path / "spool")
    after = storage_from_url(url, s3_endpoint_url=moto_url, spool_dir=tmp_path / "spool")
    staging = before.staging_path(KEY)
    assert staging.parent == tmp_path / "spool"
    assert staging.name.endswith("video-1.mp4.part")
    assert after.staging_path(KEY) == staging
    assert before.local_path(KEY) is None


def test_s3_objects_carry_the_prefix_metadata_and_content_type(
    bucket: str, moto_url: str, tmp_path: Path
) -> None:
    # A low threshold so the commit takes the multipart path (S3's minimum part is 5 MiB).
    storage = S3Storage(
        bucket, "/archive/v1/", endpoint_url=moto_url, spool_dir=tmp_path, multipart_threshold=5 * 1024 * 1024
    )
    data = os.urandom(8 * 1024 * 1024 + 123)  # parts of 8 MiB: two
    staging = storage.staging_path(KEY)
    staging.write_bytes(data)
    assert storage.commit(staging, KEY, sha256=sha(data)) == StoredObject(KEY, len(data), sha(data))

    head = boto3.client("s3", endpoint_url=moto_url).head_object(Bucket=bucket, Key=f"archive/v1/{KEY}")
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"] == {"sha256": sha(data)}
    assert head["ETag"].endswith('-2"')  # two parts: it was a multipart upload
    assert storage.read_bytes(KEY) == data


def test_s3_presigned_url_serves_the_bytes_and_ranges(bucket: str, moto_url: str, tmp_path: Path) -> None:
    storage = S3Storage(bucket, "archive", endpoint_url=moto_url, spool_dir=tmp_path)
    data = bytes(range(256)) * 40
    staging = storage.staging_path(KEY)
    staging.write_bytes(data)
    storage.commit(staging, KEY, sha256=sha(data))
    url = storage.presigned_url(KEY, expires_s=60)
    assert url is not None and url.startswith("http://127.0.0.1:")

    with httpx.Client(trust_env=False) as http:
        whole = http.get(url)
        part = http.get(url, headers={"Range": "bytes=100-199"})
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    assert part.status_code == 206 and part.content == data[100:200]


def test_s3_failures_are_storage_errors_without_credentials(
    bucket: str, moto_url: str, tmp_path: Path
) -> None:
    storage = S3Storage(bucket + "-missing", endpoint_url=moto_url, spool_dir=tmp_path)
    staging = storage.staging_path(KEY)
    staging.write_bytes(b"video")
    with pytest.raises(StorageError, match=f"s3://{bucket}-missing/{KEY}") as caught:
        storage.commit(staging, KEY, sha256=sha(b"video"))
    assert SECRET not in str(caught.value)
    assert staging.exists()  # kept for the retry
    with pytest.raises(StorageError):
        storage.put_bytes("metadata.json", b"{}", "application/json")


def test_s3_client_is_made_again_after_a_fork(
    bucket: str, moto_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = S3Storage(bucket, endpoint_url=moto_url, spool_dir=tmp_path)
    parent_client = storage.client
    assert storage.client is parent_client
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert storage.client is not parent_client


def test_storage_from_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    default = storage_from_url("")
    assert isinstance(default, LocalStorage) and default.root == tmp_path / "data/archive"
    relative = storage_from_url("videos")
    assert isinstance(relative, LocalStorage) and relative.root == tmp_path / "videos"
    absolute = storage_from_url("file:///srv/archive")
    assert isinstance(absolute, LocalStorage) and absolute.root == Path("/srv/archive")

    s3 = storage_from_url("s3://bucket/pre/fix/", s3_endpoint_url="http://127.0.0.1:9")
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == ("bucket", "pre/fix/", "http://127.0.0.1:9")
    assert s3.spool_dir == tmp_path / "data/spool"
    bare = storage_from_url("s3://bucket", spool_dir=tmp_path / "spool")
    assert isinstance(bare, S3Storage) and bare.prefix == "" and bare.spool_dir == tmp_path / "spool"

    for bad in ("ftp://host/archive", "s3://", "s3:///prefix", "file://otherhost/archive"):
        with pytest.raises(ValueError, match="ARCHIVE_URL"):
            storage_from_url(bad)
