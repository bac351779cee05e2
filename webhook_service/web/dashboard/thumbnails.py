"""Thumbnails of a request's archived images, so the task page shows a picture of a few kilobytes
instead of sending the browser ten megabytes per image.

Made on the first view and kept in the archive beside the image (`<image key>.thumb.jpg`), so later
views read a small file. The image is the client's: it is decoded only when its pixel count is sane,
and anything Pillow cannot read gets no thumbnail (the page links to the file instead).
"""

from __future__ import annotations

import io
import logging
from typing import Any

from PIL import Image, ImageOps

from webhook_service.domain.errors import InputUnreadable
from webhook_service.domain.inputs import REFERENCE_KEY, read_input
from webhook_service.integrations.storage import Storage, StorageError

log = logging.getLogger(__name__)

SIDE = 320
MAX_PIXELS = 50_000_000  # a 10 MB image is rarely over 20 megapixels; a decompression bomb is


def thumbnail_key(ref: dict[str, Any]) -> str:
    return str(ref[REFERENCE_KEY]).rsplit(".", 1)[0] + ".thumb.jpg"


def thumbnail(storage: Storage, ref: dict[str, Any]) -> bytes | None:
    """A JPEG of at most SIDE pixels a side, or None when the image is gone or no picture."""
    key = thumbnail_key(ref)
    try:
        if storage.stat(key) is not None:
            return storage.read_bytes(key)
        made = _make(read_input(storage, ref))
    except (StorageError, InputUnreadable) as error:
        log.warning("no thumbnail of %s: %s", ref[REFERENCE_KEY], error)
        return None
    if made is not None:
        try:
            storage.put_bytes(key, made, "image/jpeg")
        except StorageError as error:  # shown all the same, made again next time
            log.warning("thumbnail of %s not kept: %s", ref[REFERENCE_KEY], error)
    return made


def _make(data: bytes) -> bytes | None:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > MAX_PIXELS:
                return None
            opened.draft("RGB", (SIDE, SIDE))  # JPEG decodes at a fraction of its size: much faster
            picture = ImageOps.exif_transpose(opened)
            picture.thumbnail((SIDE, SIDE))
            out = io.BytesIO()
            picture.convert("RGB").save(out, "JPEG", quality=80)
            return out.getvalue()
    except (OSError, ValueError, Image.DecompressionBombError):  # not an image Pillow reads, or broken
        return None
