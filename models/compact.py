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
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

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
    stages: int = 3,
    fpn_channels: int = 64,
    box_head_size: int = 256,
    head_channels: int = 64,
    head_layers: int = 4,
    anchor_sizes=(16, 32, 64, 128),
    **detector_kwargs,
) -> MaskRCNN:
    """A joint Mask R-CNN with keypoints; `num_keypoints=0` leaves the keypoint branch out.

    detector_kwargs go to torchvision's MaskRCNN (box_score_thresh, box_detections_per_img...).
    Training samples fewer proposals and RoIs than torchvision's defaults, for CPU speed.
    """
    body = compact_backbone(backbone, stages, fpn_channels, trainable)
    levels = [str(i) for i in range(stages)]
    if len(anchor_sizes) != stages + 1:
        raise ValueError(f"need {stages + 1} anchor sizes (one per FPN level), got {len(anchor_sizes)}")
    anchors = AnchorGenerator(tuple((int(s),) for s in anchor_sizes), ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    box_pool = MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2)
    settings = dict(
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=150,
        box_batch_size_per_image=64,
    )
    settings.update(detector_kwargs)
    model = MaskRCNN(
        body,
        num_classes=None,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        box_roi_pool=box_pool,
        box_head=TwoMLPHead(fpn_channels * 7 * 7, box_head_size),
        box_predictor=FastRCNNPredictor(box_head_size, num_classes),
        mask_roi_pool=MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(fpn_channels, [head_channels] * head_layers, 1),
        mask_predictor=MaskRCNNPredictor(head_channels, head_channels, num_classes),
        **settings,
    )
    if num_keypoints:
        heads = model.roi_heads
        heads.keypoint_roi_pool = MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2)
        heads.keypoint_head = KeypointRCNNHeads(fpn_channels, [head_channels] * head_layers)
        heads.keypoint_predictor = KeypointRCNNPredictor(head_channels, num_keypoints)
    return model
