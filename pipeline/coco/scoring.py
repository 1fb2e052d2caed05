"""COCO scoring with pycocotools' COCOeval: the one place maskray turns results into AP.

Used by `maskray eval` (an output against ground truth) and by training's validation (a
model's predictions on a held-out set), so both score boxes, masks and keypoints the same
way: masks measured from their own area (not their box's), keypoints only on the categories
that have them, COCO's 17 per-keypoint OKS sigmas for person keypoints and one sigma
(`OTHER_KEYPOINT_SIGMA`) for any other keypoint set.
"""

from __future__ import annotations

import contextlib
import io
from typing import Optional

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

BOX_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KEYPOINT_METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
COCO_PERSON_KEYPOINTS = 17  # COCOeval's default sigmas are for these
OTHER_KEYPOINT_SIGMA = 0.05


def coco_index(dataset: dict) -> COCO:
    """A pycocotools COCO over an annotations dict (without its progress lines)."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def score(gt_data: dict, results: list[dict], task: str, *, image_ids: Optional[list[int]] = None,
          gt: Optional[COCO] = None) -> tuple[dict, str]:
    """COCOeval of `results` (COCO result dicts) for one task: 'bbox', 'segm' or 'keypoints'.

    gt_data: the ground truth (a COCO annotations dict); gt: its `coco_index`, when the caller
    scores several tasks. image_ids: evaluate these images only (default: every GT image).
    Returns ({metric: value} named by BOX_METRICS or KEYPOINT_METRICS, COCOeval's summary text).
    """
    gt = gt or coco_index(gt_data)
    detections = task_results(results, task, gt_data)
    dt = coco_index({"images": gt_data["images"], "categories": gt_data["categories"], "annotations": []})
    if detections:
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(detections)
    evaluator = COCOeval(gt, dt, iouType=task)
    if image_ids is not None:
        evaluator.params.imgIds = list(image_ids)
    if task == "keypoints":
        evaluator.params.catIds = keypoint_category_ids(gt_data)
        count = keypoint_count(gt_data)
        if count != COCO_PERSON_KEYPOINTS:
            evaluator.params.kpt_oks_sigmas = np.full(count, OTHER_KEYPOINT_SIGMA)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    names = KEYPOINT_METRICS if task == "keypoints" else BOX_METRICS
    return {name: float(value) for name, value in zip(names, evaluator.stats)}, summary.getvalue()


def task_results(results: list[dict], task: str, gt_data: dict) -> list[dict]:
    """The results one task reads: boxes only, masks only (area from the mask), or keypoints
    of the categories that have keypoints in the ground truth."""
    if task == "bbox":
        keep = ("image_id", "category_id", "bbox", "score")
        return [{k: r[k] for k in keep} for r in results]
    if task == "segm":
        keep = ("image_id", "category_id", "segmentation", "score")
        return [{k: r[k] for k in keep} for r in results if "segmentation" in r]
    categories = set(keypoint_category_ids(gt_data))
    keep = ("image_id", "category_id", "keypoints", "score")
    return [{k: r[k] for k in keep} for r in results if "keypoints" in r and r["category_id"] in categories]


def keypoint_category_ids(gt_data: dict) -> list[int]:
    """Categories with at least one annotated keypoint."""
    return sorted({a["category_id"] for a in gt_data["annotations"] if a.get("num_keypoints", 0) > 0})


def keypoint_count(gt_data: dict) -> int:
    """Keypoints per instance in the ground truth (COCO's 17 when none are annotated)."""
    for annotation in gt_data["annotations"]:
        if annotation.get("num_keypoints", 0) > 0:
            return len(annotation["keypoints"]) // 3
    return COCO_PERSON_KEYPOINTS
