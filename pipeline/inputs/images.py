"""Image bytes -> RGB pixels: the one place colour modes are converted.

Every frame the model sees is HxWx3 uint8 RGB. Greyscale, palette, CMYK, YCbCr and LAB
become RGB through Pillow; alpha is dropped (as `Image.convert("RGB")` does), 16- and
32-bit greyscale is scaled down to 8 bits rather than clipped; the EXIF orientation is
applied so boxes match what a viewer shows; an animated GIF gives its first frame.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from maskray.pipeline.inputs.errors import DecodeError


def decode_image(data: bytes) -> np.ndarray:
    """Decode image bytes to an RGB array of shape (H, W, 3), dtype uint8.

    Raises DecodeError with a short message for empty, corrupt, truncated or non-image data.
    """
    if not data:
        raise DecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # A very large image is the user's to process; Pillow's bomb *error* still applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.seek(0)  # animated GIF / multi-page TIFF: the first frame
                image.load()
                image = _upright(image)
                return _to_rgb(image)
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError("not a readable image (unrecognised format)") from None
    except Image.DecompressionBombError as error:
        raise DecodeError(f"image too large: {error}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise DecodeError(f"corrupt or truncated image: {_short(error)}") from None


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a broken EXIF block is ignored, not fatal."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - malformed EXIF must not lose a readable image
        return image


def _to_rgb(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        # 16-bit data (or wider) is scaled to 8 bits; data already within 0..255 is kept.
        top = 65535.0 if pixels.max(initial=0) > 255 else 255.0
        grey = np.clip(np.rint(pixels * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode != "RGB":
        image = image.convert("RGB")
    rgb = np.asarray(image, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise DecodeError(f"unsupported image layout {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _short(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]
