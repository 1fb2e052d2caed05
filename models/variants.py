"""The Mask R-CNN paper's design switches (He et al., 2017, table 2), applied to a built model.

- roi_op: "align" (RoIAlign: bilinear sampling at exact positions) or "pool" (RoIPool: box
  corners rounded to the feature grid, max over quantised bins), for every RoI feature
  extractor of the model (box, mask and, where present, keypoint heads).
- mask_loss: "sigmoid" (binary cross-entropy on the ground-truth class's mask only, classes do
  not compete) or "softmax" (a softmax over all classes at each pixel with a multinomial
  cross-entropy, background being class 0; inference reads the predicted class's softmax).
- mask_head: "fcn" (convolutions + deconvolution, spatial layout kept) or "mlp" (fully
  connected layers over the flattened RoI feature, predicting a 28x28 mask per class).
torchvision's `MaskRCNN` gives the defaults (align, sigmoid, fcn); `apply_variants` swaps parts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign, roi_align, roi_pool

from maskray.models.choices import MASK_HEADS, MASK_LOSSES, ROI_OPS  # noqa: F401 (re-exported)
from maskray.models.errors import UsageError


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


def _replace_roi_ops(heads: RoIHeads) -> None:
    for name in ("box_roi_pool", "mask_roi_pool", "keypoint_roi_pool"):
        pooler = getattr(heads, name, None)
        if isinstance(pooler, MultiScaleRoIAlign):
            size = pooler.output_size[0] if isinstance(pooler.output_size, (tuple, list)) else pooler.output_size
            setattr(heads, name, MultiScaleRoIPool(pooler.featmap_names, int(size),
                                                   pooler.canonical_scale, pooler.canonical_level))


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


def _replace_mask_head(model: nn.Module) -> None:
    heads = model.roi_heads
    num_classes = _mask_classes(heads.mask_predictor)
    pooled = heads.mask_roi_pool.output_size
    pooled = pooled[0] if isinstance(pooled, (tuple, list)) else pooled
    channels = model.backbone.out_channels
    hidden = 1024 if channels >= 256 else 4 * channels  # the paper's fc 1024 at FPN width 256
    heads.mask_head = MLPMaskHead(channels, int(pooled), hidden)
    heads.mask_predictor = MLPMaskPredictor(hidden, num_classes)


def _mask_classes(predictor: nn.Module) -> int:
    last = [m for m in predictor.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))][-1]
    return last.out_channels if not isinstance(last, nn.Linear) else predictor.num_classes


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


class SoftmaxMaskRoIHeads(RoIHeads):
    """torchvision's RoIHeads with the mask branch run here, under a softmax over classes.

    The box and keypoint branches stay torchvision's; the mask branch is hidden from the parent
    (`has_mask` is False during its forward) and run afterwards on the same sampled RoIs.
    """

    _hide_mask = False
    _sampled = None

    def has_mask(self) -> bool:
        return not self._hide_mask and super().has_mask()

    def select_training_samples(self, proposals, targets):
        sampled = super().select_training_samples(proposals, targets)
        self._sampled = sampled  # proposals, matched_idxs, labels, regression_targets
        return sampled

    def forward(self, features, proposals, image_shapes, targets=None):
        self._hide_mask = True
        try:
            result, losses = super().forward(features, proposals, image_shapes, targets)
        finally:
            self._hide_mask = False
        if self.training:
            sampled, self._sampled = self._sampled, None
            boxes, matched, labels = [], [], []
            for props, idx, lab in zip(sampled[0], sampled[1], sampled[2]):
                positive = torch.nonzero(lab > 0).squeeze(1)
                boxes.append(props[positive])
                matched.append(idx[positive])
            logits = self._mask_logits(features, boxes, image_shapes)
            losses["loss_mask"] = softmax_mask_loss(
                logits, boxes, [t["masks"] for t in targets], [t["labels"] for t in targets], matched)
            return result, losses
        boxes = [r["boxes"] for r in result]
        logits = self._mask_logits(features, boxes, image_shapes)
        labels = torch.cat([r["labels"] for r in result]) if result else torch.zeros(0, dtype=torch.int64)
        chosen = logits.softmax(dim=1)[torch.arange(len(labels), device=labels.device), labels]
        for r, probabilities in zip(result, chosen.split([len(b) for b in boxes])):
            r["masks"] = probabilities[:, None]
        return result, losses

    def _mask_logits(self, features, boxes, image_shapes) -> torch.Tensor:
        return self.mask_predictor(self.mask_head(self.mask_roi_pool(features, boxes, image_shapes)))


def apply_variants(model: nn.Module, *, roi_op: str = "align", mask_loss: str = "sigmoid",
                   mask_head: str = "fcn") -> nn.Module:
    """Switches a torchvision Mask R-CNN (in place) to the given variants; returns it.

    Call on a freshly built model: the mlp head has its own (untrained) parameters.
    """
    for value, name, choices in ((roi_op, "roi_op", ROI_OPS), (mask_loss, "mask_loss", MASK_LOSSES),
                                 (mask_head, "mask_head", MASK_HEADS)):
        if value not in choices:
            raise UsageError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    heads = model.roi_heads
    needs_mask = mask_loss != "sigmoid" or mask_head != "fcn"
    if needs_mask and not heads.has_mask():
        raise UsageError("--mask-loss softmax and --mask-head mlp need a model with a mask head")
    if mask_head == "mlp":
        _replace_mask_head(model)
    if roi_op == "pool":
        _replace_roi_ops(heads)
    if mask_loss == "softmax":
        heads.__class__ = SoftmaxMaskRoIHeads
    return model
