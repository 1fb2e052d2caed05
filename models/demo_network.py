"""The demo network: a small joint Mask R-CNN (boxes, masks, keypoints) fast enough for CPUs.

The embedded `demo` model must ship in the repository (<= 20 MB) and run a job in seconds on
two cores, so it trims the standard R-FPN design where the synthetic shapes allow it:
- ResNet `backbone` cut after `stages` stages (resnet18 to layer3 keeps 2.8M of its 11.7M
  parameters; layer4 holds most of them and the shapes need no stride-32 semantics),
- an FPN of `fpn_channels` channels on those stages plus a max-pooled level,
- a two-layer box head of `box_head_size`, and mask / keypoint conv stacks of
  `head_channels` x `head_layers`.
Every choice is a recipe field (the `demo` entry's `extra_recipe` in models/catalog.py gives
their values), so a checkpoint rebuilds its network from the file alone.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from maskray.errors import UsageError
from maskray.models.backbones import resnet_body, stage_channels
from maskray.models.detector import build_detector, keypoint_parts, rpn_parts, standard_anchors
from maskray.models.roi_heads import DetectionRoIHeads
from maskray.models.variants import mask_parts, roi_pooler

# The recipe fields (in `recipe.extra`) that shape the network; values: the catalog's entry.
SHAPE_FIELDS = ("stages", "fpn_channels", "box_head_size", "head_channels", "head_layers",
                "anchor_sizes")


def cut_backbone(name: str, stages: int, fpn_channels: int, trainable: bool) -> BackboneWithFPN:
    """ResNet `name` cut after `stages` stages, with an FPN; outputs '0'..str(stages-1), 'pool'.

    trainable: BatchNorm2d (training from random initialisation) or FrozenBatchNorm2d
    (inference; loads the same state dict, whose num_batches_tracked entries are optional).
    """
    norm = nn.BatchNorm2d if trainable else misc_nn_ops.FrozenBatchNorm2d
    body = resnet_body(name, norm)
    return BackboneWithFPN(
        body,
        return_layers={f"layer{i + 1}": str(i) for i in range(stages)},
        in_channels_list=stage_channels(body)[:stages],
        out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool(),
    )


def demo_network(recipe, *, trainable: bool, min_size: int, max_size: int, proposals,
                 heads: dict) -> GeneralizedRCNN:
    """The demo network of `recipe` (its shape in `recipe.extra`); the builder of the `demo`
    entry (interface: models/catalog.py). A recipe without keypoint names leaves the keypoint
    branch out (training data without keypoints)."""
    try:
        shape = {name: recipe.extra[name] for name in SHAPE_FIELDS}
        return _network(recipe, trainable, min_size, max_size, proposals, heads, **shape)
    except (KeyError, ValueError) as error:
        raise UsageError(f"cannot build the demo network on {recipe.backbone}: {error}") from None


def _network(recipe, trainable: bool, min_size: int, max_size: int, proposals, heads: dict, *,
             stages: int, fpn_channels: int, box_head_size: int, head_channels: int,
             head_layers: int, anchor_sizes) -> GeneralizedRCNN:
    """proposals: region proposals per image at inference (default 150). Training samples
    fewer proposals and RoIs than torchvision's defaults, for CPU speed."""
    body = cut_backbone(recipe.backbone, stages, fpn_channels, trainable)
    levels = [str(i) for i in range(stages)]
    if len(anchor_sizes) != stages + 1:
        raise ValueError(f"need {stages + 1} anchor sizes (one per FPN level), got {len(anchor_sizes)}")
    roi_op, num_classes, layers = recipe.roi_op, recipe.num_classes, [head_channels] * head_layers
    parts = dict(
        box_roi_pool=roi_pooler(roi_op, levels, 7),
        box_head=TwoMLPHead(fpn_channels * 7 * 7, box_head_size),
        box_predictor=FastRCNNPredictor(box_head_size, num_classes),
        mask_roi_pool=roi_pooler(roi_op, levels, 14),
        **mask_parts(recipe.mask_head, fpn_channels, layers, num_classes),
    )
    rpn = rpn_parts(fpn_channels, standard_anchors(anchor_sizes))  # after the heads, as before
    if recipe.keypoint_names:
        parts.update(keypoint_parts(roi_op, levels, fpn_channels, layers, len(recipe.keypoint_names)))
    roi_heads = DetectionRoIHeads(**parts, batch_size_per_image=64, **heads)
    test = (300, 150) if proposals is None else (proposals, proposals)
    return build_detector(body, rpn, roi_heads, min_size=min_size, max_size=max_size,
                          proposals_train=(600, 300), proposals_test=test)
