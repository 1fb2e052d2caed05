"""The detector's input/output transform: torchvision's, with every mask pasted in one go.

`GeneralizedRCNNTransform` normalises and resizes the input images and, after the heads, maps
detections back to each original image: boxes and keypoints are rescaled, masks pasted into
the full frame. `PastingTransform` keeps all of that and only swaps torchvision's per-instance
paste loop for `paste.paste_masks` (same geometry, no host sync per instance).
"""

from __future__ import annotations

from torch import Tensor
from torchvision.models.detection.transform import (
    GeneralizedRCNNTransform,
    resize_boxes,
    resize_keypoints,
)

from maskray.models.paste import paste_masks

# torchvision's ImageNet statistics, which every maskray backbone was (or is) trained with.
IMAGE_MEAN = [0.485, 0.456, 0.406]
IMAGE_STD = [0.229, 0.224, 0.225]


class PastingTransform(GeneralizedRCNNTransform):
    """GeneralizedRCNNTransform(min_size, max_size, mean, std) with a batched mask paste."""

    def __init__(self, min_size: int, max_size: int, image_mean=None, image_std=None, **kwargs):
        super().__init__(min_size, max_size, image_mean or IMAGE_MEAN, image_std or IMAGE_STD,
                         **kwargs)

    def postprocess(self, result: list[dict[str, Tensor]], image_shapes: list[tuple[int, int]],
                    original_image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        if self.training:
            return result
        for detections, resized, original in zip(result, image_shapes, original_image_sizes):
            boxes = resize_boxes(detections["boxes"], resized, original)
            detections["boxes"] = boxes
            if "masks" in detections:
                detections["masks"] = paste_masks(detections["masks"], boxes, *original)
            if "keypoints" in detections:
                detections["keypoints"] = resize_keypoints(detections["keypoints"], resized, original)
        return result
