"""ResNet-FPN feature extractors, always built without downloading ImageNet weights.

The ResNets are torchvision's builders of the names in `models.choices.BACKBONES` (the one
list of backbones: add a name there to offer another of torchvision's ResNets).

Two normalisation regimes, following torchvision's detection builders:
- frozen (FrozenBatchNorm2d, stem and layer1 frozen): what COCO weights were trained with;
  used whenever trained weights are loaded.
- trainable (BatchNorm2d, every layer trainable): for training from random initialisation.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from maskray.models.choices import BACKBONES
from maskray.errors import UsageError


def resnet_body(name: str, norm_layer) -> resnet.ResNet:
    """torchvision's ResNet `name` (one of BACKBONES), randomly initialised, with `norm_layer`."""
    if name not in BACKBONES:
        raise UsageError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return getattr(resnet, name)(weights=None, norm_layer=norm_layer)


def stage_channels(body: resnet.ResNet) -> list[int]:
    """The output channels of the ResNet's four stages (1/8, 1/4, 1/2, 1 of its last)."""
    last = body.inplanes
    return [last // 8, last // 4, last // 2, last]


def build_backbone(
    name: str,
    *,
    trainable: bool,
    fpn_channels: int = 256,
    batch_norm_everywhere: bool = False,
) -> BackboneWithFPN:
    """ResNet `name` with an FPN on its four stages (outputs '0'..'3' and 'pool').

    trainable: BatchNorm2d and all stages trainable (True) or FrozenBatchNorm2d with the stem
        and layer1 frozen (False).
    batch_norm_everywhere: BatchNorm2d in the ResNet and in the FPN whatever `trainable` says
        (Mask R-CNN v2's design, arXiv:2111.11429).
    """
    bn = nn.BatchNorm2d if (trainable or batch_norm_everywhere) else misc_nn_ops.FrozenBatchNorm2d
    body = resnet_body(name, bn)
    if not trainable:
        for stage_name in ("conv1", "layer1"):  # as torchvision fine-tunes COCO weights
            getattr(body, stage_name).requires_grad_(False)
    return BackboneWithFPN(
        body,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=stage_channels(body),
        out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=nn.BatchNorm2d if batch_norm_everywhere else None,
    )
