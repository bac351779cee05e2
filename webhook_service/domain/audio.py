"""Audio in a create body (lip-sync's `input.audio_file`, advanced lip-sync's `face_choose[].sound_file`):
what Kling takes, and how its kind is told from its first bytes.

Kling takes .mp3, .wav, .m4a and .aac audio of at most 5 MB, as raw Base64 (or, where the field allows
one, an http(s) URL, never fetched here). Base64 is decoded when the request is checked: one over
5 MB, or whose bytes are none of those four kinds, is refused now rather than by Kling later. A URL's
file is Kling's to judge (a signed URL often has no extension to go by). The duration (2 to 60 s) is
left to Kling too: measuring it means parsing every container.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from pydantic import AfterValidator, StringConstraints
from pydantic_core import PydanticCustomError

from webhook_service.domain.field_types import documented, is_http_url

MAX_AUDIO_BYTES = 5 * 1024 * 1024
FORMATS = ".mp3, .wav, .m4a or .aac"


def sniff_audio(head: bytes) -> tuple[str, str] | None:
    """An audio file's content type and extension from its first 12 bytes; None for anything else."""
    if head.startswith(b"ID3"):  # an MP3 with its tags first
        return "audio/mpeg", "mp3"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav", "wav"
    if head[4:8] == b"ftyp":  # the MP4 family: .m4a
        return "audio/mp4", "m4a"
    if len(head) >= 2 and head[0] == 0xFF:
        if head[1] & 0xF6 == 0xF0:  # ADTS: 12 sync bits, then layer 00
            return "audio/aac", "aac"
        if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:  # an MPEG audio frame: 11 sync bits, a layer
            return "audio/mpeg", "mp3"
    return None


def _decoded_size(value: str) -> int:
    if value[:5].lower() == "data:":
        raise PydanticCustomError("format", "must be raw Base64: strip the 'data:...;base64,' prefix")
    try:
        data = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise PydanticCustomError("format", "is not valid Base64") from None
    if len(data) > MAX_AUDIO_BYTES:
        raise PydanticCustomError("too_large", "decodes to more than 5 MB, Kling's limit for audio")
    if sniff_audio(data[:12]) is None:
        raise PydanticCustomError(
            "format", f"is not {FORMATS} audio (Kling's formats): its first bytes are none"
        )
    return len(data)


def _check_base64(value: str) -> str:
    _decoded_size(value)
    return value


def _check_url_or_base64(value: str) -> str:
    """As for images: Base64 never holds ':', any URL does."""
    if ":" in value and value[:5].lower() != "data:":
        if not is_http_url(value):
            raise PydanticCustomError("format", "must be an http or https URL with a host, or raw Base64")
        return value
    return _check_base64(value)


_BASE64_PATTERN = r"^[A-Za-z0-9+/]+={0,2}$"
_URL_PATTERN = r"^[hH][tT][tT][pP][sS]?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][!-~]*)?$(?!\n)"
AudioBase64 = Annotated[
    str,
    StringConstraints(strict=True, min_length=1),
    AfterValidator(_check_base64),
    documented(description=f"Raw Base64 (no data: prefix) of {FORMATS} audio, at most 5 MB."),
]
Audio = Annotated[
    str,
    StringConstraints(strict=True, min_length=1),
    AfterValidator(_check_url_or_base64),
    documented(
        description=f"An http(s) URL, or raw Base64 (no data: prefix) of {FORMATS} audio, at most 5 MB.",
        anyOf=[{"pattern": _URL_PATTERN}, {"pattern": _BASE64_PATTERN}],
    ),
]
