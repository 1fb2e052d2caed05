"""`FramePrediction[keep]` indexes every per-instance field at once (as Detectron2's `Instances`),
so filtering (the thin-frame restore) cannot leave a field at the wrong length."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from maskray.models.frame_prediction import FramePrediction, per_instance_fields
from maskray.pipeline.inputs.geometry import fit, restore


def _prediction(height: int, width: int, boxes: list) -> FramePrediction:
    count = len(boxes)
    masks = []
    for x1, y1, x2, y2 in boxes:
        mask = np.zeros((height, width), np.uint8, order="F")
        mask[int(y1):int(y2), int(x1):int(x2)] = 1
        masks.append(mask_utils.encode(mask)["counts"].decode("ascii"))
    return FramePrediction(
        height=height, width=width,
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        scores=np.linspace(0.9, 0.5, count).astype(np.float32),
        category_ids=np.arange(1, count + 1, dtype=np.int32),
        categories=[f"c{i}" for i in range(count)],
        masks_rle=masks,
        mask_areas=np.array([int((x2 - x1) * (y2 - y1)) for x1, y1, x2, y2 in boxes], np.int64),
        keypoints=np.zeros((count, 2, 3), np.float32),
        embeddings=np.eye(count, 4, dtype=np.float32),  # instance i's appearance: unit vector e_i
    )


def _lengths(prediction: FramePrediction) -> dict:
    return {name: len(getattr(prediction, name)) for name in per_instance_fields()}


def test_indexing_keeps_every_field_in_step():
    prediction = _prediction(20, 30, [[0, 0, 5, 5], [1, 1, 9, 9], [2, 2, 4, 4]])
    for keep, expected in (([True, False, True], [0, 2]), ([2, 0], [2, 0]), (slice(0, 2), [0, 1])):
        kept = prediction[keep]
        assert set(_lengths(kept).values()) == {len(expected)}
        assert kept.categories == [f"c{i}" for i in expected]
        assert kept.category_ids.tolist() == [i + 1 for i in expected]
        assert kept.masks_rle == [prediction.masks_rle[i] for i in expected]
        assert kept.embeddings.argmax(axis=1).tolist() == expected
    with pytest.raises(IndexError):
        prediction[[True, False]]  # a mask of the wrong length is a bug, never a silent crop


def test_a_field_the_model_does_not_predict_stays_none():
    prediction = _prediction(20, 30, [[0, 0, 5, 5], [1, 1, 9, 9]])
    boxes_only = FramePrediction(prediction.height, prediction.width, prediction.boxes, prediction.scores,
                                 prediction.category_ids, prediction.categories, None, None, None)
    kept = boxes_only[[1]]
    assert kept.masks_rle is None and kept.mask_areas is None and kept.keypoints is None
    assert kept.boxes.tolist() == [[1, 1, 9, 9]]


def test_restore_drops_instances_in_the_padding_with_all_their_fields():
    # A 1x40 frame is padded to 3x40 for the model; an instance wholly in the padding goes,
    # and every per-instance field of the rest comes back at the same length.
    frame = np.full((1, 40, 3), 200, np.uint8)
    array, geometry = fit(frame, 40, 1)
    assert array.shape[:2] == (3, 40)
    prediction = _prediction(3, 40, [[0, 0, 10, 1], [5, 1.5, 20, 3], [12, 0, 30, 1]])
    restored = restore(prediction, geometry)
    assert set(_lengths(restored).values()) == {2}
    assert restored.categories == ["c0", "c2"]
    assert (restored.height, restored.width) == (1, 40)
    assert restored.mask_areas.tolist() == [10, 18]
