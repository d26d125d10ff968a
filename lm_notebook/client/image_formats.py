"""What kind of image some bytes are, and their size, read from the file's header (stdlib only).

LM Studio takes PNG, JPEG and WebP. Their headers are read by hand so that paths and bytes of those three work without
Pillow (an optional extra) — and so that the fake server can check the images it receives. Anything deeper (decoding,
downscaling, converting) is Pillow's job.

>>> sniff(open("chart.png", "rb").read())          # doctest: +SKIP
ImageHeader(mime='image/png', width=640, height=480)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MIME_TYPES = ("image/png", "image/jpeg", "image/webp")
_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, ...): they carry the size; C4, C8 and CC are not frames
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class ImageHeader:
    """An image's type and size in pixels, from its header."""

    mime: str
    width: int
    height: int


def sniff(data: bytes) -> ImageHeader | None:
    """The header of PNG, JPEG or WebP bytes; None for anything else (or a header too broken to read)."""
    try:
        if data.startswith(_PNG) and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return ImageHeader("image/png", width, height)
        if data.startswith(b"\xff\xd8\xff"):
            return _jpeg(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
    except (struct.error, IndexError):
        return None
    return None


def _jpeg(data: bytes) -> ImageHeader | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return ImageHeader("image/jpeg", width, height)
        i += 2 + length
    return None


def _webp(data: bytes) -> ImageHeader | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: the frame header after a 3-byte tag and the start code 9d 01 2a
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        return ImageHeader("image/webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":  # lossless: 14-bit width-1 and height-1 after the signature byte 2f
        if data[20] != 0x2F:
            return None
        bits = int.from_bytes(data[21:25], "little")
        return ImageHeader("image/webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1 and height-1
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageHeader("image/webp", width, height)
    return None
