"""A torch Dataset over any COCO-format dataset: an images folder and an annotations JSON.

Each item is `(image, target)` as torchvision's detection models take them for training:
image float32 (3, H, W) in [0, 1]; target `boxes` (N, 4) x1y1x2y2, `labels` (N,) int64 category
ids, `masks` (N, H, W) uint8 where the JSON has
segmentations, `keypoints` (N, K, 3) where it has keypoints, and `image_id`. Crowd regions
and degenerate boxes are skipped. Video-frame entries (with `source` and `frame`) are decoded
from the video file named by `source`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from maskray.errors import UsageError
from maskray.pipeline.inputs.errors import DecodeError
from maskray.pipeline.inputs.video import build_index, decode_segment


def _segmentation_mask(segmentation, height: int, width: int) -> np.ndarray:
    """A (H, W) uint8 mask from COCO polygons, uncompressed RLE or compressed RLE."""
    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = dict(segmentation, counts=segmentation["counts"].encode("ascii")
                   if isinstance(segmentation["counts"], str) else segmentation["counts"])
    return mask_utils.decode(rle).astype(np.uint8)


def _video_frame(path: Path, frame: int) -> np.ndarray:
    """Frame `frame` of a video, numbered as a job numbers it (0-based, presentation order,
    display rotation applied: `pipeline/inputs/video.py`), so `(source, frame)` from an output
    names the same picture here."""
    index = _video_index(str(path))
    if not index.first_frame <= frame < index.end_frame:
        raise UsageError(f"{path} has no frame {frame}")
    for decoded in decode_segment(str(path), index, frame, frame + 1, [frame], max_pixels=None):
        return decoded.rgb
    raise UsageError(f"{path} has no frame {frame}")


@functools.lru_cache(maxsize=16)
def _video_index(path: str):
    try:
        return build_index(path)
    except DecodeError as error:
        raise UsageError(f"cannot read video {path}: {error}") from None


class CocoDataset(torch.utils.data.Dataset):
    """COCO images and their instances as detection training targets.

    Labels are the category ids themselves (as torchvision's COCO models have them), so a
    model trained on it needs `num_classes = max category id + 1`.
    """

    def __init__(self, images_dir, annotations_json, *, with_masks: bool = True,
                 with_keypoints: bool = True, skip_empty: bool = False):
        self.images_dir = Path(images_dir)
        path = Path(annotations_json)
        if not path.is_file():
            raise UsageError(f"annotations file not found: {path}")
        if not self.images_dir.is_dir():
            raise UsageError(f"images folder not found: {self.images_dir}")
        try:
            data = json.loads(path.read_text())
            categories = sorted(data["categories"], key=lambda c: c["id"])
            images = data["images"]
        except (ValueError, KeyError, TypeError) as error:
            raise UsageError(f"{path} is not COCO-format JSON ({error})") from None
        self.categories = {int(c["id"]): c["name"] for c in categories}
        self.keypoint_names = next((list(c["keypoints"]) for c in categories if c.get("keypoints")), [])
        self._annotations: dict[int, list[dict]] = {int(image["id"]): [] for image in images}
        for annotation in data.get("annotations", []):
            if annotation.get("iscrowd", 0) or annotation["image_id"] not in self._annotations:
                continue
            x, y, w, h = annotation["bbox"]
            if w >= 1 and h >= 1:
                self._annotations[annotation["image_id"]].append(annotation)
        self.images = [image for image in images if self._annotations[int(image["id"])] or not skip_empty]
        has = [a for anns in self._annotations.values() for a in anns]
        self.with_masks = with_masks and bool(has) and all("segmentation" in a for a in has)
        self.with_keypoints = (with_keypoints and bool(self.keypoint_names) and bool(has)
                               and all(a.get("keypoints") for a in has))
        if not self.images:
            raise UsageError(f"{path} lists no images")

    def __len__(self) -> int:
        return len(self.images)

    def _load_rgb(self, image: dict) -> np.ndarray:
        if "source" in image and "frame" in image:
            return _video_frame(self.images_dir / image["source"], int(image["frame"]))
        with Image.open(self.images_dir / image["file_name"]) as picture:
            return np.asarray(picture.convert("RGB"))

    def __getitem__(self, index: int):
        image = self.images[index]
        rgb = self._load_rgb(image)
        height, width = rgb.shape[:2]
        annotations = self._annotations[int(image["id"])]
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                               a["bbox"][1] + a["bbox"][3]] for a in annotations],
                             dtype=torch.float32).reshape(-1, 4)
        target = {
            "boxes": boxes,
            "labels": torch.tensor([a["category_id"] for a in annotations],
                                   dtype=torch.int64),
            "image_id": int(image["id"]),
        }
        if self.with_masks:
            masks = [_segmentation_mask(a["segmentation"], height, width) for a in annotations]
            target["masks"] = torch.from_numpy(np.stack(masks)) if masks else torch.zeros(
                (0, height, width), dtype=torch.uint8)
        if self.with_keypoints:
            k = len(self.keypoint_names)
            target["keypoints"] = torch.tensor([a["keypoints"] for a in annotations],
                                               dtype=torch.float32).reshape(-1, k, 3)
        tensor = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float().div_(255)
        return tensor, target


def collate(batch):
    """Detection batches are lists: images differ in size and instance counts."""
    return tuple(zip(*batch))
