"""The image the simulator serves as every image task's result: a real PNG, made here in a few lines
(signature, IHDR, IDAT, IEND, each chunk with its CRC) so that an archive that checks what it stored
finds an image it can open, with nothing to ship beside the code."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def tiny_png(width: int = 4, height: int = 4, rgb: tuple[int, int, int] = (250, 180, 40)) -> bytes:
    """An opaque 8-bit RGB PNG of one colour, each row starting with filter type 0 (none)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


TINY_PNG = tiny_png()
