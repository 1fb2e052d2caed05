"""Export instances as a COCO results file (the list `COCO.loadRes` and COCOeval read).

Each instance becomes `{image_id, category_id, bbox [x, y, w, h], score, segmentation
{size: [h, w], counts}, keypoints [x, y, score, ...], num_keypoints}` (segmentation and
keypoints when the model predicts them). Image ids come from a ground truth's `images`
(matched by `coco_images.match_ground_truth`) or, without one, are assigned 1.. in
(source, frame) order, and the matching `images` list is written beside the results.

`CocoExporter` streams the results list source by source; `coco_results` builds it in memory
for `maskray eval`, which scores it there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import pyarrow.dataset as ds

from maskray.pipeline.coco.matching import FrameKey, assign_image_ids, load_ground_truth, match_ground_truth
from maskray.pipeline.export.exporter import Exporter, Option
from maskray.pipeline.export.files import StreamedFile
from maskray.pipeline.output.reader import Output, write_file

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


class CocoExporter(Exporter):
    """DEST: the results JSON file; without `gt`, the images list beside it (or at `images`)."""

    name = "coco"
    options = (Option("gt", "COCO annotations whose images give the image ids"),
               Option("images", "without gt: where the assigned images list goes"))

    def open(self, dest: str) -> None:
        self.dest = dest
        frames = [{"source": s, "frame": f.frame, "time": f.time, "width": f.width, "height": f.height}
                  for s, rows in self.context.frames.items() for f in rows]
        self.gt = load_ground_truth(self.settings["gt"]) if self.settings.get("gt") else None
        if self.gt is not None:
            self.image_ids = match_ground_truth([(f["source"], f["frame"], f["time"] is None) for f in frames], self.gt)
            matched = set(self.image_ids.values())
            self.images = [image for image in self.gt["images"] if image["id"] in matched]
        else:
            self.image_ids, self.images = assign_image_ids(frames)
        self.unmatched_frames = len(frames) - len(self.image_ids)
        self.results = self.unmatched_instances = 0
        self.tasks: set = set()
        self.file = StreamedFile(dest)
        self.file.write("[")

    def write_source(self, source, frames, instances) -> None:
        for row in instances.to_pylist():
            image_id = self.image_ids.get((row["source"], row["frame"]))
            if image_id is None:
                self.unmatched_instances += 1
                continue
            self.file.write(("," if self.results else "") + json.dumps(_result(row, image_id, self.tasks)))
            self.results += 1

    def close(self) -> list[str]:
        self.file.write("]")
        self.file.commit()
        lines = [f"wrote {self.results} results on {len(self.images)} images to {self.dest}"]
        if self.gt is None:
            images_uri = self.settings.get("images") or images_path_for(self.dest)
            categories = [{"id": i, "name": n} for i, n in self.context.categories.items()]
            write_file(images_uri, json.dumps({"images": self.images, "categories": categories}).encode())
            lines.append(f"wrote the images list to {images_uri}")
        elif self.unmatched_frames:
            lines.append(f"!skipped {self.unmatched_instances} instances on {self.unmatched_frames} frames "
                         f"that match no image of {self.settings['gt']}")
        return lines
