"""COCO evaluation of an output against a ground truth, with pycocotools' COCOeval.

Boxes, masks (`segm`) and, where both the ground truth and the predictions have them,
keypoints are evaluated. Only GT images that a processed frame of the output matched are
evaluated (`params.imgIds`), so running over part of a dataset does not count the rest as
misses. Boxes and masks are evaluated from separate result lists, so a mask's area (not
its box's) decides its COCO size range.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from typing import Optional

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskray.models.errors import UsageError
from maskray.pipeline.coco.matching import load_ground_truth
from maskray.pipeline.coco.export import coco_results
from maskray.pipeline.output.reader import open_output, write_file

BOX_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KEYPOINT_METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
# COCO's per-keypoint OKS sigmas are for the 17 person keypoints; other sets get one value.
OTHER_KEYPOINT_SIGMA = 0.05


@dataclass
class Evaluation:
    metrics: dict  # {'bbox': {...}, 'segm': {...}, 'keypoints': {...}, 'images': n, ...}
    summary: str  # COCOeval's printed summaries, one block per task


def evaluate(output_uri: str, gt_uri: str, *, tasks: Optional[list[str]] = None,
             min_score: float = 0.0) -> Evaluation:
    """COCO AP/AR of the instances of `output_uri` against the annotations at `gt_uri`."""
    output = open_output(output_uri)
    gt_data = load_ground_truth(gt_uri)
    export = coco_results(output, gt_data, min_score=min_score)
    image_ids = sorted(set(export.image_ids.values()))
    if not image_ids:
        raise UsageError(
            f"no processed frame of {output_uri} matches an image of {gt_uri} "
            "(matching: 'source'/'frame' fields, then file_name path or basename)"
        )
    gt = _coco(gt_data)
    wanted = tasks or ["bbox", "segm", "keypoints"]
    metrics: dict = {
        "images": len(image_ids),
        "instances": len(export.results),
        "unmatched_frames": export.unmatched_frames,
        "unmatched_instances": export.unmatched_instances,
    }
    blocks = []
    for task in wanted:
        reason = _cannot_evaluate(task, gt_data, export.results, export.tasks)
        if reason:
            metrics.setdefault("skipped", {})[task] = reason
            continue
        values, text = _run(gt, gt_data, export.results, task, image_ids)
        metrics[task] = values
        blocks.append(f"{task}:\n{text}")
    return Evaluation(metrics=metrics, summary="\n".join(blocks))


def _cannot_evaluate(task: str, gt_data: dict, results: list[dict], predicted: set) -> Optional[str]:
    annotations = gt_data["annotations"]
    if task == "bbox":
        return None
    if task == "segm":
        if "segm" not in predicted:
            return "no masks in the output"
        if not annotations or not all(a.get("segmentation") for a in annotations):
            return "ground truth has annotations without segmentation"
        return None
    if task == "keypoints":
        if "keypoints" not in predicted:
            return "no keypoints in the output"
        if not _keypoint_category_ids(gt_data):
            return "no keypoints in the ground truth"
        lengths = {len(r["keypoints"]) // 3 for r in results if "keypoints" in r}
        if lengths != {_keypoint_count(gt_data)}:
            return f"the output has {sorted(lengths)} keypoints per instance, the ground truth {_keypoint_count(gt_data)}"
        return None
    raise UsageError(f"unknown task {task!r}: choose bbox, segm or keypoints")


def _keypoint_category_ids(gt_data: dict) -> list[int]:
    return sorted({a["category_id"] for a in gt_data["annotations"] if a.get("num_keypoints", 0) > 0})


def _coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


def _run(gt: COCO, gt_data: dict, results: list[dict], task: str, image_ids: list[int]):
    detections = _task_results(results, task, gt_data)
    dt = _coco({"images": gt_data["images"], "categories": gt_data["categories"], "annotations": []})
    if detections:
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(detections)
    evaluator = COCOeval(gt, dt, iouType=task)
    evaluator.params.imgIds = image_ids
    if task == "keypoints":
        evaluator.params.catIds = _keypoint_category_ids(gt_data)
        count = _keypoint_count(gt_data)
        if count != 17:
            evaluator.params.kpt_oks_sigmas = np.full(count, OTHER_KEYPOINT_SIGMA)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    names = KEYPOINT_METRICS if task == "keypoints" else BOX_METRICS
    values = {name: float(value) for name, value in zip(names, evaluator.stats)}
    return values, summary.getvalue()


def _task_results(results: list[dict], task: str, gt_data: dict) -> list[dict]:
    """The results one task reads: boxes only, masks only (area from the mask), or keypoints."""
    if task == "bbox":
        keep = ("image_id", "category_id", "bbox", "score")
        return [{k: r[k] for k in keep} for r in results]
    if task == "segm":
        keep = ("image_id", "category_id", "segmentation", "score")
        return [{k: r[k] for k in keep} for r in results if "segmentation" in r]
    categories = set(_keypoint_category_ids(gt_data))
    keep = ("image_id", "category_id", "keypoints", "score")
    return [{k: r[k] for k in keep} for r in results if "keypoints" in r and r["category_id"] in categories]


def _keypoint_count(gt_data: dict) -> int:
    for annotation in gt_data["annotations"]:
        if annotation.get("num_keypoints", 0) > 0:
            return len(annotation["keypoints"]) // 3
    return 17


def write_metrics(evaluation: Evaluation, uri: str) -> None:
    write_file(uri, (json.dumps(evaluation.metrics, indent=2) + "\n").encode())
