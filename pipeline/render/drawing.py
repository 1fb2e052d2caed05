"""Drawing instances on one RGB frame: masks, boxes, labels and keypoint skeletons.

Plain functions over an (H, W, 3) uint8 array and instance rows (dicts with the columns of
the `instances` table). Masks are alpha-blended with numpy and outlined; boxes, labels and
keypoints are drawn with PIL's ImageDraw on top, so labels stay readable over masks.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from maskray.models import rle
from maskray.models.categories import COCO_SKELETON

# Distinct, saturated colours (RGB); instance i gets PALETTE[i % len].
PALETTE = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (128, 0, 0), (170, 255, 195),
    (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128), (255, 255, 255),
)


def colour(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def draw_instances(rgb: np.ndarray, rows: list[dict], *, alpha: float = 0.45,
                   keypoint_threshold: float = 0.0, trails: Optional[dict] = None) -> np.ndarray:
    """A copy of `rgb` (H, W, 3 uint8) with `rows` drawn on it.

    rows: instance rows (category, score, x1..y2, mask_rle, height, width, keypoints),
    best first, as in the table. Colours follow the row order, so instance 0 is PALETTE[0];
    a row with a `track_id` takes its track's colour instead, the same in every frame.
    keypoint_threshold: keypoints scored at or below it are not drawn.
    trails: {track_id: [(x, y), ...]} box centres of earlier frames, drawn as lines.
    """
    rows = [dict(row, _colour=_row_colour(row, index)) for index, row in enumerate(rows)]
    if trails:
        rgb = _draw_trails(rgb, trails)
    height, width = rgb.shape[:2]
    pixels = rgb.astype(np.float32)
    # Worst first, so the best instance's mask ends up on top where masks overlap.
    for index in reversed(range(len(rows))):
        row = rows[index]
        if row.get("mask_rle") is None or (row["height"], row["width"]) != (height, width):
            continue
        mask = rle.decode(row["mask_rle"], height, width).astype(bool)
        tint = np.array(row["_colour"], np.float32)
        pixels[mask] = pixels[mask] * (1.0 - alpha) + tint * alpha
        pixels[_outline(mask)] = tint
    image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    line = max(1, round(min(height, width) / 250))
    for index, row in enumerate(rows):
        draw.rectangle([row["x1"], row["y1"], row["x2"], row["y2"]], outline=row["_colour"], width=line)
        if row.get("keypoints"):
            _draw_keypoints(draw, row["keypoints"], row["_colour"], line, keypoint_threshold)
    font = _font(max(10, round(min(height, width) / 32)))
    for row in rows:
        track = f"#{row['track_id']} " if row.get("track_id") is not None else ""
        _draw_label(draw, font, f"{track}{row.get('category') or row['category_id']} {row['score']:.2f}",
                    (row["x1"], row["y1"]), row["_colour"], (width, height))
    return np.asarray(image)


def _row_colour(row: dict, index: int) -> tuple[int, int, int]:
    track = row.get("track_id")
    return colour(index) if track is None else colour(int(track) - 1)


def _draw_trails(rgb: np.ndarray, trails: dict) -> np.ndarray:
    """Each track's path (box centres, oldest first) as a line in its colour."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    line = max(1, round(min(rgb.shape[:2]) / 200))
    for track, points in trails.items():
        if len(points) > 1:
            draw.line([tuple(map(float, p)) for p in points], fill=colour(int(track) - 1), width=line)
    return np.asarray(image)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask with a 4-neighbour outside it (the mask's edge)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def _draw_keypoints(draw: ImageDraw.ImageDraw, flat: list[float], tint, line: int, threshold: float) -> None:
    """COCO's skeleton for 17 person keypoints; for other sets (e.g. shapes' 4) dots only."""
    points = np.asarray(flat, np.float32).reshape(-1, 3)
    visible = points[:, 2] > threshold
    if len(points) == 17:
        for a, b in COCO_SKELETON:
            if visible[a - 1] and visible[b - 1]:
                draw.line([tuple(points[a - 1, :2]), tuple(points[b - 1, :2])], fill=tint, width=line + 1)
    radius = line + 2
    for (x, y, _), shown in zip(points, visible):
        if shown:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=tint, outline=(0, 0, 0))


def _draw_label(draw, font, text: str, corner, tint, size) -> None:
    """Text on a filled tag above the box's top-left corner (inside when there is no room)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    text_w, text_h = right - left, bottom - top
    pad = 2
    x, y = float(corner[0]), float(corner[1])
    tag_h = text_h + 2 * pad
    y0 = y - tag_h if y - tag_h >= 0 else y
    x0 = min(max(0.0, x), max(0.0, size[0] - text_w - 2 * pad))
    draw.rectangle([x0, y0, x0 + text_w + 2 * pad, y0 + tag_h], fill=tint)
    luminance = 0.299 * tint[0] + 0.587 * tint[1] + 0.114 * tint[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    draw.text((x0 + pad - left, y0 + pad - top), text, font=font, fill=ink)
