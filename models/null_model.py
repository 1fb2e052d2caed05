"""The `null` model: detects nothing, computes nothing.

It measures everything around the model (decoding, batching, Arrow, Parquet, Ray
scheduling) at the speed of the pipeline alone.
"""

from __future__ import annotations

import torch
from torch import nn


class NullModel(nn.Module):
    """Returns zero instances for every image, in torchvision's detection output format."""

    detects_nothing = True  # a Predictor answers without moving frames to the model at all

    def forward(self, images: list[torch.Tensor], targets=None) -> list[dict[str, torch.Tensor]]:
        outputs = []
        for image in images:
            _, height, width = image.shape
            outputs.append(
                {
                    "boxes": torch.zeros((0, 4), device=image.device),
                    "labels": torch.zeros((0,), dtype=torch.int64, device=image.device),
                    "scores": torch.zeros((0,), device=image.device),
                    "masks": torch.zeros((0, 1, height, width), device=image.device),
                }
            )
        return outputs


def null_model(recipe, **_settings) -> NullModel:
    """The builder of the `null` entry (models/catalog.py): sizes and heads do not apply."""
    return NullModel()
