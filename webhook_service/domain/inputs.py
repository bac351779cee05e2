"""A request's Base64 images live in the archive, not in Redis.

Kling takes images (`image`, `image_tail`, `static_mask`, `dynamic_masks[].mask`; a try-on's
`human_image` and `cloth_image`; multi-image to image's `subject_image_list[].subject_image`,
`scene_image` and `style_image`; multi-image to video's `image_list[].image`; a video effect's
`input.image` or `input.images[]`) as a URL or as raw
Base64 of up to 10 MB each, and a request may carry eight of them. Kept in Redis, one such request
costs its whole size for as long as the task is kept. So when a task is recorded, each Base64 value is
decoded and written to the archive beside the task's videos (domain/archive_layout.py), and the
request in Redis holds a reference in its place:

    "image": {"archived_input": "2026/11/21/<external_task_id>/inputs/image-3f2a9c1d8e7b6a50.png",
              "sha256": "<hex of the decoded bytes>", "size": <decoded bytes>,
              "content_type": "image/png" or null when the bytes are no image type we know}

Audio is kept the same way (lip-sync's `input.audio_file`, advanced lip-sync's
`face_choose[].sound_file`: raw Base64 of up to 5 MB each, typed by its first bytes as mp3, wav, m4a or
aac): in Redis it would cost what an image costs, for as long, and the archive is where an operator
looks for what a task was made from. Only image slots are shown as pictures (`image_slots`); every
slot, images and audio, is archived and restored (`input_slots`).

It is read back, and its sha256 checked, whenever the request goes upstream. URLs stay in the request
as they are: they are short. The bytes are the image itself (a file anyone can open), and the Base64
sent upstream is their standard encoding, which is what every encoder makes. Base64 may also end in a
character whose unused low bits are not zero and still decode to the same bytes: the reference then
keeps the last four characters as sent (`base64_tail`), so Kling receives exactly what the client sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from webhook_service.domain.archive_layout import task_folder
from webhook_service.domain.audio import sniff_audio
from webhook_service.domain.errors import InputsNotStored, InputUnreadable
from webhook_service.domain.tasks import Task
from webhook_service.integrations.storage import Storage, StorageError

log = logging.getLogger(__name__)

REFERENCE_KEY = "archived_input"
MANIFEST_NAME = "request.json"
# Every field of every task type that holds an image, top-level and in lists of objects: a type whose
# images are missing here would keep its Base64 in Redis and show it on the dashboard.
IMAGE_FIELDS = (
    "image",
    "image_tail",
    "static_mask",
    "human_image",
    "cloth_image",
    "scene_image",
    "style_image",
)
# list field -> the key of each of its items that holds an image
NESTED_IMAGE_FIELDS = {
    "dynamic_masks": "mask",
    "subject_image_list": "subject_image",
    "image_list": "image",  # multi-image to video's elements
    "contents": "url",  # the unified API's images (frames, refer_image, motion control's image); a video's
    # url is a URL, never Base64, so nothing of it is archived
}
# object field -> its key holding one image, and its key holding a list of images (video effects' input)
OBJECT_IMAGE_FIELDS = {"input": ("image", "images")}
# Audio: object field -> its key that holds audio, and list field -> the key of each item that does.
AUDIO_FIELDS = {"input": "audio_file"}
NESTED_AUDIO_FIELDS = {"face_choose": "sound_file"}
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"GIF87a", "image/gif", "gif"),
    (b"GIF89a", "image/gif", "gif"),
    (b"BM", "image/bmp", "bmp"),
)


@dataclass(frozen=True)
class Slot:
    """Where an image sits in a request: `path` as validation names it (`dynamic_masks[2].mask`)."""

    path: str
    holder: Any  # the dict (or, for a list of images, the list) holding it
    key: str | int

    @property
    def value(self) -> Any:
        return self.holder[self.key]

    @property
    def file_stem(self) -> str:
        return self.path.replace("[", "_").replace("].", "_").replace(".", "_").replace("]", "")


def image_slots(request: dict[str, Any]) -> Iterator[Slot]:
    """Every image field the request has, in a fixed order (the dashboard numbers them by it)."""
    for name in IMAGE_FIELDS:
        if name in request:
            yield Slot(name, request, name)
    for name, key in NESTED_IMAGE_FIELDS.items():
        items = request.get(name)
        if isinstance(items, list):
            for n, item in enumerate(items):
                if isinstance(item, dict) and key in item:
                    yield Slot(f"{name}[{n}].{key}", item, key)
    for name, (key, list_key) in OBJECT_IMAGE_FIELDS.items():
        holder = request.get(name)
        if isinstance(holder, dict):
            if key in holder:
                yield Slot(f"{name}.{key}", holder, key)
            if isinstance(holder.get(list_key), list):
                for n in range(len(holder[list_key])):
                    yield Slot(f"{name}.{list_key}[{n}]", holder[list_key], n)


def audio_slots(request: dict[str, Any]) -> Iterator[Slot]:
    """Every audio field the request has."""
    for name, key in AUDIO_FIELDS.items():
        holder = request.get(name)
        if isinstance(holder, dict) and key in holder:
            yield Slot(f"{name}.{key}", holder, key)
    for name, key in NESTED_AUDIO_FIELDS.items():
        items = request.get(name)
        if isinstance(items, list):
            for n, item in enumerate(items):
                if isinstance(item, dict) and key in item:
                    yield Slot(f"{name}[{n}].{key}", item, key)


def input_slots(request: dict[str, Any]) -> Iterator[Slot]:
    """Every field whose Base64 goes to the archive: the images, then the audio."""
    yield from image_slots(request)
    yield from audio_slots(request)


def is_base64(value: object) -> bool:
    """Validation's rule: a Base64 string never holds ':', any URL does."""
    return isinstance(value, str) and ":" not in value


