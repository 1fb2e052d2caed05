"""A compact joint Mask R-CNN (boxes, masks, keypoints) small and fast enough for CPUs.

The embedded `demo` model must ship in the repository (<= 20 MB) and run a job in seconds on
two cores, so it trims the standard R-FPN design where the synthetic shapes allow it:
- ResNet `backbone` cut after `stages` stages (resnet18 to layer3 keeps 2.8M of its 11.7M
  parameters; layer4 holds most of them and the shapes need no stride-32 semantics),
- an FPN of `fpn_channels` channels on those stages plus a max-pooled level,
- a two-layer box head of `box_head_size`, and mask / keypoint conv stacks of
  `head_channels` x `head_layers`.
Every choice is a recipe field (see `COMPACT_DEFAULTS`), so a checkpoint rebuilds itself.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from maskray.models.detector import build_detector, keypoint_parts, rpn_parts, standard_anchors
from maskray.models.roi_heads import DetectionRoIHeads
from maskray.models.variants import mask_parts, roi_pooler

# Recipe fields (beside model/backbone/num_classes/...) that shape a compact model.
COMPACT_DEFAULTS = {
    "stages": 3,
    "fpn_channels": 64,
    "box_head_size": 256,
    "head_channels": 64,
    "head_layers": 4,
    "anchor_sizes": [16, 32, 64, 128],
}

_RESNETS = {"resnet18": resnet.resnet18, "resnet34": resnet.resnet34, "resnet50": resnet.resnet50,
            "resnet101": resnet.resnet101, "resnext101_32x8d": resnet.resnext101_32x8d}


def compact_backbone(name: str, stages: int, fpn_channels: int, trainable: bool) -> BackboneWithFPN:
    """ResNet `name` cut after `stages` stages, with an FPN; outputs '0'..str(stages-1), 'pool'.

    trainable: BatchNorm2d (training from random initialisation) or FrozenBatchNorm2d
    (inference; loads the same state dict, whose num_batches_tracked entries are optional).
    """
    norm = nn.BatchNorm2d if trainable else misc_nn_ops.FrozenBatchNorm2d
    body = _RESNETS[name](weights=None, norm_layer=norm)
    widths = [64, 128, 256, 512] if name in ("resnet18", "resnet34") else [256, 512, 1024, 2048]
    return BackboneWithFPN(
        body,
        return_layers={f"layer{i + 1}": str(i) for i in range(stages)},
        in_channels_list=widths[:stages],
        out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool(),
    )


def build_compact(
    backbone: str,
    num_classes: int,
    num_keypoints: int,
    *,
    trainable: bool = False,
    min_size: int = 192,
    max_size: int = 256,
    proposals: int | None = None,
    roi_op: str = "align",
    mask_head: str = "fcn",
    heads: dict | None = None,
    stages: int = 3,
    fpn_channels: int = 64,
    box_head_size: int = 256,
    head_channels: int = 64,
    head_layers: int = 4,
    anchor_sizes=(16, 32, 64, 128),
) -> GeneralizedRCNN:
    """A joint Mask R-CNN with keypoints; `num_keypoints=0` leaves the keypoint branch out.

    proposals: region proposals per image at inference (default 150).
    roi_op, mask_head: the paper's switches (models/variants.py).
    heads: DetectionRoIHeads settings (score_thresh, detections_per_img, pre_nms_top, mask_loss).
    Training samples fewer proposals and RoIs than torchvision's defaults, for CPU speed.
    """
    body = compact_backbone(backbone, stages, fpn_channels, trainable)
    levels = [str(i) for i in range(stages)]
    if len(anchor_sizes) != stages + 1:
        raise ValueError(f"need {stages + 1} anchor sizes (one per FPN level), got {len(anchor_sizes)}")
    parts = dict(
        box_roi_pool=roi_pooler(roi_op, levels, 7),
        box_head=TwoMLPHead(fpn_channels * 7 * 7, box_head_size),
        box_predictor=FastRCNNPredictor(box_head_size, num_classes),
        mask_roi_pool=roi_pooler(roi_op, levels, 14),
        **mask_parts(mask_head, fpn_channels, [head_channels] * head_layers, num_classes),
    )
    rpn = rpn_parts(fpn_channels, standard_anchors(anchor_sizes))  # after the heads, as before
    if num_keypoints:
        parts.update(keypoint_parts(roi_op, levels, fpn_channels, [head_channels] * head_layers,
                                    num_keypoints))
    roi_heads = DetectionRoIHeads(**parts, batch_size_per_image=64, **(heads or {}))
    test = (300, 150) if proposals is None else (proposals, proposals)
    return build_detector(body, rpn, roi_heads, min_size=min_size, max_size=max_size,
                          proposals_train=(600, 300), proposals_test=test)
