"""The joint model: Mask R-CNN with a keypoint branch, both heads in one forward pass.

The Mask R-CNN paper (He et al., 2017, section 5) trains masks and keypoints together.
torchvision's `RoIHeads` already runs its keypoint branch after the mask branch whenever its
three keypoint parts are set, so the joint model is a `MaskRCNN` whose `roi_heads` also get a
keypoint RoI pooler, head and predictor (as `KeypointRCNN` builds them).
"""

from __future__ import annotations

from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNN
from torchvision.ops import MultiScaleRoIAlign


def add_keypoint_branch(
    model: MaskRCNN, num_keypoints: int, head_layers: tuple[int, ...] = (512,) * 8
) -> MaskRCNN:
    """Gives `model` a keypoint branch predicting `num_keypoints` per instance (in place).

    The branch pools 14x14 features of each detection from the FPN levels, runs the conv
    stack `head_layers` and predicts one heatmap per keypoint (upsampled to 56x56).
    """
    channels = model.backbone.out_channels
    heads = model.roi_heads
    heads.keypoint_roi_pool = MultiScaleRoIAlign(
        featmap_names=["0", "1", "2", "3"], output_size=14, sampling_ratio=2
    )
    heads.keypoint_head = KeypointRCNNHeads(channels, list(head_layers))
    heads.keypoint_predictor = KeypointRCNNPredictor(head_layers[-1], num_keypoints)
    return model
