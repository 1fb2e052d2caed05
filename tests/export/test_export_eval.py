"""`maskray export` (COCO results) and `maskray eval` (pycocotools COCOeval) on known outputs."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskray.pipeline.coco.matching import load_ground_truth, match_ground_truth
from maskray.pipeline.evaluation.coco import evaluate
from maskray.pipeline.output.schema import FrameRef
from results_helpers import ellipse, ground_truth, prediction, rectangle, run_maskray, write_output

H, W = 96, 128
NAMES = {1: "person", 3: "car"}
ROOT = "/data/set"


def person_keypoints(x: float, y: float) -> np.ndarray:
    """17 keypoints spread over a person-sized box at (x, y), all scored 1."""
    offsets = np.stack([np.linspace(4, 26, 17), np.linspace(2, 38, 17)], axis=1)
    return np.concatenate([offsets + (x, y), np.ones((17, 1))], axis=1)


def scene(shift: int = 0):
    """(masks, category ids, keypoints) of the instances of 5 frames; `shift` moves all by (shift, shift) px."""
    s = shift
    return [
        ([rectangle(H, W, 10 + s, 12 + s, 40 + s, 52 + s), ellipse(H, W, 80 + s, 40 + s, 18, 12)], [1, 3]),
        ([rectangle(H, W, 60 + s, 30 + s, 100 + s, 70 + s)], [3]),
        ([ellipse(H, W, 50 + s, 50 + s, 20, 25), rectangle(H, W, 80 + s, 10 + s, 110 + s, 50 + s)], [1, 1]),
        ([rectangle(H, W, 20 + s, 20 + s, 70 + s, 60 + s)], [3]),
        ([rectangle(H, W, 30 + s, 30 + s, 60 + s, 70 + s)], [1]),
    ]


REFS = [
    FrameRef(f"{ROOT}/images/img1.png", 0, None, W, H),
    FrameRef(f"{ROOT}/images/img2.jpg", 0, None, W, H),
    FrameRef(f"{ROOT}/clips/gate.mp4", 10, 0.4, W, H),
    FrameRef(f"{ROOT}/clips/gate.mp4", 20, 0.8, W, H),
    FrameRef(f"{ROOT}/other/img3.png", 0, None, W, H),
]
# How the ground truth names those frames: a relative path, a basename, maskray's
# source/frame fields, a video-frame file name, and a path again.
GT_NAMES = [
    {"file_name": "images/img1.png"},
    {"file_name": "img2.jpg"},
    {"file_name": "x/10.png", "source": "clips/gate.mp4", "frame": 10},
    {"file_name": "gate.mp4/000020.png"},
    {"file_name": "set/other/img3.png"},
]


def frames_of(shift: int = 0, score: float = 1.0):
    """The scene's frames; keypoints move by a third of `shift` (OKS falls off fast on small people)."""
    frames = []
    for ref, (masks, ids), (plain, _) in zip(REFS, scene(shift), scene()):
        points = np.stack([person_keypoints(*(np.argwhere(m.T)[0] + shift // 3)) for m in plain])
        frames.append((ref, prediction(masks, ids, [score - 0.01 * i for i in range(len(ids))], NAMES, points)))
    return frames


@pytest.fixture
def gt_file(tmp_path):
    """GT = the unshifted scene, plus an image the job never processed (with annotations)."""
    data = ground_truth(frames_of(), GT_NAMES, NAMES, tmp_path / "unused.json")
    data["images"].append({"id": 99, "file_name": "images/not-run.png", "width": W, "height": H})
    data["annotations"].append({"id": 999, "image_id": 99, "category_id": 1, "bbox": [1, 1, 30, 30],
                                "area": 900, "iscrowd": 0, "segmentation": [[1, 1, 31, 1, 31, 31, 1, 31]]})
    for annotation in data["annotations"][:3]:  # a GT without area/iscrowd still loads
        del annotation["area"], annotation["iscrowd"]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return path


def output_with(tmp_path, frames, name="out"):
    extra = (FrameRef(f"{ROOT}/images/unlabelled.png", 0, None, W, H),
             prediction([rectangle(H, W, 5, 5, 25, 25)], [1], [0.99], NAMES, person_keypoints(5, 5)[None]))
    out = str(tmp_path / name)
    write_output(out, [*frames, extra], shard_size=2)
    return out


def test_ground_truth_matching_rules():
    gt = {"images": [
        {"id": 1, "file_name": "a/x.png"}, {"id": 2, "file_name": "b/x.png"},  # same basename, two folders
        {"id": 3, "file_name": "y.png"},
        {"id": 4, "file_name": "ignored.png", "source": "cams/gate.mp4", "frame": 7},
        {"id": 5, "file_name": "gate/8.jpg"},  # video frame by file name, video without extension
        {"id": 6, "file_name": "z.png"},
    ]}
    frames = [("/d/a/x.png", 0, True), ("/d/b/x.png", 0, True), ("s3://bkt/deep/y.png", 0, True),
              ("/v/cams/gate.mp4", 7, False), ("/v/cams/gate.mp4", 8, False), ("/v/cams/gate.mp4", 9, False),
              ("/p/z.png", 0, True), ("/q/z.png", 0, True)]  # two z.png claim one GT image: ambiguous
    assert match_ground_truth(frames, gt) == {
        ("/d/a/x.png", 0): 1, ("/d/b/x.png", 0): 2, ("s3://bkt/deep/y.png", 0): 3,
        ("/v/cams/gate.mp4", 7): 4, ("/v/cams/gate.mp4", 8): 5,
    }


def test_predictions_equal_to_the_ground_truth_score_ap_1(tmp_path, gt_file):
    evaluation = evaluate(output_with(tmp_path, frames_of()), str(gt_file))
    metrics = evaluation.metrics
    assert metrics["images"] == 5  # not-run.png is not counted as missed; unlabelled.png is skipped
    assert metrics["unmatched_frames"] == 1 and metrics["unmatched_instances"] == 1
    assert metrics["bbox"]["AP"] == 1.0 and metrics["bbox"]["AR100"] == 1.0
    assert metrics["segm"]["AP"] == 1.0 and metrics["keypoints"]["AP"] == 1.0
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000" in evaluation.summary


def test_shifted_predictions_score_lower_as_pycocotools_computes(tmp_path, gt_file, capsys):
    out = output_with(tmp_path, frames_of(shift=6))
    metrics = evaluate(out, str(gt_file)).metrics
    for task in ("bbox", "segm", "keypoints"):
        assert 0.0 < metrics[task]["AP"] < 0.8, (task, metrics[task])

    # The exported file, loaded and evaluated by pycocotools directly, gives the same AP.
    results = tmp_path / "results.json"
    code, _, err = run_maskray(["export", out, "--coco", results, "--gt", gt_file], capsys)
    assert code == 0 and "skipped 1 instances on 1 frames" in err
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = load_ground_truth(str(gt_file))  # with the missing iscrowd/area filled
        gt.createIndex()
        detections = gt.loadRes(str(results))
        direct = COCOeval(gt, detections, "bbox")
        direct.params.imgIds = [1, 2, 3, 4, 5]
        direct.evaluate(), direct.accumulate(), direct.summarize()
    assert direct.stats[0] == pytest.approx(metrics["bbox"]["AP"])
    assert len(detections.getAnnIds()) == 7


def test_export_without_ground_truth_numbers_frames_and_writes_their_images(tmp_path, capsys):
    out = output_with(tmp_path, frames_of())
    results, images_file = tmp_path / "r.json", tmp_path / "imgs.json"
    code, text, _ = run_maskray(["export", out, "--coco", results, "--images", images_file], capsys)
    assert code == 0 and "wrote 8 results on 6 images" in text
    images = json.loads(images_file.read_text())["images"]
    ordered = sorted([(r.source, r.frame) for r in REFS] + [(f"{ROOT}/images/unlabelled.png", 0)])
    assert [(i["source"], i["frame"]) for i in images] == ordered
    assert [i["id"] for i in images] == [1, 2, 3, 4, 5, 6]
    assert [i["file_name"] for i in images][:2] == ["clips/gate.mp4/000010.png", "clips/gate.mp4/000020.png"]
    first = json.loads(results.read_text())[0]
    assert set(first) == {"image_id", "category_id", "bbox", "score", "segmentation", "keypoints", "num_keypoints"}
    assert first["segmentation"]["size"] == [H, W] and first["num_keypoints"] == 17


def test_eval_command_writes_metrics_and_refuses_a_ground_truth_that_matches_nothing(tmp_path, gt_file, capsys):
    out = output_with(tmp_path, frames_of())
    metrics_file = tmp_path / "metrics.json"
    code, text, _ = run_maskray(["eval", out, "--gt", gt_file, "--out", metrics_file], capsys)
    assert code == 0 and "segm:" in text and "keypoints:" in text
    assert json.loads(metrics_file.read_text())["segm"]["AP"] == 1.0

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"images": [{"id": 1, "file_name": "nope.png"}], "annotations": [], "categories": []}))
    code, _, err = run_maskray(["eval", out, "--gt", other], capsys)
    assert code == 2 and err.count("\n") == 1 and "matches an image" in err
