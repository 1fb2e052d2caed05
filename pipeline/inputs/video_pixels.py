"""A decoded video frame -> the RGB pixels a viewer shows: display rotation applied, size bounded.

Phones record portrait video as landscape pictures plus a display matrix saying how to turn
them. FFmpeg (PyAV) gives that turn as `VideoFrame.rotation`, counter-clockwise degrees; the
frame is turned by it, so boxes and masks match what a player shows and the `frames` row's
width and height are the displayed size. (A mirroring display matrix is rare and not applied.)
A frame over the decode limit is scaled down in the same conversion (libswscale), as images
are; its `width`/`height` stay the displayed full size, and the worker maps results back.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from maskray.pipeline.inputs.images import MAX_DECODE_PIXELS


def upright_rgb(decoded, max_pixels: Optional[int] = MAX_DECODE_PIXELS) -> tuple[np.ndarray, int, int]:
    """`(rgb, width, height)`: pixels (maybe reduced) and the displayed full size of `decoded`."""
    width, height = decoded.width, decoded.height
    if max_pixels and width * height > max_pixels:
        factor = math.sqrt(width * height / max_pixels)
        rgb = decoded.to_ndarray(format="rgb24", width=max(1, int(width / factor)),
                                 height=max(1, int(height / factor)))
    else:
        rgb = decoded.to_ndarray(format="rgb24")
    turns = quarter_turns(decoded)
    if turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, turns))  # rot90 turns counter-clockwise, as FFmpeg's angle
        if turns % 2:
            width, height = height, width
    return rgb, width, height


def quarter_turns(decoded) -> int:
    """The frame's display rotation in counter-clockwise quarter turns (0..3)."""
    degrees = getattr(decoded, "rotation", 0) or 0
    return int(round(float(degrees) / 90.0)) % 4
