"""The builders of the ResNet-FPN models of `models/catalog.py`, one function per architecture.

All are `GeneralizedRCNN`s assembled from parts (models/detector.py) with torchvision's
state-dict names (so torchvision's published weights load as they are):
- `mask_rcnn`: Mask R-CNN (He et al., 2017) with a ResNet-FPN backbone;
- `mask_rcnn_v2`: Mask R-CNN with the improved recipe of arXiv:2111.11429 (BatchNorm in the
  FPN and heads, a 4-conv box head, a 2-conv RPN head);
- `keypoint_rcnn`: boxes + person keypoints;
- `mask_keypoint_rcnn`: Mask R-CNN with a keypoint branch too, both heads in one forward pass
  (the Mask R-CNN paper, section 5, trains masks and keypoints together).
Each takes the paper's switches (roi_op, mask_loss, mask_head: models/variants.py) and
`pre_nms_top` (models/roi_heads.py) from the recipe and `heads`. The builder's interface is
described in models/catalog.py. Parts are created in the order torchvision's builders create
them, so that random weights of a seed are the ones torchvision's own constructors would draw.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.detection.faster_rcnn import (
    FastRCNNConvFCHead,
    FastRCNNPredictor,
    TwoMLPHead,
)
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

from maskray.errors import UsageError
from maskray.models.backbones import build_backbone
from maskray.models.detector import build_detector, keypoint_parts, rpn_parts, standard_anchors
from maskray.models.roi_heads import DetectionRoIHeads
from maskray.models.variants import mask_parts, roi_pooler

LEVELS = ["0", "1", "2", "3"]  # the FPN levels RoIs are pooled from


def mask_rcnn(recipe, *, trainable: bool, min_size: int, max_size: int, proposals, heads: dict
              ) -> GeneralizedRCNN:
    """Mask R-CNN: box and mask heads on a ResNet-FPN (torchvision's maskrcnn_resnet50_fpn)."""
    backbone = build_backbone(recipe.backbone, trainable=trainable)
    rpn, parts = _mask_rcnn_parts(recipe, backbone.out_channels)
    return _detector(backbone, rpn, parts, heads, min_size, max_size, proposals)


def mask_rcnn_v2(recipe, *, trainable: bool, min_size: int, max_size: int, proposals, heads: dict
                 ) -> GeneralizedRCNN:
    """Mask R-CNN v2: BatchNorm throughout, a 4-conv box head, a 2-conv RPN head."""
    backbone = build_backbone(recipe.backbone, trainable=trainable, batch_norm_everywhere=True)
    channels = backbone.out_channels
    parts = dict(box_roi_pool=roi_pooler(recipe.roi_op, LEVELS, 7),
                 mask_roi_pool=roi_pooler(recipe.roi_op, LEVELS, 14))
    rpn = rpn_parts(channels, standard_anchors(), conv_depth=2)
    parts["box_head"] = FastRCNNConvFCHead((channels, 7, 7), [256] * 4, [1024],
                                           norm_layer=nn.BatchNorm2d)
    parts.update(_mask(recipe, channels, norm=nn.BatchNorm2d))
    parts["box_predictor"] = FastRCNNPredictor(1024, recipe.num_classes)
    return _detector(backbone, rpn, parts, heads, min_size, max_size, proposals)


def keypoint_rcnn(recipe, *, trainable: bool, min_size: int, max_size: int, proposals,
                  heads: dict) -> GeneralizedRCNN:
    """Keypoint R-CNN: box and keypoint heads (torchvision's keypointrcnn_resnet50_fpn)."""
    backbone = build_backbone(recipe.backbone, trainable=trainable)
    channels = backbone.out_channels
    parts = dict(box_roi_pool=roi_pooler(recipe.roi_op, LEVELS, 7), **_keypoints(recipe, channels))
    rpn = rpn_parts(channels, standard_anchors())
    parts.update(_two_mlp_box_head(recipe, channels))
    return _detector(backbone, rpn, parts, heads, min_size, max_size, proposals)


def mask_keypoint_rcnn(recipe, *, trainable: bool, min_size: int, max_size: int, proposals,
                       heads: dict) -> GeneralizedRCNN:
    """Mask R-CNN with a keypoint branch: masks and keypoints in one forward pass."""
    backbone = build_backbone(recipe.backbone, trainable=trainable)
    rpn, parts = _mask_rcnn_parts(recipe, backbone.out_channels)
    parts.update(_keypoints(recipe, backbone.out_channels))  # the joint model's branch comes last
    return _detector(backbone, rpn, parts, heads, min_size, max_size, proposals)


def _mask_rcnn_parts(recipe, channels: int) -> tuple:
    """Mask R-CNN's RPN, RoI pools, mask head and two-layer box head, made in this order (a seeded
    `--weights none` model's initial values depend on it)."""
    parts = dict(box_roi_pool=roi_pooler(recipe.roi_op, LEVELS, 7),
                 mask_roi_pool=roi_pooler(recipe.roi_op, LEVELS, 14),
                 **_mask(recipe, channels))
    rpn = rpn_parts(channels, standard_anchors())
    parts.update(_two_mlp_box_head(recipe, channels))
    return rpn, parts


def _mask(recipe, channels: int, norm=None) -> dict:
    return mask_parts(recipe.mask_head, channels, [256] * 4, recipe.num_classes, norm_layer=norm)


def _keypoints(recipe, channels: int) -> dict:
    if not recipe.keypoint_names:
        raise UsageError(f"model {recipe.model} needs at least one keypoint name")
    return keypoint_parts(recipe.roi_op, LEVELS, channels, [512] * 8, len(recipe.keypoint_names))


def _two_mlp_box_head(recipe, channels: int) -> dict:
    return {"box_head": TwoMLPHead(channels * 7 * 7, 1024),
            "box_predictor": FastRCNNPredictor(1024, recipe.num_classes)}


def _detector(backbone, rpn: dict, parts: dict, heads: dict, min_size: int, max_size: int,
              proposals) -> GeneralizedRCNN:
    test = (1000, 1000) if proposals is None else (proposals, proposals)
    return build_detector(backbone, rpn, DetectionRoIHeads(**parts, **heads),
                          min_size=min_size, max_size=max_size, proposals_test=test)
