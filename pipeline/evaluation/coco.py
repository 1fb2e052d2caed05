"""COCO evaluation of an output against a ground truth, with pycocotools' COCOeval.

Boxes, masks (`segm`) and, where both the ground truth and the predictions have them,
keypoints are evaluated. Only GT images that a processed frame of the output matched are
evaluated (`params.imgIds`), so running over part of a dataset does not count the rest as
misses. Boxes and masks are evaluated from separate result lists, so a mask's area (not
its box's) decides its COCO size range.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

from maskray.errors import UsageError
from maskray.pipeline.export.coco import coco_results
from maskray.pipeline.coco.matching import load_ground_truth
from maskray.pipeline.coco.scoring import coco_index, keypoint_category_ids, keypoint_count, score
from maskray.pipeline.output.reader import open_output, write_file
from maskray.pipeline.coco.track_metrics import evaluate_tracks


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
    gt = coco_index(gt_data)
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
        values, text = score(gt_data, export.results, task, image_ids=image_ids, gt=gt)
        metrics[task] = values
        blocks.append(f"{task}:\n{text}")
    tracks = evaluate_tracks(output, gt_data, min_score=min_score)
    if tracks is not None:  # videos whose ground truth carries identities: MOTA, IDF1, HOTA
        metrics["tracks"] = tracks
        blocks.append("tracks: " + ", ".join(f"{k} {tracks[k]:.3f}" for k in ("MOTA", "IDF1", "HOTA"))
                      + f" ({tracks['videos']} videos, {tracks['gt_tracks']} objects, "
                      f"{tracks['predicted_tracks']} predicted tracks, {tracks['IDSW']} id switches)\n")
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
        if not keypoint_category_ids(gt_data):
            return "no keypoints in the ground truth"
        lengths = {len(r["keypoints"]) // 3 for r in results if "keypoints" in r}
        if lengths != {keypoint_count(gt_data)}:
            return f"the output has {sorted(lengths)} keypoints per instance, the ground truth {keypoint_count(gt_data)}"
        return None
    raise UsageError(f"unknown task {task!r}: choose bbox, segm or keypoints")


def write_metrics(evaluation: Evaluation, uri: str) -> None:
    write_file(uri, (json.dumps(evaluation.metrics, indent=2) + "\n").encode())
