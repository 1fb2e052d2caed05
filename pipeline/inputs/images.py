"""Image bytes -> RGB pixels: the one place colour modes, depth, size and pages are handled.

Every frame the model sees is HxWx3 uint8 RGB. Greyscale, palette, CMYK, YCbCr and LAB
become RGB through Pillow; alpha is dropped (as `Image.convert("RGB")` does). 16-bit samples
are scaled by the container's depth (v * 255 / 65535), never by the image's own maximum, so
a 12-bit sensor frame keeps its brightness and two frames of one sequence decode alike
(the PNG spec stores fewer significant bits scaled up to the full depth; Pillow does not
read `sBIT`). The EXIF orientation is applied so boxes match what a viewer shows.

Sizes: an image over `MAX_DECODE_PIXELS` is decoded reduced (JPEG: by Pillow's `draft`,
inside the DCT; 8-bit PNG: band by band, each reduced as it is decoded (`png_strips.py`), so
its full-size pixels are never held; others: decoded whole, then `Image.reduce`), so one
100-megapixel photo does not become gigabytes of floats; `ImageFrame.width/height` stay the image's own, and the worker maps
outputs back to them (`geometry.py`).

Pages: an animated GIF (or WebP/APNG) and a multi-page TIFF hold several frames;
`decode_frames` yields each, as frames 0..n-1 with `time` from the frame durations when the
format has them (GIF: seconds since the first frame), None otherwise (TIFF pages).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
from PIL import Image, ImageSequence, TiffImagePlugin, UnidentifiedImageError

from maskray.errors import first_line
from maskray.pipeline.inputs.errors import DecodeError
from maskray.pipeline.inputs.png_strips import reduced_png

MAX_DECODE_PIXELS = 25_000_000  # a 6000x4000 photo is decoded whole; a larger one reduced
# TIFF pages decode through libtiff: Pillow's own reader of uncompressed strips reads planar
# (separate colour planes) pages of 16-bit samples as garbage; libtiff reads them right.
TiffImagePlugin.READ_LIBTIFF = True
# The Pillow plugin for each container, by its first bytes: counting opens only that plugin,
# so no other plugin probes the stream with calls it may not support (IM's `readline`).
_FORMATS_BY_MAGIC = ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
                     (b"\x89PNG\r\n\x1a\n", "PNG"), (b"RIFF", "WEBP"))
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
_EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that turn the image by 90 degrees


@dataclass(frozen=True)
class ImageFrame:
    """One decoded frame: `rgb` (maybe reduced) and the frame's own upright size."""

    rgb: np.ndarray  # (h, w, 3) uint8, h <= height and w <= width
    width: int
    height: int
    time: Optional[float] = None


def decode_image(data: bytes) -> np.ndarray:
    """Decode image bytes to an RGB array of shape (H, W, 3), dtype uint8: the first frame, full size.

    Raises DecodeError with a short message for empty, corrupt, truncated or non-image data.
    """
    for frame in decode_frames(data, max_pixels=None, first_only=True):
        return frame.rgb
    raise DecodeError("image has no frames")


def decode_frames(data: bytes, max_pixels: Optional[int] = MAX_DECODE_PIXELS,
                  first_only: bool = False) -> Iterator[ImageFrame]:
    """Every frame of an image (one for most files), reduced to at most `max_pixels`.

    Frames decoded before a broken one are yielded, then DecodeError is raised.
    """
    if not data:
        raise DecodeError("empty file (0 bytes)")
    with _readable(), _opened(io.BytesIO(data), data[:16]) as image:
        elapsed_ms: Optional[float] = 0.0 if _has_durations(image) else None
        for page in ImageSequence.Iterator(image):
            yield _decode_page(page, max_pixels, None if elapsed_ms is None else elapsed_ms / 1000.0, data)
            if first_only:
                return
            if elapsed_ms is not None:
                elapsed_ms += float(page.info.get("duration") or 0)


def count_frames(stream, head: bytes = b"") -> int:
    """How many frames an image file holds (reads headers only for TIFF; GIF is scanned).

    `stream`: a seekable binary file; `head`, its first bytes, picks the one Pillow plugin
    to open it with (all are tried when they name none). DecodeError when it cannot be told.
    """
    with _readable(), _opened(stream, head) as image:
        count = getattr(image, "n_frames", 1)
        if not isinstance(count, int) or count < 1:
            raise DecodeError(f"cannot tell how many frames the image holds ({count!r})")
        return count


