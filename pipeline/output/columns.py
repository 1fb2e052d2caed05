"""The columns of the output tables, each in one place: its name, Arrow type, and values.

A column is one entry of `INSTANCE_COLUMNS` or `FRAME_COLUMNS`; the Arrow schemas and the
record batches are both made from these lists, so a new column is one entry here (plus, for
a per-instance value, one field of `models.frame_prediction.FramePrediction`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pyarrow as pa

from maskray.pipeline.inputs.frame_ref import FrameError, FrameRef


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool
    values: Callable[[Any], Any]  # rows -> a pa.Array, or what pa.array(..., type) takes

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=self.nullable)

    def array(self, rows) -> pa.Array:
        values = self.values(rows)
        return values if isinstance(values, pa.Array) else pa.array(values, self.type)


class InstanceRows:
    """The frames of a batch and their predictions, as the per-instance values columns read.

    `predictions[i]` (a FramePrediction, instances in descending score) belongs to `refs[i]`;
    `tracks[i]`, when given, holds the track number of each of its instances.
    """

    def __init__(self, refs: Sequence[FrameRef], predictions: Sequence, shard: str,
                 tracks: Optional[Sequence[np.ndarray]] = None):
        self.refs, self.predictions, self.shard, self.tracks = refs, predictions, shard, tracks
        self.counts = np.array([len(p) for p in predictions], dtype=np.int64)
        self.total = int(self.counts.sum()) if len(self.counts) else 0

    def per_frame(self, value: Callable[[FrameRef], Any]):
        """One value per frame, repeated for each of its instances."""
        if not self.total:
            return []
        return np.repeat(np.asarray([value(r) for r in self.refs]), self.counts)

    def numbers(self, name: str, dtype, width: Optional[int] = None) -> np.ndarray:
        """A numeric per-instance field of every frame, concatenated (built whole, not by row)."""
        if not self.total:
            return np.zeros((0,) if width is None else (0, width), dtype=dtype)
        shape = (-1,) if width is None else (-1, width)
        return np.concatenate([np.asarray(getattr(p, name), dtype=dtype).reshape(shape) for p in self.predictions])

    def items(self, name: str) -> list:
        """A per-instance field as a list; None for each instance of a frame without it."""
        values: list = []
        for p in self.predictions:
            field = getattr(p, name)
            if field is None:
                values.extend([None] * len(p))
            else:
                values.extend(field.tolist() if isinstance(field, np.ndarray) else field)
        return values

    @cached_property
    def boxes(self) -> np.ndarray:
        """(N, 4) boxes clipped to their frame: scaled back in float32, a box can overshoot the
        frame's edge by a rounding error, and the contract says "pixels of the frame"."""
        boxes = self.numbers("boxes", np.float32, 4)
        if self.total:
            limits = np.repeat(np.array([[r.width, r.height] for r in self.refs], dtype=np.float32),
                               self.counts, axis=0)
            limits = np.concatenate([limits, limits], axis=1)
            limits[limits <= 0] = np.inf  # size unknown: leave the box as it is
            boxes = np.clip(boxes, 0.0, limits)
        return boxes

    def instance_numbers(self) -> np.ndarray:
        if not self.total:
            return np.zeros(0, np.int32)
        return np.concatenate([np.arange(n, dtype=np.int32) for n in self.counts])

    def keypoints(self) -> list:
        values: list = []
        for p in self.predictions:
            if p.keypoints is None:
                values.extend([None] * len(p))
            elif len(p):  # reshape(0, -1) is ambiguous: a frame without instances adds nothing
                values.extend(np.asarray(p.keypoints, dtype=np.float32).reshape(len(p), -1).tolist())
        return values

    def embeddings(self, size: int) -> pa.Array:
        values = np.zeros((self.total, size), np.float16)
        valid = np.ones(self.total, bool)
        start = 0
        for p in self.predictions:
            count = len(p)
            rows = getattr(p, "embeddings", None)
            if count and rows is not None and np.asarray(rows).shape[-1] == size:
                values[start:start + count] = np.asarray(rows).reshape(count, size)
            else:
                valid[start:start + count] = False
            start += count
        flat = pa.array(values.reshape(-1), pa.float16())
        return pa.FixedSizeListArray.from_arrays(flat, size, mask=pa.array(~valid))

    def track_numbers(self):
        if self.tracks is None:
            return [None] * self.total
        return np.concatenate([np.asarray(t, dtype=np.int32) for t in self.tracks]) if self.total \
            else np.zeros(0, np.int32)


