"""The allowed values of maskray's model flags, torch-free.

The CLI (click choices, `--help`), job specs and training configs validate against these,
and `models/` builds from them, so a value exists in one place. Importing this module costs
nothing: the driver and `maskray --help` never import torch for it.
"""

from __future__ import annotations

# --backbone: torchvision's ResNet builders of these names (models/backbones.py)
BACKBONES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101", "resnext101_32x8d")
ROI_OPS: tuple[str, ...] = ("align", "pool")  # --roi-op: RoIAlign or RoIPool
MASK_LOSSES: tuple[str, ...] = ("sigmoid", "softmax")  # --mask-loss
MASK_HEADS: tuple[str, ...] = ("fcn", "mlp")  # --mask-head
# --precision -> the torch dtype autocast runs in (None: no autocast); fp16/bf16 need CUDA
PRECISIONS: dict[str, str | None] = {"fp32": None, "fp16": "float16", "bf16": "bfloat16"}
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")  # where a Predictor runs; `--cpu` picks "cpu"