def _opened(stream, head: bytes = b"") -> Image.Image:
    formats = [name for magic, name in _FORMATS_BY_MAGIC if head.startswith(magic)][:1] or None
    with warnings.catch_warnings():
        # A very large image is the user's to process; Pillow's bomb *error* still applies.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data": the pixels may still read
        try:
            return Image.open(stream, formats=formats)
        except UnidentifiedImageError:
            if head.startswith(_TIFF_MAGIC):
                raise _tiff_problem(stream) from None
            raise


def _tiff_problem(stream) -> DecodeError:
    """Why a file with a TIFF's magic does not open: a layout Pillow has no mode for, or damage."""
    try:
        stream.seek(0)
        TiffImagePlugin.TiffImageFile(stream).close()
    except SyntaxError as error:
        if "unknown pixel mode" in str(error) or "samples per pixel" in str(error):
            return DecodeError("unsupported TIFF layout (its samples have no RGB reading here):"
                               " save it as 8-bit or 16-bit RGB or greyscale")
        return DecodeError(f"corrupt or truncated image: {_short(error)}")
    except Exception as error:  # noqa: BLE001 - whatever the probe meets is the file's damage
        return DecodeError(f"corrupt or truncated image: {_short(error)}")
    return DecodeError("not a readable image (unrecognised format)")


class _readable:
    """Turns Pillow's failures into one-line DecodeErrors."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is None or isinstance(error, (DecodeError, GeneratorExit)):
            return False
        if isinstance(error, UnidentifiedImageError):
            raise DecodeError("not a readable image (unrecognised format)") from None
        if isinstance(error, Image.DecompressionBombError):
            raise DecodeError(f"image too large: {error}") from None
        if isinstance(error, (OSError, ValueError, SyntaxError, EOFError)):
            raise DecodeError(f"corrupt or truncated image: {_short(error)}") from None
        return False


def _decode_page(page: Image.Image, max_pixels: Optional[int], time: Optional[float],
                 data: bytes = b"") -> ImageFrame:
    orientation = _orientation(page)
    width, height = page.size
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    factor = _reduction(page.size, max_pixels)
    rgb = None
    if factor > 1 and page.format == "PNG" and getattr(page, "n_frames", 1) == 1:
        # Decoded and reduced band by band: the full-size pixels are never held at once.
        rgb = reduced_png(data, factor, _to_rgb)
    if rgb is None:
        if factor > 1 and page.format == "JPEG":
            # JPEG decodes at 1/2, 1/4 or 1/8 scale for little more than the cost of the small image.
            page.draft("RGB", (math.ceil(page.size[0] / factor), math.ceil(page.size[1] / factor)))
        page.load()
        rgb = _to_rgb(page)
    factor = _reduction(rgb.size, max_pixels)
    if factor > 1:
        rgb = rgb.reduce(factor)
    rgb = _upright(rgb, orientation)
    pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise DecodeError(f"unsupported image layout {pixels.shape}")
    return ImageFrame(pixels, width, height, time)


def _reduction(size: tuple[int, int], max_pixels: Optional[int]) -> int:
    """The whole-number factor that brings `size` within `max_pixels` (1: keep it)."""
    if not max_pixels or size[0] * size[1] <= max_pixels:
        return 1
    return math.ceil(math.sqrt(size[0] * size[1] / max_pixels))


def _orientation(image: Image.Image) -> int:
    try:
        if image.format == "PNG":
            # Pillow's PNG `getexif` decodes the whole image to look for an eXIf chunk after
            # the pixels; one before them (where writers put it) is already in `info`.
            exif = Image.Exif()
            exif.load(image.info.get("exif") or b"")
            return int(exif.get(_EXIF_ORIENTATION, 1) or 1)
        return int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - malformed EXIF must not lose a readable image
        return 1


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    """Apply the EXIF orientation (read before any reduction); a broken tag is ignored."""
    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}.get(orientation)
    return image.transpose(method) if method is not None else image


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit samples (Pillow opens 16-bit PNGs as I;16 or I): scaled by the depth.
        pixels = np.asarray(image, dtype=np.float64)
        grey = np.clip(np.rint(pixels * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        # Floating-point samples are taken as 0..1 intensities (as TIFF writers use them).
        pixels = np.nan_to_num(np.asarray(image, dtype=np.float64))
        grey = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return image if mode == "RGB" else image.convert("RGB")


def _has_durations(image: Image.Image) -> bool:
    """Whether frame times come from the file (animated GIF/WebP/APNG), not pages (TIFF)."""
    return getattr(image, "n_frames", 1) > 1 and image.format in ("GIF", "WEBP", "PNG")


def _short(error: BaseException) -> str:
    return first_line(error, limit=200)
