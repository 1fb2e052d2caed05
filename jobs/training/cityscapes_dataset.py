"""A torch Dataset over a Cityscapes root: `leftImg8bit` pictures with their `gtFine` instances.

Each item is `(image, target)` as torchvision's detection models take them for training, like
`CocoDataset`'s: image float32 (3, H, W) in [0, 1]; target `boxes` (N, 4) x1y1x2y2 in pixels,
`labels` (N,) int64 official label ids (person 24 .. bicycle 33), `masks` (N, H, W) uint8, and
`image_id`. Instances come from each picture's `*_gtFine_instanceIds.png`, or, where a picture
has only its `*_gtFine_polygons.json`, from the official rasterisation of the polygons: the
visible pixels of each instance of the 8 classes. Group regions (`cargroup`, ...) and the
classes the benchmark ignores (caravan, trailer) give no targets, as the official evaluation
scores none of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maskray.errors import UsageError
from maskray.pipeline.cityscapes.files import IMAGES, ground_truth_index
from maskray.pipeline.cityscapes.ground_truth import instance_image
from maskray.pipeline.cityscapes.labels import INSTANCE_LABELS, is_instance, label_of


def cityscapes_targets(instance_ids: np.ndarray, min_pixels: int = 1) -> dict:
    """`boxes`, `labels` and `masks` of the instances in an (H, W) instanceIds array."""
    values = [int(v) for v in np.unique(instance_ids) if is_instance(int(v))]
    masks, boxes, labels = [], [], []
    for value in values:
        mask = instance_ids == value
        if int(mask.sum()) < min_pixels:
            continue
        ys, xs = np.nonzero(mask)
        masks.append(mask.astype(np.uint8))
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        labels.append(label_of(value))
    height, width = instance_ids.shape
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, height, width), dtype=torch.uint8),
    }


class CityscapesDataset(torch.utils.data.Dataset):
    """One split of a Cityscapes root (`train`, `val`, ...) as detection training data.

    Labels are the official label ids, so a model trained on it has `num_classes` 34 and
    categories {24: 'person', ..., 33: 'bicycle'}: its predictions are Cityscapes label ids.
    """

    keypoint_names: list = []
    with_masks, with_keypoints = True, False

    def __init__(self, root, split: str = "train", *, min_pixels: int = 10):
        self.root = Path(root)
        index = ground_truth_index(self.root, [split])
        missing = [files.core for files in index.values() if files.image is None]
        if missing:
            raise UsageError(f"{len(missing)} annotated pictures of {self.root} have no {IMAGES} picture, "
                             f"e.g. {missing[0]}")
        self.split, self.min_pixels = split, min_pixels
        self.pictures = [index[core] for core in sorted(index)]
        self.categories = dict(INSTANCE_LABELS)
        self.images = [{"id": number, "file_name": str(files.image.relative_to(self.root)), "core": files.core}
                       for number, files in enumerate(self.pictures, start=1)]

    def __len__(self) -> int:
        return len(self.pictures)

    def __getitem__(self, index: int):
        files = self.pictures[index]
        with Image.open(files.image) as picture:
            rgb = np.asarray(picture.convert("RGB"))
        instance_ids = instance_image(files)
        if instance_ids.shape != rgb.shape[:2]:
            raise UsageError(f"{files.core}: picture and ground truth differ in size")
        target = cityscapes_targets(instance_ids, self.min_pixels)
        target["image_id"] = self.images[index]["id"]
        tensor = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float().div_(255)
        return tensor, target
