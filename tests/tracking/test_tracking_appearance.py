"""Appearance in tracking, on its own (no Ray): the model's per-instance embeddings, picking a
lost track up again by appearance, confirmed track birth, the same rule across a segment cut,
and the optional `embedding` column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from maskray.jobs.training.shape_scenes import Scene, draw_scene
from maskray.jobs.training.shapes import render_image
from maskray.models.frame_prediction import FramePrediction
from maskray.pipeline.inputs.frame_ref import FrameRef
from maskray.pipeline.output.schema import predictions_to_batches
from maskray.pipeline.tracking.segment import SegmentTracking
from maskray.pipeline.tracking.settings import TrackerConfig
from maskray.pipeline.tracking.stitch import SegmentTracks, assign_track_ids
from maskray.pipeline.tracking.tracker import Detections, Tracker

LOOKS = np.eye(3, 8)  # three unit vectors: three clearly different appearances


def seen(boxes, looks, scores=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.full(len(boxes), 0.9, np.float32) if scores is None else np.asarray(scores, np.float32)
    return Detections(boxes, scores, np.ones(len(boxes), np.int32),
                      embeddings=None if looks is None else np.asarray(looks, np.float32).reshape(len(boxes), -1))


def lost_and_back(looks_known: bool) -> list:
    """Object A walks right, is hidden for 6 frames, and comes back stopped short of where its
    motion would put it (no overlap with the predicted box); B, a look-alike in category but
    not in appearance, stands still nearby throughout."""
    tracker = Tracker(TrackerConfig(max_gap=10, reid_reach=4.0))
    a, b = LOOKS[0], LOOKS[1]
    numbers = []
    for t in range(12):
        still = [150, 60, 170, 80]
        if t < 4:
            boxes, looks = [[10 + 8 * t, 10, 30 + 8 * t, 30], still], [a, b]
        elif t < 10:
            boxes, looks = [still], [b]
        else:  # back, but where it stopped rather than where 6 more steps would take it
            boxes, looks = [[50, 12, 70, 32], still], [a, b]
        numbers.append(tracker.update(seen(boxes, looks if looks_known else None)).tolist())
    return numbers


def test_a_track_lost_for_a_gap_is_picked_up_again_by_appearance():
    numbers = lost_and_back(looks_known=True)
    assert numbers[0] == [0, 1] and numbers[-1] == [0, 1]  # A's own track again, B untouched
    motion_only = lost_and_back(looks_known=False)
    assert motion_only[-1][0] not in (0, 1)  # without appearance the gap breaks the track


def test_a_look_alike_in_the_wrong_place_is_not_taken_for_a_lost_track():
    tracker = Tracker(TrackerConfig(reid_reach=2.0))
    for t in range(3):
        tracker.update(seen([[10 + 4 * t, 10, 30 + 4 * t, 30]], [LOOKS[0]]))
    tracker.update(seen([], None))
    far = tracker.update(seen([[200, 150, 220, 170]], [LOOKS[0]])).tolist()
    assert far != [0]


def test_a_single_frame_false_positive_never_becomes_a_track():
    tracking = SegmentTracking("vid-x-f000000-000010", 0, 10, TrackerConfig())
    for f in range(6):
        boxes = [[10 + 2 * f, 10, 30 + 2 * f, 30]] + ([[100, 100, 120, 120]] if f == 2 else [])
        prediction = FramePrediction(64, 128, np.asarray(boxes, np.float32), np.full(len(boxes), 0.95, np.float32),
                                     np.ones(len(boxes), np.int32), ["circle"] * len(boxes), None, None, None)
        numbers = tracking.track(f, prediction)
        if f == 2:
            blip = int(numbers[1])
    assert blip not in tracking.tracker.confirmed and 0 in tracking.tracker.confirmed
    summary = SegmentTracks.from_dict("vid-x-f000000-000010", tracking.record())
    rows = assign_track_ids([summary])
    assert rows == [("vid-x-f000000-000010", 0, 1)]  # the blip's instance gets no track_id


def test_stitching_links_an_object_lost_before_a_cut_and_back_after_it():
    """The earlier segment's tracker still remembers A at its end (lost two frames before the
    cut); A comes back three frames after the cut as a new track of the later segment."""
    reid = TrackerConfig().to_dict()
    earlier = SegmentTracks("vid-x-f000000-000010", 0, first={0: (0, 0), 1: (0, 1)}, confirmed={0, 1},
                            ends={0: {"frame": 8, "category": 1, "box": [40, 10, 60, 30], "velocity": [2, 0, 2, 0],
                                      "appearance": list(LOOKS[0])}},
                            lookahead=[(10, 1, 150, 60, 170, 80)], step=1, reid=reid)
    later = SegmentTracks("vid-x-f000010-000020", 10, first={0: (10, 0), 1: (13, 1)}, confirmed={0, 1},
                          head=[(10, 0, 150, 60, 170, 80)],
                          starts={1: {"frame": 13, "category": 1, "box": [58, 12, 78, 32],
                                      "appearance": list(LOOKS[0])}}, step=1, reid=reid)
    ids = {(shard[-6:], track): track_id for shard, track, track_id in assign_track_ids([earlier, later])}
    assert ids[("000010", 0)] == ids[("000020", 1)]  # A, across the cut and the gap
    assert ids[("000010", 1)] == ids[("000020", 0)] != ids[("000010", 0)]  # B, by the overlap
    unlike = SegmentTracks.from_dict(later.shard, later.to_dict())
    unlike.starts[1]["appearance"] = list(LOOKS[2])
    unlike.starts[1]["box"] = [120, 100, 140, 120]  # no overlap where A's motion puts it
    ids = {(s[-6:], t): i for s, t, i in assign_track_ids([earlier, unlike])}
    assert ids[("000010", 0)] != ids[("000020", 1)]


def test_the_model_gives_each_kept_instance_a_unit_embedding_and_the_column_is_optional():
    from maskray.models.predictor import Predictor, PredictorConfig

    rgb, _ = render_image(np.random.default_rng(5), 160, 160, max_shapes=4)
    predictor = Predictor(PredictorConfig(model="demo", weights="demo", min_size=160, max_size=160))
    prediction = predictor.predict([rgb])[0]
    assert len(prediction) and prediction.embeddings.shape == (len(prediction), predictor.embedding_size)
    np.testing.assert_allclose(np.linalg.norm(prediction.embeddings, axis=1), 1.0, atol=1e-5)
    ref = FrameRef(source="a.png", frame=0, time=None, width=160, height=160)
    plain, _ = predictions_to_batches([ref], [prediction], "img-x")
    assert "embedding" not in plain.schema.names
    stored, _ = predictions_to_batches([ref], [prediction], "img-x", embedding_size=predictor.embedding_size)
    column = stored.column("embedding")
    assert column.type == pa.list_(pa.float16(), predictor.embedding_size)
    vectors = np.asarray(column.values.to_numpy(zero_copy_only=False), np.float32).reshape(len(prediction), -1)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=2e-3)


@pytest.mark.parametrize("seed", [3, 4])
def test_scenes_are_repeatable_and_drawn_within_their_ranges(seed):
    scene = Scene(seconds=0.5, fps=10, shapes=3, shake=2.0, flicker=0.2)
    first = scene.render(np.random.default_rng(seed), 96, 64)
    again = scene.render(np.random.default_rng(seed), 96, 64)
    assert len(first[0]) == scene.frames == 5
    assert all(np.array_equal(x, y) for x, y in zip(first[0], again[0]))
    assert all(i.track_id is not None for frame in first[1] for i in frame)
    drawn = draw_scene(np.random.default_rng(seed))
    assert 1.0 <= drawn.seconds <= 20.0 and 10 <= drawn.fps <= 60 and drawn.keyframe_every >= 1
