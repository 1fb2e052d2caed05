"""How the pixels the model sees relate to the frame's own, and mapping results back.

Two guards run before inference, so no frame's shape can fail a shard:
- a frame over the decode limit arrives reduced (images.py, video.py);
- a very thin frame (longer side more than MAX_ASPECT times the shorter) is padded with
  black below or to the right up to that ratio. torchvision's transform scales a frame by
  min(min_size / short side, max_size / long side); a 400x1 frame at max_size 213 gets a
  0-pixel side and the model raises ("Input and output sizes should be greater than 0").
  Padding keeps every original pixel where it was, so nothing is lost and no coordinate moves.

`restore` maps a prediction on the model's array back to the frame: boxes and keypoints
divided by the scale, masks cropped to the content and stretched to the frame's size (from
their run lengths, never as a full-size array), instances lying wholly in padding dropped.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

MAX_ASPECT = 16  # long side / short side the model is given at most


@dataclass(frozen=True)
class FrameGeometry:
    """The frame's own size, and the part of the model's array its (scaled) pixels fill.

    The array holds the frame scaled to `content_width x content_height` at its top-left,
    then padding up to `array_width x array_height`.
    """

    width: int
    height: int
    content_width: int
    content_height: int
    array_width: int
    array_height: int

    @property
    def unchanged(self) -> bool:
        return (self.content_width, self.content_height, self.array_width, self.array_height) == (
            self.width, self.height, self.width, self.height)


def fit(rgb: np.ndarray, width: int, height: int) -> tuple[np.ndarray, FrameGeometry]:
    """`rgb` (the frame, maybe reduced) padded so no side is thinner than 1/MAX_ASPECT of the other."""
    content_height, content_width = rgb.shape[:2]
    array_height = max(content_height, math.ceil(content_width / MAX_ASPECT))
    array_width = max(content_width, math.ceil(content_height / MAX_ASPECT))
    if (array_height, array_width) != (content_height, content_width):
        padded = np.zeros((array_height, array_width, 3), dtype=np.uint8)
        padded[:content_height, :content_width] = rgb
        rgb = padded
    return rgb, FrameGeometry(width, height, content_width, content_height, array_width, array_height)


def restore(prediction, geometry: FrameGeometry):
    """`prediction` (a models.frame_prediction.FramePrediction on the array) in the frame's
    own pixels. Instances wholly in the padding are dropped with `prediction[keep]`, which
    keeps every per-instance field, then the fields that hold coordinates are mapped back."""
    if geometry.unchanged:
        return prediction
    scale_x = geometry.content_width / geometry.width
    scale_y = geometry.content_height / geometry.height
    boxes = np.asarray(prediction.boxes, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, geometry.content_width) / scale_x
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, geometry.content_height) / scale_y
    keep = np.flatnonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))  # not all padding
    kept = prediction[keep]
    changes = {"width": geometry.width, "height": geometry.height, "boxes": boxes[keep]}
    if kept.keypoints is not None:
        points = np.asarray(kept.keypoints, dtype=np.float32).copy()
        points[:, :, 0] /= scale_x
        points[:, :, 1] /= scale_y
        changes["keypoints"] = points
    if kept.masks_rle is not None:
        masks = [_stretch_mask(counts, geometry) for counts in kept.masks_rle]
        changes["masks_rle"] = [counts for counts, _ in masks]
        changes["mask_areas"] = np.array([area for _, area in masks], dtype=np.int64)
    return dataclasses.replace(kept, **changes)


def _stretch_mask(counts: str, geometry: FrameGeometry) -> tuple[str, int]:
    """A COCO RLE on the array -> the RLE (and area) of the same mask on the frame (nearest pixel).

    Works on run boundaries, never on a frame-sized array: frame column x copies the array
    column nearest to it, and a run starting at array row r starts at the first frame row
    whose nearest array row is r. RLE runs go down the columns (Fortran order).
    """
    from pycocotools import mask as mask_utils

    rle = {"size": [geometry.array_height, geometry.array_width], "counts": counts.encode("ascii")}
    binary = mask_utils.decode(rle)[: geometry.content_height, : geometry.content_width].astype(np.int8)
    height, width = geometry.height, geometry.width
    rows = np.arange(geometry.content_height + 1)
    row_start = np.ceil(rows * height / geometry.content_height - 0.5).astype(np.int64)
    row_start[-1] = height
    columns = np.minimum(((np.arange(width) + 0.5) * geometry.content_width / width).astype(np.int64),
                         geometry.content_width - 1)
    # Value changes inside each array column, as frame rows, grouped by column.
    change_column, change_row = np.nonzero(np.diff(binary, axis=0).T)
    change_start = row_start[change_row + 1]
    per_column = np.bincount(change_column, minlength=geometry.content_width)
    first_change = np.concatenate([[0], np.cumsum(per_column)[:-1]])
    lengths = per_column[columns]
    before = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    picks = np.repeat(first_change[columns] - before, lengths) + np.arange(int(lengths.sum()))
    inside = change_start[picks] + np.repeat(np.arange(width, dtype=np.int64) * height, lengths)
    # A change at the top of frame column x: its first value differs from the last one above.
    top, bottom = binary[0, columns].astype(bool), binary[-1, columns].astype(bool)
    ended_with = np.concatenate([[False], bottom[:-1]])  # RLE counts start with zeros
    at_top = np.flatnonzero(top != ended_with).astype(np.int64) * height
    cuts = np.concatenate([[0], np.sort(np.concatenate([inside, at_top])), [height * width]])
    runs = np.diff(cuts).tolist()
    encoded = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    column_area = np.diff(row_start) @ binary.astype(np.int64)
    return encoded["counts"].decode("ascii"), int(column_area[columns].sum())
