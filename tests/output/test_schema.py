"""Predictions -> Arrow rows: frames with and without instances, error rows, the contract's types."""

from __future__ import annotations

import numpy as np

from maskray.models.frame_prediction import FramePrediction
from maskray.pipeline.output.schema import (
    FRAMES_SCHEMA, INSTANCES_SCHEMA, FrameError, FrameRef, error_batches, predictions_to_batches,
)


def prediction(n: int, width=100, height=50, keypoints=True) -> FramePrediction:
    boxes = np.tile(np.array([[10, 5, 40, 30]], np.float32), (n, 1))
    if n:
        boxes[0] = [-0.5, 2.0, width + 0.001, height + 3.0]  # rounding past the edges
    return FramePrediction(
        height=height, width=width, boxes=boxes, scores=np.linspace(0.9, 0.5, n).astype(np.float32),
        category_ids=np.full(n, 3, np.int32), categories=["triangle"] * n,
        masks_rle=["PPY8"] * n, mask_areas=np.full(n, 7, np.int64),
        keypoints=np.ones((n, 4, 3), np.float32) if keypoints else None,
    )


def test_frames_without_instances_still_get_frame_rows():
    refs = [FrameRef("a.mp4", 0, 0.0, 100, 50), FrameRef("a.mp4", 5, 0.2, 100, 50)]
    instances, frames = predictions_to_batches(refs, [prediction(0), prediction(0)], "s1")
    assert instances.schema == INSTANCES_SCHEMA and instances.num_rows == 0
    assert frames.schema == FRAMES_SCHEMA
    assert frames.column("num_instances").to_pylist() == [0, 0]
    assert frames.column("status").to_pylist() == ["ok", "ok"]


def test_instances_are_numbered_by_frame_and_boxes_stay_inside():
    refs = [FrameRef("x.png", 0, None, 100, 50), FrameRef("y.png", 0, None, 100, 50)]
    instances, frames = predictions_to_batches(refs, [prediction(2), prediction(0, keypoints=False)], "s")
    rows = instances.to_pylist()
    assert [r["instance"] for r in rows] == [0, 1] and {r["source"] for r in rows} == {"x.png"}
    assert rows[0]["time"] is None and rows[0]["category"] == "triangle"
    assert (rows[0]["x1"], rows[0]["x2"], rows[0]["y2"]) == (0.0, 100.0, 50.0)
    assert len(rows[0]["keypoints"]) == 12
    assert frames.column("num_instances").to_pylist() == [2, 0]


def test_error_rows_carry_the_message_and_no_size():
    instances, frames = error_batches([FrameError("bad.jpg", 0, None, "empty file (0 bytes)")], "s")
    (row,) = frames.to_pylist()
    assert instances.num_rows == 0
    assert row["status"] == "error" and row["error"] == "empty file (0 bytes)"
    assert row["width"] is None and row["num_instances"] == 0 and row["shard"] == "s"
