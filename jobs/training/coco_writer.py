"""Writing COCO-format ground truth: images, instances (compressed RLE masks, keypoints).

Used by the synthetic shapes generator; one place that knows COCO's annotation fields.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

SHAPE_NAMES = {1: "circle", 2: "square", 3: "triangle"}
KEYPOINT_NAMES = ["top", "bottom", "left", "right"]


class CocoWriter:
    """Accumulates images and instances into a COCO dictionary with masks as compressed RLE."""

    def __init__(self, categories: dict[int, str] = SHAPE_NAMES, keypoint_names=KEYPOINT_NAMES):
        self.categories, self.keypoint_names = categories, list(keypoint_names)
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add(self, image: dict, instances: list) -> None:
        """Adds an image entry and its instances (`category_id`, `mask` (H, W), `keypoints` (K, 3))."""
        image = dict(image, id=len(self.images) + 1)
        self.images.append(image)
        for instance in instances:
            rle = mask_utils.encode(np.asfortranarray(instance.mask.astype(np.uint8)))
            keypoints = instance.keypoints.reshape(-1).round(2).tolist()
            self.annotations.append({
                "id": len(self.annotations) + 1,
                "image_id": image["id"],
                "category_id": instance.category_id,
                "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
                "area": int(instance.mask.sum()),
                "bbox": [round(float(v), 2) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
                "keypoints": keypoints,
                "num_keypoints": len(self.keypoint_names),
            })
            if getattr(instance, "track_id", None) is not None:  # video ground truth: one id per object
                self.annotations[-1]["track_id"] = int(instance.track_id)

    def to_dict(self) -> dict:
        return {
            "info": {"description": "maskray synthetic shapes"},
            "images": self.images,
            "annotations": self.annotations,
            "categories": [
                {"id": cid, "name": name, "supercategory": "shape",
                 "keypoints": list(self.keypoint_names), "skeleton": []}
                for cid, name in self.categories.items()
            ],
        }


def merge_coco(first: dict, second: dict) -> dict:
    """One COCO dictionary holding both inputs, with image and annotation ids renumbered."""
    merged = {"info": first.get("info", {}), "categories": first["categories"], "images": [], "annotations": []}
    for part in (first, second):
        image_ids = {}
        for image in part["images"]:
            image_ids[image["id"]] = len(merged["images"]) + 1
            merged["images"].append(dict(image, id=image_ids[image["id"]]))
        for annotation in part["annotations"]:
            merged["annotations"].append(dict(annotation, id=len(merged["annotations"]) + 1,
                                              image_id=image_ids[annotation["image_id"]]))
    return merged
