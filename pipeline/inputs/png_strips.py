"""A large PNG decoded a band of rows at a time and reduced as it goes, so its full-size
pixels never sit in memory at once (a 13000x13000 PNG is 676 MB as Pillow holds it).

PNG rows are filtered against the row above, so a band cannot be decoded alone. Each band
is rewrapped as a small PNG of its own whose first row is the row above the band stored
unfiltered (filter type 0): Pillow then decodes the band exactly as it decodes the whole
image. That row above is the previous band's last row as decoded, which for 8-bit samples
is byte for byte the row's raw samples; so this path takes 8-bit, non-interlaced PNGs
(others return None and are decoded whole). Bands are a multiple of `factor` rows tall, so
`Image.reduce` over the bands gives exactly what it gives over the whole image.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from typing import Callable, Optional

from PIL import Image

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
BAND_BYTES = 8 << 20  # about this much raw sample data per band


def reduced_png(data: bytes, factor: int, to_rgb: Callable[[Image.Image], Image.Image]) -> Optional[Image.Image]:
    """The PNG in `data` as RGB reduced by `factor` (`Image.reduce`'s result), decoded band
    by band; None when its layout is not one this path takes (see the module's note)."""
    chunks = _chunks(data)
    if chunks is None:
        return None
    header, palette, compressed = chunks
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or interlace or colour not in _CHANNELS or width == 0 or height == 0:
        return None
    stride = width * _CHANNELS[colour]
    rows_per_band = factor * max(1, BAND_BYTES // (stride * factor))
    target = Image.new("RGB", (math.ceil(width / factor), math.ceil(height / factor)))
    previous: Optional[bytes] = None  # the raw samples of the row above the band
    for top, filtered in _bands(compressed, stride, height, rows_per_band):
        rows = len(filtered) // (stride + 1)
        band = _decode_band(header, palette, filtered, previous, width, rows)
        previous = band.crop((0, rows - 1, width, rows)).tobytes()
        target.paste(to_rgb(band).reduce(factor), (0, top // factor))
        del band
    return target


def _chunks(data: bytes):
    """(IHDR body, the PLTE/tRNS chunks as bytes, the IDAT bodies) or None when not a PNG."""
    if not data.startswith(_SIGNATURE):
        return None
    header, palette, compressed = None, [], []
    view, position = memoryview(data), len(_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = view[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = bytes(body)
        elif kind in (b"PLTE", b"tRNS"):
            palette.append(_chunk(kind, bytes(body)))
        elif kind == b"IDAT":
            compressed.append(body)
        elif kind == b"IEND":
            break
        position += 12 + length
    if header is None or len(header) != 13 or not compressed:
        return None
    return header, b"".join(palette), compressed


def _bands(compressed, stride: int, height: int, rows_per_band: int):
    """(first row, the filtered rows' bytes) per band, inflating only what a band needs."""
    inflater = zlib.decompressobj()
    band_bytes = (stride + 1) * rows_per_band
    pending = bytearray()
    top = 0
    for body in compressed:
        try:
            pending += inflater.decompress(body)
        except zlib.error as error:  # as Pillow reports a broken stream: an OSError
            raise OSError(f"broken image data: {error}") from None
        while len(pending) >= band_bytes and top < height:
            rows = min(rows_per_band, height - top)
            size = (stride + 1) * rows
            yield top, bytes(pending[:size])
            del pending[:size]
            top += rows
    pending += inflater.flush()
    while top < height:
        rows = min(rows_per_band, height - top)
        size = (stride + 1) * rows
        if len(pending) < size:
            raise OSError(f"image file is truncated (row {top + len(pending) // (stride + 1)} of {height})")
        yield top, bytes(pending[:size])
        del pending[:size]
        top += rows


def _decode_band(header: bytes, palette: bytes, filtered: bytes, previous: Optional[bytes],
                 width: int, rows: int) -> Image.Image:
    """A band's pixels in the PNG's own mode (its palette and transparency kept)."""
    lead = b"\x00" + previous if previous is not None else b""
    band_header = struct.pack(">II", width, rows + (1 if lead else 0)) + header[8:]
    png = (_SIGNATURE + _chunk(b"IHDR", band_header) + palette
           + _chunk(b"IDAT", zlib.compress(lead + filtered, 0)) + _chunk(b"IEND", b""))
    image = Image.open(io.BytesIO(png), formats=["PNG"])
    image.load()
    return image.crop((0, 1, width, rows + 1)) if lead else image


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
