"""Masks as the shapes annotation tools draw: polygons (outer contours) and boxes.

A contour runs through the centres of a mask's boundary pixels (OpenCV's `findContours`); a
pixel (x, y) covers [x, x+1] x [y, y+1], so its centre is (x + 0.5, y + 0.5). Holes are left
out (tools fill polygons); every separate part is a polygon of its own.
"""

from __future__ import annotations

import cv2
import numpy as np

from maskray.models import rle


def mask_of(row: dict) -> np.ndarray:
    """The (H, W) uint8 0/1 mask of an instance row."""
    return rle.decode(row["mask_rle"], row["height"], row["width"])


def polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Outer contours of a mask's parts, largest first, each (K, 2) float x, y (K >= 3)."""
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    parts = [c.reshape(-1, 2).astype(np.float64) + 0.5 for c in contours]
    parts = [p for p in parts if len(p) >= 3] or [_pixel_square(c) for c in contours[:1]]
    return sorted(parts, key=lambda p: -abs(_area(p)))


def one_polygon(parts: list[np.ndarray]) -> np.ndarray:
    """Several parts as one ring (formats with one polygon an instance): each part is entered
    and left along the same zero-width seam from the first, so its area is unchanged."""
    if len(parts) == 1:
        return parts[0]
    ring = [parts[0], parts[0][:1]]
    for part in parts[1:]:
        ring += [part, part[:1], parts[0][:1]]
    return np.concatenate(ring)


def _pixel_square(contour: np.ndarray) -> np.ndarray:
    x, y = contour.reshape(-1, 2)[0]
    return np.array([[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1]], dtype=np.float64)


def _area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
