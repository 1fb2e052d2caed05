"""A two-stage detector assembled from its parts, as torchvision's `GeneralizedRCNN` takes them.

torchvision's `MaskRCNN` / `KeypointRCNN` constructors build their RoI heads and transform
themselves; maskray needs its own of both (`roi_heads.DetectionRoIHeads`,
`transform.PastingTransform`), so it composes `GeneralizedRCNN(backbone, rpn, roi_heads,
transform)` directly. Submodule names (and so state-dict keys) are torchvision's, so
torchvision's published weights load as they are.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from maskray.models.transform import PastingTransform
from maskray.models.variants import roi_pooler


def standard_anchors(sizes=(32, 64, 128, 256, 512)) -> AnchorGenerator:
    """One anchor size per FPN level, three aspect ratios each (torchvision's default)."""
    return AnchorGenerator(tuple((int(s),) for s in sizes), ((0.5, 1.0, 2.0),) * len(sizes))


def rpn_parts(channels: int, anchors: AnchorGenerator, conv_depth: int = 1) -> dict[str, nn.Module]:
    """The RPN's anchor generator and head (`conv_depth` 3x3 convs, 2 in Mask R-CNN v2)."""
    head = RPNHead(channels, anchors.num_anchors_per_location()[0], conv_depth=conv_depth)
    return {"anchor_generator": anchors, "head": head}


def keypoint_parts(roi_op: str, levels: list[str], channels: int, layers: list[int],
                   num_keypoints: int) -> dict[str, nn.Module]:
    """RoI pooler (14x14), conv stack and heatmap predictor of a keypoint branch."""
    return {
        "keypoint_roi_pool": roi_pooler(roi_op, levels, 14),
        "keypoint_head": KeypointRCNNHeads(channels, layers),
        "keypoint_predictor": KeypointRCNNPredictor(layers[-1], num_keypoints),
    }


def build_detector(backbone: nn.Module, rpn: dict[str, nn.Module], roi_heads: nn.Module, *,
                   min_size: int, max_size: int, proposals_train: tuple[int, int] = (2000, 2000),
                   proposals_test: tuple[int, int] = (1000, 1000)) -> GeneralizedRCNN:
    """The detector: `backbone`, a region proposal network of `rpn` parts, `roi_heads`.

    proposals_train / proposals_test: (per FPN level before NMS, per image after NMS).
    The RPN's other settings are torchvision's defaults (Faster R-CNN paper's).
    """
    network = RegionProposalNetwork(
        rpn["anchor_generator"], rpn["head"], fg_iou_thresh=0.7, bg_iou_thresh=0.3,
        batch_size_per_image=256, positive_fraction=0.5,
        pre_nms_top_n={"training": proposals_train[0], "testing": proposals_test[0]},
        post_nms_top_n={"training": proposals_train[1], "testing": proposals_test[1]},
        nms_thresh=0.7, score_thresh=0.0,
    )
    return GeneralizedRCNN(backbone, network, roi_heads, PastingTransform(min_size, max_size))
