"""One COCO scoring for `maskray eval` and training validation (issue 9).

Before, validation scored every keypoint set with one OKS sigma (0.05), while `maskray eval`
used COCO's 17 per-keypoint sigmas for person keypoints: the same predictions got two APs.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskray.jobs.training.validate import coco_scores
from maskray.pipeline.coco.scoring import OTHER_KEYPOINT_SIGMA, score


def person_keypoints(count: int, seed: int = 0):
    """Ground truth: 6 images of one 100x200 box with `count` keypoints; predictions whose
    keypoints are off by 1 to 12 pixels, so the AP depends on the sigmas."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for index in range(6):
        points = np.stack([rng.uniform(20, 110, count), rng.uniform(20, 210, count)], axis=1)
        flat = np.concatenate([points, np.full((count, 1), 2.0)], axis=1).reshape(-1).tolist()
        images.append({"id": index + 1, "width": 160, "height": 240, "file_name": f"{index}.png"})
        annotations.append({"id": index + 1, "image_id": index + 1, "category_id": 1, "iscrowd": 0,
                            "bbox": [15.0, 15.0, 100.0, 200.0], "area": 20000.0,
                            "num_keypoints": count, "keypoints": flat})
        moved = points + rng.normal(0, 1 + 2 * index, points.shape)
        predicted = np.concatenate([moved, np.ones((count, 1))], axis=1).reshape(-1).tolist()
        results.append({"image_id": index + 1, "category_id": 1, "score": 0.9 - 0.1 * index,
                        "bbox": [15.0, 15.0, 100.0, 200.0], "keypoints": predicted})
    categories = [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(count)], "skeleton": []}]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def reference_ap(gt_data: dict, results: list[dict], sigmas=None) -> float:
    """pycocotools by hand: COCOeval's own defaults unless `sigmas` are given."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_data
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), "keypoints")
        if sigmas is not None:
            evaluator.params.kpt_oks_sigmas = sigmas
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0])


@pytest.mark.parametrize("count", [17, 5])
def test_validation_and_eval_score_keypoints_alike(count, tmp_path):
    gt_data, results = person_keypoints(count)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt_data))
    validation = coco_scores(str(path), results, "keypoints")["AP"]
    evaluation = score(gt_data, results, "keypoints")[0]["AP"]
    assert validation == evaluation
    # Person keypoints: COCO's own sigmas; any other set: one sigma for every keypoint.
    expected = reference_ap(gt_data, results, None if count == 17 else np.full(count, OTHER_KEYPOINT_SIGMA))
    assert validation == pytest.approx(expected)
    assert 0.0 < validation < 1.0
    if count == 17:  # the sigma matters: the old validation's flat 0.05 gives another AP
        assert reference_ap(gt_data, results, np.full(17, 0.05)) != pytest.approx(validation)


def test_masks_are_scored_by_their_own_area_on_both_sides(tmp_path):
    from pycocotools import mask as mask_utils

    mask = np.zeros((240, 160), dtype=np.uint8, order="F")
    mask[20:60, 20:60] = 1
    rle = mask_utils.encode(mask)
    rle["counts"] = rle["counts"].decode("ascii")
    gt_data = {"images": [{"id": 1, "width": 160, "height": 240, "file_name": "a.png"}],
               "categories": [{"id": 1, "name": "square"}],
               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": rle,
                                "bbox": [20.0, 20.0, 40.0, 40.0], "area": 1600.0}]}
    # A right mask with a huge box: its mask's area (1600), not its box's, makes it medium-sized.
    results = [{"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": rle, "bbox": [0, 0, 160, 240]}]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt_data))
    assert coco_scores(str(path), results, "segm")["AP"] == pytest.approx(1.0)
    values, _ = score(gt_data, results, "segm")
    assert values["AP"] == pytest.approx(1.0) and values["APm"] == pytest.approx(1.0)
