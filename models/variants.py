"""The Mask R-CNN paper's design switches (He et al., 2017, table 2), as parts to build with.

- roi_op: "align" (RoIAlign: bilinear sampling at exact positions) or "pool" (RoIPool: box
  corners rounded to the feature grid, max over quantised bins), for every RoI feature
  extractor of the model (box, mask and, where present, keypoint heads): `roi_pooler`.
- mask_loss: "sigmoid" (binary cross-entropy on the ground-truth class's mask only, classes do
  not compete) or "softmax" (a softmax over all classes at each pixel with a multinomial
  cross-entropy, background being class 0; inference reads the predicted class's softmax):
  `softmax_mask_loss`, chosen by `roi_heads.DetectionRoIHeads(mask_loss=...)`.
- mask_head: "fcn" (convolutions + deconvolution, spatial layout kept) or "mlp" (fully
  connected layers over the flattened RoI feature, predicting a 28x28 mask per class):
  `mask_parts`.
Each is a constructor argument of the network (models/architectures.py), as torchvision's
detectors take their pooler and heads; torchvision's defaults are align, sigmoid, fcn.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign, roi_align, roi_pool

from maskray.models.choices import MASK_HEADS, MASK_LOSSES, ROI_OPS  # noqa: F401 (re-exported)


class MultiScaleRoIPool(nn.Module):
    """RoIPool over FPN levels: each box goes to the level of its size (FPN paper, eq. 1).

    forward(features {name: (B, C, H_l, W_l)}, boxes [ (K_i, 4) per image ], image_shapes)
    -> (sum K_i, C, output_size, output_size). Unlike RoIAlign, box coordinates are rounded to
    the level's grid and bins are quantised, the misalignment RoIAlign removes.
    """

    def __init__(self, featmap_names: list[str], output_size: int,
                 canonical_scale: int = 224, canonical_level: int = 4):
        super().__init__()
        self.featmap_names = list(featmap_names)
        self.output_size = (output_size, output_size)
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def forward(self, features: dict, boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]]):
        maps = [features[name] for name in self.featmap_names]
        tallest = max(shape[0] for shape in image_shapes)
        # A level's stride is the power of two nearest its height relative to the images'.
        scales = [2.0 ** round(math.log2(m.shape[-2] / tallest)) for m in maps]
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
        pooled = maps[0].new_zeros((len(rois), maps[0].shape[1], *self.output_size))
        if len(rois) == 0:
            return pooled
        levels = self._levels(rois[:, 1:], scales)
        for index, (feature, scale) in enumerate(zip(maps, scales)):
            chosen = torch.nonzero(levels == index).squeeze(1)
            if len(chosen):
                pooled[chosen] = roi_pool(feature, rois[chosen], self.output_size, scale).to(pooled.dtype)
        return pooled

    def _levels(self, boxes: torch.Tensor, scales: list[float]) -> torch.Tensor:
        """Index into the levels for each box: larger boxes read coarser maps."""
        finest, coarsest = -math.log2(scales[0]), -math.log2(scales[-1])
        size = ((boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)).sqrt()
        level = torch.floor(self.canonical_level + torch.log2(size / self.canonical_scale + 1e-6))
        return (level.clamp(finest, coarsest) - finest).to(torch.int64)


class MLPMaskHead(nn.Module):
    """Flattened RoI feature (N, C, S, S) -> two fully connected layers -> (N, hidden)."""

    def __init__(self, in_channels: int, pooled_size: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(in_channels * pooled_size * pooled_size, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))


class MLPMaskPredictor(nn.Module):
    """(N, hidden) -> mask logits (N, num_classes, size, size), one fc output per pixel."""

    def __init__(self, hidden: int, num_classes: int, size: int = 28):
        super().__init__()
        self.num_classes, self.size = num_classes, size
        self.mask_fc_logits = nn.Linear(hidden, num_classes * size * size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mask_fc_logits(x).view(-1, self.num_classes, self.size, self.size)


def softmax_mask_loss(mask_logits: torch.Tensor, proposals: list[torch.Tensor], gt_masks: list[torch.Tensor],
                      gt_labels: list[torch.Tensor], matched: list[torch.Tensor]) -> torch.Tensor:
    """Multinomial per-pixel loss: each pixel of an RoI is its object's class or background 0.

    mask_logits (N, num_classes, M, M) for the positive RoIs of all images; proposals, matched
    (ground-truth index of each positive RoI) per image; gt_masks (G_i, H, W) per image.
    """
    size = mask_logits.shape[-1]
    targets = []
    for boxes, masks, labels, index in zip(proposals, gt_masks, gt_labels, matched):
        rois = torch.cat([index[:, None].to(boxes.dtype), boxes], dim=1)
        inside = roi_align(masks[:, None].to(boxes.dtype), rois, (size, size), 1.0)[:, 0] >= 0.5
        targets.append(inside.long() * labels[index][:, None, None])
    if mask_logits.numel() == 0 or not targets:
        return mask_logits.sum() * 0
    return F.cross_entropy(mask_logits, torch.cat(targets))


def check_variants(roi_op: str, mask_loss: str, mask_head: str) -> None:
    """ValueError naming the choices for an unknown switch value."""
    for value, name, choices in ((roi_op, "roi_op", ROI_OPS), (mask_loss, "mask_loss", MASK_LOSSES),
                                 (mask_head, "mask_head", MASK_HEADS)):
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


def roi_pooler(roi_op: str, featmap_names: list[str], output_size: int) -> nn.Module:
    """RoI feature extractor over FPN levels: RoIAlign (sampling ratio 2) or RoIPool."""
    if roi_op == "pool":
        return MultiScaleRoIPool(featmap_names, output_size)
    return MultiScaleRoIAlign(featmap_names, output_size=output_size, sampling_ratio=2)


def mask_parts(mask_head: str, channels: int, layers: list[int], num_classes: int,
               pooled_size: int = 14, norm_layer=None) -> dict[str, nn.Module]:
    """`mask_head` and `mask_predictor` of the chosen kind for RoI features of `channels`.

    fcn: torchvision's conv stack `layers` and a deconvolution predictor (28x28 masks).
    mlp: two fully connected layers (1024 wide at FPN width 256, as in the paper) and one fc
    output per mask pixel.
    """
    if mask_head == "mlp":
        hidden = 1024 if channels >= 256 else 4 * channels
        return {"mask_head": MLPMaskHead(channels, pooled_size, hidden),
                "mask_predictor": MLPMaskPredictor(hidden, num_classes)}
    return {"mask_head": MaskRCNNHeads(channels, layers, 1, norm_layer=norm_layer),
            "mask_predictor": MaskRCNNPredictor(layers[-1], layers[-1], num_classes)}
