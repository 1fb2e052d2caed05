"""Assembles a detection network from a model's spec and recipe (no weights involved).

Five families, all `GeneralizedRCNN`s assembled from parts (models/detector.py) with
torchvision's state-dict names (so torchvision's published weights load as they are):
- "maskrcnn": Mask R-CNN (He et al., 2017) with a ResNet-FPN backbone;
- "maskrcnn_v2": Mask R-CNN with the improved recipe of arXiv:2111.11429 (BatchNorm in the
  FPN and heads, a 4-conv box head, a 2-conv RPN head);
- "keypointrcnn": boxes + person keypoints;
- "joint": Mask R-CNN with a keypoint branch too, both heads in one forward pass (the Mask
  R-CNN paper, section 5, trains masks and keypoints together);
- "compact": the small joint model of compact.py (the demo), shaped by the recipe's extra
  fields.
Every family takes the paper's switches (roi_op, mask_loss, mask_head: models/variants.py)
and `pre_nms_top` (models/roi_heads.py) as constructor arguments of its parts.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.detection.faster_rcnn import (
    FastRCNNConvFCHead,
    FastRCNNPredictor,
    TwoMLPHead,
)

from maskray.models.backbones import build_backbone
from maskray.models.compact import COMPACT_DEFAULTS, build_compact
from maskray.models.detector import build_detector, keypoint_parts, rpn_parts, standard_anchors
from maskray.errors import UsageError
from maskray.models.roi_heads import PRE_NMS_TOP, DetectionRoIHeads
from maskray.models.variants import check_variants, mask_parts, roi_pooler

LEVELS = ["0", "1", "2", "3"]  # the FPN levels RoIs are pooled from


def build_architecture(
    spec,
    recipe,
    *,
    trainable: bool,
    min_size: int,
    max_size: int,
    score_threshold: float,
    max_instances: int,
    proposals: int | None = None,
    pre_nms_top: int | None = PRE_NMS_TOP,
    candidate_filter=None,
) -> nn.Module:
    """Network for `spec.family` with `recipe`'s backbone, classes, keypoints and switches.

    trainable: BatchNorm2d and a fully trainable backbone (random initialisation) rather
        than torchvision's frozen-BatchNorm fine-tuning setup (trained weights).
    proposals: region proposals kept per image at inference (None: the family's default).
    pre_nms_top: box x class candidates per image entering the NMS (None: all).
    candidate_filter: which classes and scores may enter the NMS (models/roi_heads.py).
    """
    try:
        check_variants(recipe.roi_op, recipe.mask_loss, recipe.mask_head)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if recipe.mask_loss != "sigmoid" or recipe.mask_head != "fcn":
        if "masks" not in spec.tasks:
            raise UsageError("--mask-loss softmax and --mask-head mlp need a model with a mask head")
    heads = dict(score_thresh=score_threshold, detections_per_img=max_instances,
                 pre_nms_top=pre_nms_top, candidate_filter=candidate_filter, mask_loss=recipe.mask_loss)
    if spec.family == "compact":
        return _compact(recipe, trainable, min_size, max_size, proposals, heads)
    v2 = spec.family == "maskrcnn_v2"
    backbone = build_backbone(recipe.backbone, trainable=trainable, batch_norm_everywhere=v2)
    channels = backbone.out_channels
    norm = nn.BatchNorm2d if v2 else None  # Mask R-CNN v2 normalises its heads too
    # Parts are created in the order torchvision's builders create them, so that random
    # weights of a seed are the ones torchvision's own constructors would draw.
    parts = dict(box_roi_pool=roi_pooler(recipe.roi_op, LEVELS, 7))
    if "masks" in spec.tasks:
        parts["mask_roi_pool"] = roi_pooler(recipe.roi_op, LEVELS, 14)
    if v2:
        rpn = rpn_parts(channels, standard_anchors(), conv_depth=2)
        parts["box_head"] = FastRCNNConvFCHead((channels, 7, 7), [256] * 4, [1024],
                                               norm_layer=norm)
        parts.update(_mask(recipe, channels, norm))
    else:
        if "masks" in spec.tasks:
            parts.update(_mask(recipe, channels, norm))
        elif "keypoints" in spec.tasks:
            parts.update(_keypoints(recipe, channels))
        rpn = rpn_parts(channels, standard_anchors())
        parts["box_head"] = TwoMLPHead(channels * 7 * 7, 1024)
    parts["box_predictor"] = FastRCNNPredictor(1024, recipe.num_classes)
    if "keypoints" in spec.tasks and "masks" in spec.tasks:
        parts.update(_keypoints(recipe, channels))  # the joint model's branch comes last
    test = (1000, 1000) if proposals is None else (proposals, proposals)
    return build_detector(backbone, rpn, DetectionRoIHeads(**parts, **heads),
                          min_size=min_size, max_size=max_size, proposals_test=test)


def _mask(recipe, channels: int, norm) -> dict:
    return mask_parts(recipe.mask_head, channels, [256] * 4, recipe.num_classes, norm_layer=norm)


def _keypoints(recipe, channels: int) -> dict:
    return keypoint_parts(recipe.roi_op, LEVELS, channels, [512] * 8, len(recipe.keypoint_names))


def _compact(recipe, trainable: bool, min_size: int, max_size: int, proposals, heads: dict):
    shape = {**COMPACT_DEFAULTS, **{k: v for k, v in recipe.extra.items() if k in COMPACT_DEFAULTS}}
    try:
        return build_compact(
            recipe.backbone,
            recipe.num_classes,
            len(recipe.keypoint_names),
            trainable=trainable,
            min_size=min_size,
            max_size=max_size,
            proposals=proposals,
            roi_op=recipe.roi_op,
            mask_head=recipe.mask_head,
            heads=heads,
            **shape,
        )
    except (KeyError, ValueError) as error:
        raise UsageError(f"cannot build a compact {recipe.backbone} model: {error}") from None
