"""Export instances as a COCO results file (the list `COCO.loadRes` and COCOeval read).

Each instance becomes `{image_id, category_id, bbox [x, y, w, h], score, segmentation
{size: [h, w], counts}, keypoints [x, y, score, ...], num_keypoints}` (segmentation and
keypoints when the model predicts them). Image ids come from a ground truth's `images`
(matched by `coco_images.match_ground_truth`) or, without one, are assigned 1.. in
(source, frame) order, and the matching `images` list is written beside the results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import pyarrow.dataset as ds

from maskray.pipeline.coco.matching import FrameKey, assign_image_ids, load_ground_truth, match_ground_truth
from maskray.pipeline.output.reader import Output, open_output, write_file

_COLUMNS = ["source", "frame", "category_id", "score", "x1", "y1", "x2", "y2", "mask_rle",
            "keypoints", "width", "height"]


@dataclass
class CocoExport:
    """COCO results and the images they refer to."""

    results: list[dict]
    images: list[dict]
    image_ids: dict[FrameKey, int]
    frames: int = 0  # processed frames (status ok) in the output
    unmatched_frames: int = 0  # of those, frames no GT image matched
    unmatched_instances: int = 0  # instances skipped because their frame matched no GT image
    tasks: set = field(default_factory=set)  # 'bbox', 'segm', 'keypoints' present in results


def ok_frames(output: Output) -> list[dict]:
    """Processed frames (status 'ok') with source, frame, time, width and height."""
    table = output.frames().to_table(
        columns=["source", "frame", "time", "width", "height"], filter=ds.field("status") == "ok"
    )
    return table.to_pylist()


def coco_results(output: Output, gt: Optional[dict] = None, *, min_score: float = 0.0) -> CocoExport:
    """Build COCO results for the instances of `output` with score >= `min_score`.

    gt: a loaded COCO ground truth (`coco_images.load_ground_truth`) to take image ids from.
    """
    frames = ok_frames(output)
    if gt is not None:
        keys = [(f["source"], int(f["frame"]), f["time"] is None) for f in frames]
        image_ids = match_ground_truth(keys, gt)
        matched = set(image_ids.values())
        images = [image for image in gt["images"] if image["id"] in matched]
    else:
        image_ids, images = assign_image_ids(frames)
    export = CocoExport(results=[], images=images, image_ids=image_ids, frames=len(frames),
                        unmatched_frames=len(frames) - len(image_ids))
    scanner = output.instances().scanner(columns=_COLUMNS, filter=ds.field("score") >= min_score)
    for batch in scanner.to_batches():
        for row in batch.to_pylist():
            image_id = image_ids.get((row["source"], row["frame"]))
            if image_id is None:
                export.unmatched_instances += 1
                continue
            export.results.append(_result(row, image_id, export.tasks))
    return export


def _result(row: dict, image_id: int, tasks: set) -> dict:
    x1, y1, x2, y2 = row["x1"], row["y1"], row["x2"], row["y2"]
    result = {
        "image_id": image_id,
        "category_id": row["category_id"],
        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
        "score": round(row["score"], 5),
    }
    tasks.add("bbox")
    if row["mask_rle"] is not None:
        result["segmentation"] = {"size": [row["height"], row["width"]], "counts": row["mask_rle"]}
        tasks.add("segm")
    if row["keypoints"] is not None:
        result["keypoints"] = [round(v, 2) for v in row["keypoints"]]
        result["num_keypoints"] = len(row["keypoints"]) // 3
        tasks.add("keypoints")
    return result


def images_path_for(results_path: str) -> str:
    """Where the images list goes by default: `x.json` -> `x.images.json`."""
    stem = results_path[: -len(".json")] if results_path.endswith(".json") else results_path
    return stem + ".images.json"


def export_coco(output_uri: str, results_uri: str, *, gt_uri: Optional[str] = None,
                images_uri: Optional[str] = None, min_score: float = 0.0) -> CocoExport:
    """Write the COCO results of an output to `results_uri` (local path or object store).

    Without `gt_uri` the assigned images list is written to `images_uri` (default
    `images_path_for(results_uri)`), so the ids mean something outside this run.
    """
    output = open_output(output_uri)
    gt = load_ground_truth(gt_uri) if gt_uri else None
    export = coco_results(output, gt, min_score=min_score)
    write_file(results_uri, json.dumps(export.results).encode())
    if gt is None:
        images = {"images": export.images, "categories": _categories(output)}
        write_file(images_uri or images_path_for(results_uri), json.dumps(images).encode())
    return export


def _categories(output: Output) -> list[dict]:
    """The categories that occur in the output, as COCO `categories` entries."""
    table = output.sql("SELECT DISTINCT category_id, category FROM instances ORDER BY category_id")
    return [{"id": row["category_id"], "name": row["category"]} for row in table.to_pylist()]