def reference(value: object) -> dict[str, Any] | None:
    """The archived input a request's field refers to, or None for a URL (or a request stored before
    inputs left Redis, whose Base64 is still inline)."""
    return value if isinstance(value, dict) and REFERENCE_KEY in value else None


def archived_inputs(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's archived inputs, each with the field it came from: what metadata.json lists."""
    return [{"field": slot.path, **ref} for slot in input_slots(request) if (ref := reference(slot.value))]


def without_base64(request: dict[str, Any]) -> dict[str, Any]:
    """The request with any Base64 still inline (a task recorded before inputs left Redis) named by its
    length instead: it is nowhere else, but megabytes of it help no reader."""
    clean = _copy(request)
    for slot in input_slots(clean):
        if is_base64(slot.value):
            slot.holder[slot.key] = f"<base64, {len(slot.value)} characters>"
    return clean


def sniff(head: bytes) -> tuple[str, str] | None:
    """An image's content type and file extension from its first bytes; None for anything else."""
    for magic, mime, extension in _MAGIC:
        if head.startswith(magic):
            return mime, extension
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", "webp"
    return None


def store_inputs(storage: Storage, task: Task, request: dict[str, Any]) -> dict[str, Any]:
    """The request with each Base64 image (and audio) written to the archive and replaced by its reference.

    Raises InputsNotStored when the archive refuses a write: the caller records nothing then. Keys
    carry the content's digest, so a write never replaces another task's file, even one that claims
    the same external_task_id on the same day (it is refused as a duplicate after the write).
    """
    stored = _copy(request)
    inputs = f"{task_folder(task)}/inputs"
    for slot in input_slots(stored):
        value = slot.value
        if not is_base64(value):
            continue
        data = base64.b64decode(value, validate=True)
        sha256 = hashlib.sha256(data).hexdigest()
        kind = sniff(data[:16]) or sniff_audio(data[:16])
        content_type, extension = kind if kind else (None, "bin")
        key = f"{inputs}/{slot.file_stem}-{sha256[:16]}.{extension}"
        try:
            storage.put_bytes(key, data, content_type or "application/octet-stream")
        except StorageError as error:
            raise InputsNotStored(f"the archive did not take {slot.path}: {error}") from error
        ref: dict[str, Any] = {
            REFERENCE_KEY: key,
            "sha256": sha256,
            "size": len(data),
            "content_type": content_type,
        }
        if base64.b64encode(data).decode("ascii") != value:
            ref["base64_tail"] = value[-4:]
        slot.holder[slot.key] = ref
    return stored


def write_manifest(storage: Storage, task: Task, request: dict[str, Any]) -> None:
    """`inputs/request.json` in the folder of every recorded task: its request (URLs as sent, archived
    inputs by reference: a few kilobytes), its client's `callback_url`, tenant, type, model and creation
    time, and each archived input's field and sha256, from the moment the task exists.

    metadata.json says the same, but only once an output is archived. Without this file, the inputs of
    a task that failed, expired or was never sent would be files nobody can place once retention has
    removed the task from Redis, and a task Redis lost before its archive would come back without its
    client's callback_url, so its client would never hear of its video (domain/recovery.py reads it).
    Best effort: a task is not refused for the lack of it."""
    manifest = {
        "external_task_id": task.external_task_id,
        "tenant": task.tenant,
        "type": task.type,
        "model_name": task.model_name,
        "created_at": task.created_at,
        "callback_url": task.client_callback_url,
        "request": request,
        "inputs": archived_inputs(request),
    }
    try:
        storage.put_bytes(
            f"{task_folder(task)}/inputs/{MANIFEST_NAME}",
            json.dumps(manifest, indent=2).encode(),
            "application/json",
        )
    except StorageError as error:
        log.warning("the request of %s was not written to the archive: %s", task.external_task_id, error)


def with_inputs(storage: Storage, request: dict[str, Any]) -> dict[str, Any]:
    """The request as the client sent it: every reference replaced by the archived image's Base64.

    Raises InputUnreadable: not retryable when the file is gone or its bytes are not the ones recorded,
    retryable when the archive failed to answer.
    """
    resolved = _copy(request)
    for slot in input_slots(resolved):
        ref = reference(slot.value)
        if ref is not None:
            encoded = base64.b64encode(read_input(storage, ref, slot.path)).decode("ascii")
            tail = ref.get("base64_tail")
            slot.holder[slot.key] = encoded[: -len(tail)] + tail if tail else encoded
    return resolved


def read_input(storage: Storage, ref: dict[str, Any], path: str = "the input") -> bytes:
    """An archived input's bytes, checked against the sha256 its reference recorded (InputUnreadable)."""
    key = ref[REFERENCE_KEY]
    try:
        if storage.stat(key) is None:
            raise InputUnreadable(f"{path} ({key}) is missing from the archive", retryable=False)
        data = storage.read_bytes(key)
    except StorageError as error:
        raise InputUnreadable(f"the archive could not read {path} ({key}): {error}", retryable=True) from None
    if hashlib.sha256(data).hexdigest() != ref["sha256"]:
        raise InputUnreadable(f"{path} ({key}) in the archive is not the image recorded", retryable=False)
    return data


def _copy(request: dict[str, Any]) -> dict[str, Any]:
    """Deep enough for the slots to be replaced without touching the caller's request."""
    copied = dict(request)
    for name in AUDIO_FIELDS:
        if isinstance(copied.get(name), dict):
            copied[name] = dict(copied[name])
    for name in (*NESTED_IMAGE_FIELDS, *NESTED_AUDIO_FIELDS):
        if isinstance(copied.get(name), list):
            copied[name] = [dict(item) if isinstance(item, dict) else item for item in copied[name]]
    for name, (_, list_key) in OBJECT_IMAGE_FIELDS.items():
        if isinstance(copied.get(name), dict):
            copied[name] = dict(copied[name])
            if isinstance(copied[name].get(list_key), list):
                copied[name][list_key] = list(copied[name][list_key])
    return copied
