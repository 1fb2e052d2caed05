"""Arrow schemas of the output tables and the one function that fills them.

The contract (DESIGN.md, "Output contract"): `instances` has one row per detected instance,
`frames` one row per processed frame (also with zero instances, or an error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa

INSTANCES_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("frame", pa.int64(), nullable=False),
        pa.field("time", pa.float64()),
        pa.field("instance", pa.int32(), nullable=False),
        pa.field("category_id", pa.int32(), nullable=False),
        pa.field("category", pa.string()),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("x1", pa.float32(), nullable=False),
        pa.field("y1", pa.float32(), nullable=False),
        pa.field("x2", pa.float32(), nullable=False),
        pa.field("y2", pa.float32(), nullable=False),
        pa.field("mask_rle", pa.string()),
        pa.field("mask_area", pa.int64()),
        pa.field("keypoints", pa.list_(pa.float32())),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),
        # The segment's own track number (null for images or without tracking); queries see
        # `track_id`, the video's id, which stitching maps these numbers to.
        pa.field("track", pa.int32()),
    ]
)

FRAMES_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("frame", pa.int64(), nullable=False),
        pa.field("time", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("num_instances", pa.int32(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("shard", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class FrameRef:
    """Identity of one frame: `(source, frame)`; `time` is None for an image."""

    source: str
    frame: int
    time: Optional[float]
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class FrameError:
    """A frame (or a whole input) that could not be decoded."""

    source: str
    frame: int
    time: Optional[float]
    message: str
    transient: bool = False  # the store failed, not the file: worth trying again on a resume


def predictions_to_batches(
    refs: Sequence[FrameRef], predictions: Sequence, shard: str,
    tracks: Optional[Sequence[np.ndarray]] = None,
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """Turn frames and their predictions into (instances, frames) record batches.

    `predictions[i]` belongs to `refs[i]` and is a `models.predictor.FramePrediction`
    (boxes (N,4) float32, scores (N,), category_ids (N,), categories list[str],
    masks_rle list[str] | None, mask_areas (N,) | None, keypoints (N,K,3) | None).
    Instances are written in the order given, which is descending score. `tracks[i]`, when
    given, holds the track number of each instance of frame i.
    Columns are built whole (numpy concatenation), not row by row.
    """
    counts = np.array([len(p.scores) for p in predictions], dtype=np.int64)
    total = int(counts.sum()) if len(counts) else 0
    def repeat(values):  # one value per frame -> one per instance ([] keeps Arrow's type)
        return np.repeat(np.asarray(values), counts) if total else []

    def cat(arrays, dtype, width=None):
        if not total:
            return np.zeros((0,) if width is None else (0, width), dtype=dtype)
        return np.concatenate([np.asarray(a, dtype=dtype) for a in arrays])

    boxes = cat([p.boxes.reshape(-1, 4) for p in predictions], np.float32, 4)
    if total:
        # Boxes are scaled back from the model's input size in float32, which can overshoot
        # the frame's edge by a rounding error; the contract says "pixels of the frame".
        limits = np.repeat(np.array([[r.width, r.height] for r in refs], dtype=np.float32), counts, axis=0)
        limits = np.concatenate([limits, limits], axis=1)
        limits[limits <= 0] = np.inf  # size unknown: leave the box as it is
        boxes = np.clip(boxes, 0.0, limits)
    instance_index = (
        np.concatenate([np.arange(n, dtype=np.int32) for n in counts]) if total else np.zeros(0, np.int32)
    )
    masks_rle: list = []
    mask_areas: list = []
    keypoints: list = []
    categories: list = []
    for p in predictions:
        n = len(p.scores)
        categories.extend(p.categories)
        masks_rle.extend(p.masks_rle if p.masks_rle is not None else [None] * n)
        mask_areas.extend(p.mask_areas.tolist() if p.mask_areas is not None else [None] * n)
        if p.keypoints is not None:
            if n:  # reshape(0, -1) is ambiguous: a frame without instances adds nothing
                keypoints.extend(np.asarray(p.keypoints, dtype=np.float32).reshape(n, -1).tolist())
        else:
            keypoints.extend([None] * n)

    instances = pa.RecordBatch.from_arrays(
        [
            pa.array(repeat([r.source for r in refs]), pa.string()),
            pa.array(repeat([r.frame for r in refs]), pa.int64()),
            pa.array(repeat([np.nan if r.time is None else r.time for r in refs]), pa.float64(),
                     from_pandas=True),
            pa.array(instance_index, pa.int32()),
            pa.array(cat([p.category_ids for p in predictions], np.int32), pa.int32()),
            pa.array(categories, pa.string()),
            pa.array(cat([p.scores for p in predictions], np.float32), pa.float32()),
            pa.array(boxes[:, 0], pa.float32()),
            pa.array(boxes[:, 1], pa.float32()),
            pa.array(boxes[:, 2], pa.float32()),
            pa.array(boxes[:, 3], pa.float32()),
            pa.array(masks_rle, pa.string()),
            pa.array(mask_areas, pa.int64()),
            pa.array(keypoints, pa.list_(pa.float32())),
            pa.array(repeat([r.width for r in refs]), pa.int32()),
            pa.array(repeat([r.height for r in refs]), pa.int32()),
            pa.array([shard] * total, pa.string()),
            pa.array(cat(tracks, np.int32) if tracks is not None else [None] * total, pa.int32()),
        ],
        schema=INSTANCES_SCHEMA,
    )
    frames = frames_batch([(r, int(n)) for r, n in zip(refs, counts)], shard)
    return instances, frames


def frames_batch(rows: Sequence[tuple[FrameRef | FrameError, int]], shard: str) -> pa.RecordBatch:
    """Rows of the `frames` table: (ref or error, num_instances) per frame.

    A `FrameError` row gets status 'error', its message, and null width/height.
    """
    def width_of(r):
        return r.width if isinstance(r, FrameRef) else None

    def height_of(r):
        return r.height if isinstance(r, FrameRef) else None

    return pa.RecordBatch.from_arrays(
        [
            pa.array([r.source for r, _ in rows], pa.string()),
            pa.array([r.frame for r, _ in rows], pa.int64()),
            pa.array([r.time for r, _ in rows], pa.float64()),
            pa.array([width_of(r) for r, _ in rows], pa.int32()),
            pa.array([height_of(r) for r, _ in rows], pa.int32()),
            pa.array([n for _, n in rows], pa.int32()),
            pa.array(["error" if isinstance(r, FrameError) else "ok" for r, _ in rows], pa.string()),
            pa.array([r.message if isinstance(r, FrameError) else None for r, _ in rows], pa.string()),
            pa.array([shard] * len(rows), pa.string()),
        ],
        schema=FRAMES_SCHEMA,
    )


def error_batches(errors: Sequence[FrameError], shard: str) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """(empty instances, error frames) for inputs that could not be decoded."""
    empty = pa.RecordBatch.from_pylist([], schema=INSTANCES_SCHEMA)
    return empty, frames_batch([(e, 0) for e in errors], shard)