def _time(rows) -> pa.Array:
    times = rows.per_frame(lambda r: np.nan if r.time is None else r.time)
    return pa.array(times, pa.float64(), from_pandas=True)  # NaN -> null: an image has no time


def _box(side: int) -> Callable:
    return lambda rows: rows.boxes[:, side]


INSTANCE_COLUMNS: tuple[Column, ...] = (
    Column("source", pa.string(), False, lambda rows: rows.per_frame(lambda r: r.source)),
    Column("frame", pa.int64(), False, lambda rows: rows.per_frame(lambda r: r.frame)),
    Column("time", pa.float64(), True, _time),
    Column("instance", pa.int32(), False, InstanceRows.instance_numbers),
    Column("category_id", pa.int32(), False, lambda rows: rows.numbers("category_ids", np.int32)),
    Column("category", pa.string(), True, lambda rows: rows.items("categories")),
    Column("score", pa.float32(), False, lambda rows: rows.numbers("scores", np.float32)),
    Column("x1", pa.float32(), False, _box(0)),
    Column("y1", pa.float32(), False, _box(1)),
    Column("x2", pa.float32(), False, _box(2)),
    Column("y2", pa.float32(), False, _box(3)),
    Column("mask_rle", pa.string(), True, lambda rows: rows.items("masks_rle")),
    Column("mask_area", pa.int64(), True, lambda rows: rows.items("mask_areas")),
    Column("keypoints", pa.list_(pa.float32()), True, InstanceRows.keypoints),
    Column("width", pa.int32(), False, lambda rows: rows.per_frame(lambda r: r.width)),
    Column("height", pa.int32(), False, lambda rows: rows.per_frame(lambda r: r.height)),
    Column("shard", pa.string(), False, lambda rows: [rows.shard] * rows.total),
    # The segment's own track number (null for images or without tracking); queries see
    # `track_id`, the video's id, which stitching maps these numbers to.
    Column("track", pa.int32(), True, InstanceRows.track_numbers),
)


EMBEDDING = "embedding"  # the optional column (`submit --embeddings`), after INSTANCE_COLUMNS


def embedding_column(size: int) -> Column:
    """Each instance's appearance vector (the model's box-head feature, unit length) as a
    fixed-size list of `size` float16; null for an instance whose model gave none."""
    return Column(EMBEDDING, pa.list_(pa.float16(), size), True, lambda rows: rows.embeddings(size))


class FrameRows:
    """Rows of the `frames` table: (ref or error, number of instances) per frame."""

    def __init__(self, rows: Sequence[tuple[FrameRef | FrameError, int]], shard: str):
        self.rows, self.shard = rows, shard

    def each(self, value: Callable) -> list:
        return [value(r, n) for r, n in self.rows]


def _size(name: str) -> Callable:  # an error row has no size
    return lambda rows: rows.each(lambda r, n: getattr(r, name) if isinstance(r, FrameRef) else None)


FRAME_COLUMNS: tuple[Column, ...] = (
    Column("source", pa.string(), False, lambda rows: rows.each(lambda r, n: r.source)),
    Column("frame", pa.int64(), False, lambda rows: rows.each(lambda r, n: r.frame)),
    Column("time", pa.float64(), True, lambda rows: rows.each(lambda r, n: r.time)),
    Column("width", pa.int32(), True, _size("width")),
    Column("height", pa.int32(), True, _size("height")),
    Column("num_instances", pa.int32(), False, lambda rows: rows.each(lambda r, n: n)),
    Column("status", pa.string(), False,
           lambda rows: rows.each(lambda r, n: "error" if isinstance(r, FrameError) else "ok")),
    Column("error", pa.string(), True,
           lambda rows: rows.each(lambda r, n: r.message if isinstance(r, FrameError) else None)),
    Column("shard", pa.string(), False, lambda rows: [rows.shard] * len(rows.rows)),
)
