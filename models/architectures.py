"""Assembles a detection network from a model's spec and recipe (no weights involved).

Four families, all torchvision `GeneralizedRCNN`s with identical state-dict names to
torchvision's own builders (so torchvision's published weights load as they are):
- "maskrcnn": Mask R-CNN (He et al., 2017) with a ResNet-FPN backbone;
- "maskrcnn_v2": Mask R-CNN with the improved recipe of arXiv:2111.11429 (BatchNorm in the
  FPN and heads, a 4-conv box head, a 2-conv RPN head);
- "keypointrcnn": boxes + person keypoints;
- "joint": Mask R-CNN with a keypoint branch too (see joint.py);
- "compact": the small joint model of compact.py (the demo), shaped by the recipe's extra
  fields.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead
from torchvision.models.detection.keypoint_rcnn import KeypointRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads
from torchvision.models.detection.rpn import RPNHead

from maskray.models.backbones import build_backbone
from maskray.models.compact import COMPACT_DEFAULTS, build_compact
from maskray.models.errors import UsageError
from maskray.models.joint import add_keypoint_branch


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
) -> nn.Module:
    """Network for `spec.family` with `recipe`'s backbone, classes and keypoints.

    trainable: BatchNorm2d and a fully trainable backbone (random initialisation) rather
        than torchvision's frozen-BatchNorm fine-tuning setup (trained weights).
    proposals: region proposals kept per image at inference (None: the family's default).
    """
    detection_args = dict(
        min_size=min_size,
        max_size=max_size,
        box_score_thresh=score_threshold,
        box_detections_per_img=max_instances,
    )
    if proposals is not None:
        # Region proposals per image (and per FPN level before NMS) at inference: the
        # RoI heads' cost is proportional to this.
        detection_args.update(rpn_pre_nms_top_n_test=proposals, rpn_post_nms_top_n_test=proposals)
    if spec.family == "compact":
        return _compact(recipe, trainable, detection_args)
    v2 = spec.family == "maskrcnn_v2"
    backbone = build_backbone(recipe.backbone, trainable=trainable, batch_norm_everywhere=v2)
    channels = backbone.out_channels
    if spec.family == "keypointrcnn":
        return KeypointRCNN(
            backbone,
            num_classes=recipe.num_classes,
            num_keypoints=len(recipe.keypoint_names),
            **detection_args,
        )
    if v2:
        anchors = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
        model = MaskRCNN(
            backbone,
            num_classes=recipe.num_classes,
            rpn_anchor_generator=anchors,
            rpn_head=RPNHead(channels, anchors.num_anchors_per_location()[0], conv_depth=2),
            box_head=FastRCNNConvFCHead(
                (channels, 7, 7), [256] * 4, [1024], norm_layer=nn.BatchNorm2d
            ),
            mask_head=MaskRCNNHeads(channels, [256] * 4, 1, norm_layer=nn.BatchNorm2d),
            **detection_args,
        )
        return model
    # "maskrcnn" and "joint": the paper's heads.
    model = MaskRCNN(backbone, num_classes=recipe.num_classes, **detection_args)
    if spec.family == "joint":
        add_keypoint_branch(model, len(recipe.keypoint_names))
    return model


def _compact(recipe, trainable: bool, detection_args: dict) -> nn.Module:
    shape = {**COMPACT_DEFAULTS, **{k: v for k, v in recipe.extra.items() if k in COMPACT_DEFAULTS}}
    try:
        return build_compact(
            recipe.backbone,
            recipe.num_classes,
            len(recipe.keypoint_names),
            trainable=trainable,
            **shape,
            **detection_args,
        )
    except (KeyError, ValueError) as error:
        raise UsageError(f"cannot build a compact {recipe.backbone} model: {error}") from None

