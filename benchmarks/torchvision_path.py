"""The same network with torchvision's own post-processing, for comparisons.

`torchvision_twin(model)` shares every part (and so every weight) of a model built by
`maskray.models.build.build_model`, but runs torchvision's stock `RoIHeads` (every
candidate above the score threshold into NMS) and `GeneralizedRCNNTransform` (masks pasted
one at a time). The benchmark's reference loop runs it; tests compare maskray's path to it.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.transform import GeneralizedRCNNTransform


def torchvision_twin(model: nn.Module) -> GeneralizedRCNN:
    """A GeneralizedRCNN over `model`'s backbone, RPN and heads with torchvision's classes."""
    heads = model.roi_heads
    if getattr(heads, "mask_loss", "sigmoid") != "sigmoid":
        raise ValueError("torchvision's RoIHeads only infer masks with the sigmoid mask loss")
    sampler = heads.fg_bg_sampler
    stock_heads = RoIHeads(
        heads.box_roi_pool, heads.box_head, heads.box_predictor,
        heads.proposal_matcher.high_threshold, heads.proposal_matcher.low_threshold,
        sampler.batch_size_per_image, sampler.positive_fraction, heads.box_coder.weights,
        heads.score_thresh, heads.nms_thresh, heads.detections_per_img,
        mask_roi_pool=heads.mask_roi_pool, mask_head=heads.mask_head,
        mask_predictor=heads.mask_predictor, keypoint_roi_pool=heads.keypoint_roi_pool,
        keypoint_head=heads.keypoint_head, keypoint_predictor=heads.keypoint_predictor,
    )
    transform = model.transform
    stock_transform = GeneralizedRCNNTransform(
        transform.min_size, transform.max_size, transform.image_mean, transform.image_std,
        size_divisible=transform.size_divisible, fixed_size=transform.fixed_size,
    )
    twin = GeneralizedRCNN(model.backbone, model.rpn, stock_heads, stock_transform)
    return twin.train(model.training)
