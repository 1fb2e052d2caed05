"""The tracker, the stitching of segments, the track metrics and the class filter, on their own
(no Ray, no model): small hand-made detections and the synthetic shapes' ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from maskray.jobs.spec import JobSpec
from maskray.jobs.training.shapes import generate_shapes
from maskray.models.categories import COCO_CATEGORIES
from maskray.models.class_filter import build_class_filter
from maskray.errors import UsageError
from maskray.pipeline.coco.track_metrics import sequences_from_coco, track_metrics
from maskray.pipeline.tracking.stitch import SegmentTracks, assign_track_ids
from maskray.pipeline.tracking.settings import TrackerConfig
from maskray.pipeline.tracking.tracker import Detections, Tracker


def frame(boxes, scores, categories=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    categories = np.ones(len(boxes), np.int32) if categories is None else np.asarray(categories, np.int32)
    return Detections(boxes, np.asarray(scores, np.float32), categories)


def moving(start, step, t):
    x, y = start[0] + step[0] * t, start[1] + step[1] * t
    return [x, y, x + 20, y + 20]


def test_two_objects_keep_their_tracks_through_a_missed_frame_and_a_low_score():
    tracker = Tracker(TrackerConfig(max_gap=3, new_track_score=0.8))
    seen = []
    for t in range(8):
        a, b = moving((10, 10), (4, 0), t), moving((100, 60), (-4, 2), t)
        if t == 3:  # b is missed for one frame
            detections = frame([a], [0.9])
        elif t == 5:  # b scores low: the second stage keeps it on its track
            detections = frame([a, b], [0.9, 0.3])
        else:
            detections = frame([a, b], [0.9, 0.8])
        seen.append(tracker.update(detections).tolist())
    assert seen[0] == [0, 1]
    assert all(s[0] == 0 for s in seen)
    assert [s[1] for s in seen if len(s) > 1] == [1] * 7
    assert tracker.tracks_started == 2


def test_a_track_does_not_jump_to_another_category_and_gaps_end_tracks():
    tracker = Tracker(TrackerConfig(max_gap=1))
    assert tracker.update(frame([[0, 0, 20, 20]], [0.9], [1])).tolist() == [0]
    assert tracker.update(frame([[1, 0, 21, 20]], [0.9], [2])).tolist() == [1]  # same place, other class
    tracker.update(frame([], []))
    tracker.update(frame([], []))
    tracker.update(frame([], []))
    assert tracker.update(frame([[1, 0, 21, 20]], [0.9], [2])).tolist() == [2]  # gap too long: new track


def test_tracks_follow_masks_and_the_tracker_is_repeatable():
    def detections(t):
        masks = []
        for cx in (20 + 3 * t, 90 - 3 * t):
            canvas = np.zeros((64, 128), np.uint8, order="F")
            canvas[20:40, cx:cx + 16] = 1
            masks.append(mask_utils.encode(np.asfortranarray(canvas))["counts"].decode())
        boxes = [[20 + 3 * t, 20, 36 + 3 * t, 40], [90 - 3 * t, 20, 106 - 3 * t, 40]]
        return Detections(np.array(boxes, np.float32), np.array([0.95, 0.92], np.float32),
                          np.array([1, 1], np.int32), masks, 64, 128)

    runs = []
    for _ in range(2):
        tracker = Tracker()
        runs.append([tracker.update(detections(t)).tolist() for t in range(10)])
    assert runs[0] == runs[1] == [[0, 1]] * 10


def test_stitching_links_tracks_through_the_overlap_and_numbers_chains_by_first_appearance():
    # Segment A (frames 0-9) sees tracks 0 and 1; its lookahead (10, 11) sees them on.
    # Segment B starts at 10 with its own numbers: 1 is A's 0, 0 is A's 1, 2 is new.
    a = SegmentTracks("vid-x-f000000-000010", 0, first={0: (0, 0), 1: (2, 1)},
                      lookahead=[(10, 0, 0, 0, 10, 10), (10, 1, 50, 50, 60, 60),
                                 (11, 0, 1, 0, 11, 10), (11, 1, 51, 50, 61, 60)])
    b = SegmentTracks("vid-x-f000010-000020", 10, first={0: (10, 0), 1: (10, 1), 2: (12, 0)},
                      head=[(10, 0, 50, 50, 60, 60), (10, 1, 0, 0, 10, 10),
                            (11, 0, 51, 50, 61, 60), (11, 1, 1, 0, 11, 10), (12, 2, 90, 90, 99, 99)])
    rows = assign_track_ids([b, a])  # order given does not matter
    ids = {(shard[-13:], track): track_id for shard, track, track_id in rows}
    assert ids == {("000000-000010", 0): 1, ("000000-000010", 1): 2,
                   ("000010-000020", 1): 1, ("000010-000020", 0): 2, ("000010-000020", 2): 3}
    again = SegmentTracks.from_dict(a.shard, json.loads(json.dumps(a.to_dict())))
    assert assign_track_ids([again, b]) == rows


def test_shapes_videos_carry_identities_and_perfect_tracks_score_one(tmp_path):
    made = generate_shapes(tmp_path, images=0, videos=1, frames=6, seed=4)
    truth = json.loads(made.videos_json.read_text())
    assert truth["annotations"] and all("track_id" in a for a in truth["annotations"])
    per_frame = {}
    for annotation in truth["annotations"]:
        per_frame.setdefault(annotation["image_id"], []).append(annotation["track_id"])
    assert all(len(set(ids)) == len(ids) for ids in per_frame.values())  # one object per id per frame

    sequences = sequences_from_coco(truth)
    for sequence in sequences.values():  # predictions equal to the ground truth
        for frame_number, (ids, masks) in sequence.gt.items():
            for track_id, rle in zip(ids, masks):
                sequence.add_prediction(frame_number, 100 + track_id, rle)
    perfect = track_metrics(list(sequences.values()))
    assert perfect["MOTA"] == pytest.approx(1.0) and perfect["IDF1"] == pytest.approx(1.0)
    assert perfect["HOTA"] == pytest.approx(1.0, abs=1e-6)

    swapped = sequences_from_coco(truth)  # every id changes half way through: IDF1 drops
    for sequence in swapped.values():
        for frame_number, (ids, masks) in sequence.gt.items():
            for track_id, rle in zip(ids, masks):
                sequence.add_prediction(frame_number, track_id + (50 if frame_number >= 3 else 0), rle)
    worse = track_metrics(list(swapped.values()))
    assert worse["MOTA"] < 1.0 and worse["IDF1"] < 0.75 and worse["IDSW"] > 0


def test_class_filter_keeps_chosen_classes_above_their_own_thresholds():
    keep = build_class_filter(COCO_CATEGORIES, classes=["person", "3"], score_threshold="person=0.7,0.4")
    labels = torch.tensor([1, 1, 3, 3, 18])
    scores = torch.tensor([0.8, 0.6, 0.5, 0.3, 0.99])
    assert keep.keep(labels, scores).tolist() == [True, False, True, False, False]
    assert keep.lowest_threshold == 0.4


@pytest.mark.parametrize("changes, message", [
    ({"classes": "person,unicorn"}, "--classes: unknown category 'unicorn'; this model's categories are: person, bicycle"),
    ({"score_threshold": "person=0.7,car=x"}, "--score-threshold: 'x' for car is not a number"),
    ({"score_threshold": "cat=1.5,0.4"}, "--score-threshold: cat must be between 0 and 1"),
    ({"tracker": {"max_gap": -1}}, "--track-max-gap must be at least 0"),
])
def test_bad_class_and_tracker_settings_are_one_line_errors(tmp_path, changes, message):
    with pytest.raises(UsageError) as caught:
        JobSpec([str(tmp_path)], str(tmp_path / "out"), **changes).validate(check_local_device=False)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_per_class_thresholds_and_classes_are_part_of_the_job(tmp_path):
    spec = JobSpec([str(tmp_path)], str(tmp_path / "out"), score_threshold="person=0.7,car=0.5,0.4",
                   classes="person,car")
    assert (spec.score_threshold, spec.class_thresholds, spec.classes) == (0.4, {"person": 0.7, "car": 0.5},
                                                                          ["person", "car"])
    other = JobSpec([str(tmp_path)], str(tmp_path / "out"), score_threshold="person=0.6,car=0.5,0.4",
                    classes="person,car")
    assert spec.fingerprint() != other.fingerprint()
    assert spec.differences_from_dict(other.to_dict()) == ["class_thresholds"]


def test_predictor_keeps_only_the_chosen_classes_at_their_thresholds(tmp_path):
    from maskray.jobs.training.shapes import render_image
    from maskray.models.predictor import Predictor, PredictorConfig

    rgb, truth = render_image(np.random.default_rng(11), 192, 192, max_shapes=6)
    everything = Predictor(PredictorConfig(model="demo", weights="demo", score_threshold=0.3)).predict([rgb])[0]
    assert len(set(everything.categories)) >= 2  # the picture has more than one kind of shape
    wanted = everything.categories[0]
    only = Predictor(PredictorConfig(model="demo", weights="demo", score_threshold=0.3, classes=(wanted,),
                                     class_thresholds=((wanted, 0.9),))).predict([rgb])[0]
    expected = [s for c, s in zip(everything.categories, everything.scores) if c == wanted and s >= 0.9]
    assert expected and len(expected) < len(everything)
    assert only.categories == [wanted] * len(expected)
    np.testing.assert_allclose(only.scores, expected, rtol=1e-4)


def test_chosen_classes_act_before_nms_so_other_classes_take_no_instance_slots():
    """`--classes` with `--max-instances N` gives N instances of the chosen class when the
    model has that many: other classes are dropped before the cap, not after it."""
    from maskray.jobs.training.shapes import render_image
    from maskray.models.predictor import Predictor, PredictorConfig

    rgb, _ = render_image(np.random.default_rng(11), 192, 192, max_shapes=6)
    settings = dict(model="demo", weights="demo", min_size=128, max_size=192, score_threshold=0.0)
    everything = Predictor(PredictorConfig(**settings, max_instances=100)).predict([rgb])[0]
    top = everything.categories[:5]
    # A class the unfiltered top 5 are short of, with at least 5 instances further down.
    (wanted, *_) = [c for c in sorted(set(everything.categories))
                    if top.count(c) < 5 and everything.categories.count(c) >= 5]
    only = Predictor(PredictorConfig(**settings, max_instances=5, classes=(wanted,))).predict([rgb])[0]
    assert only.categories == [wanted] * 5
    expected = [s for c, s in zip(everything.categories, everything.scores) if c == wanted][:5]
    np.testing.assert_allclose(only.scores, expected, rtol=1e-4)
