"""`FramePrediction`: the instances found in one frame, one container for every field.

As Detectron2's `Instances`: `pred[keep]` indexes every per-instance field at once (a boolean
mask or integer indices), so code that filters or reorders instances never lists the fields
and a field added here is carried along by every such step. Per-instance fields are the
dataclass fields marked `per_instance`; a field a model does not predict is None and stays None.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np


def per_instance(**kwargs):
    """A dataclass field holding one value per instance (array rows or list items)."""
    return field(metadata={"per_instance": True}, **kwargs)


@dataclass
class FramePrediction:
    """Instances found in one frame, sorted by descending score; N may be 0.

    height, width: the frame's size in pixels.
    boxes: (N, 4) float32 x1, y1, x2, y2 in the frame's pixels.
    scores: (N,) float32. category_ids: (N,) int32. categories: N names.
    masks_rle: N COCO counts strings of (height, width) masks, None without a mask head.
    mask_areas: (N,) int64 foreground pixels, None without a mask head.
    keypoints: (N, K, 3) float32 x, y, score, None without a keypoint head.
    embeddings: (N, D) float32 unit vectors, each instance's box-head feature (its appearance,
        for tracking), None for models without one.
    """

    height: int
    width: int
    boxes: np.ndarray = per_instance()
    scores: np.ndarray = per_instance()
    category_ids: np.ndarray = per_instance()
    categories: list[str] = per_instance()
    masks_rle: list[str] | None = per_instance()
    mask_areas: np.ndarray | None = per_instance()
    keypoints: np.ndarray | None = per_instance()
    embeddings: np.ndarray | None = per_instance(default=None)

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, keep) -> "FramePrediction":
        """The instances selected by `keep` (boolean mask, integer indices or a slice), every
        per-instance field indexed alike."""
        if not isinstance(keep, slice):  # a slice indexes arrays and lists as it is (views)
            keep = _indices(np.asarray(keep), len(self))
        return dataclasses.replace(self, **{name: _take(getattr(self, name), keep)
                                            for name in per_instance_fields()})


def _indices(keep: np.ndarray, count: int) -> np.ndarray:
    if keep.dtype == bool:
        if len(keep) != count:
            raise IndexError(f"a mask of {len(keep)} for {count} instances")
        return np.flatnonzero(keep)
    return keep.astype(np.int64, copy=False)


def per_instance_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(FramePrediction) if f.metadata.get("per_instance"))


def _take(values, keep):
    if values is None:
        return None
    if isinstance(values, np.ndarray) or isinstance(keep, slice):
        return values[keep]
    return [values[i] for i in keep]
