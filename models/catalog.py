"""The models maskray knows by name: what each predicts and the function that builds it.

Plain data, no torch: `get_spec` is all a caller needs to validate a model name (the `maskray
submit` driver does, and stays small because of it). Each entry names its builder as
"module:function" (imported only when a network is built, by `models.build.build_model`), so a
new architecture is one entry here plus one builder function (docs/extending.md).

A builder is called as `builder(recipe, *, trainable, min_size, max_size, proposals, heads)`
and returns an `nn.Module` in torchvision's detection interface (a list of CHW float images in,
a list of {"boxes", "labels", "scores", ["masks"], ["keypoints", "keypoints_scores"]} out):
- recipe: `models.recipe.Recipe` (backbone, classes, keypoint names, the paper's switches,
  and in `recipe.extra` the entry's `extra_recipe` fields);
- trainable: BatchNorm2d and every layer trainable (random initialisation) rather than the
  frozen-BatchNorm set-up trained weights expect;
- proposals: region proposals kept per image at inference (None: the builder's default);
- heads: the settings of `models.roi_heads.DetectionRoIHeads` (score_thresh,
  detections_per_img, pre_nms_top, candidate_filter, mask_loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Union

from maskray.errors import UsageError
from maskray.models.categories import (
    COCO_CATEGORIES,
    COCO_KEYPOINT_NAMES,
    COCO_PERSON,
    SHAPES_CATEGORIES,
    SHAPES_KEYPOINT_NAMES,
)

TASKS = ("boxes", "masks", "keypoints")


@dataclass(frozen=True)
class ModelSpec:
    """A named model: what it predicts, its published weights, the function that builds it."""

    name: str
    tasks: tuple[str, ...]  # subset of TASKS
    categories: dict[int, str]  # category id -> name; ids are the model's label indices
    keypoint_names: tuple[str, ...]
    coco_weights: str | None  # torchvision's published file name, None if there is none
    description: str
    builder: Union[str, Callable]  # "module:function" (imported when built) or the function
    min_size: int = 800  # shorter image side the network sees
    max_size: int = 1333  # cap on the longer side
    backbone: str = "resnet50"
    category_set: str = "coco"  # coco | shapes, for listings
    coco_eps_zero: bool = False  # torchvision's v1 weights expect FrozenBatchNorm eps 0
    has_weights: bool = True  # False: built as it is, whatever --weights says (the null model)
    # Recipe fields beyond the common ones that shape this architecture; written into every
    # checkpoint, so a file alone rebuilds its network.
    extra_recipe: dict = field(default_factory=dict)
    ablation_backbones: tuple[str, str] = ("resnet50", "resnet101")  # `maskray ablate backbone`


_ARCHITECTURES = "maskray.models.architectures"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "maskrcnn_resnet50_fpn", ("boxes", "masks"), COCO_CATEGORIES, (),
            "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
            "Mask R-CNN R50-FPN, the paper's model (COCO box AP 37.9, mask AP 34.6)",
            f"{_ARCHITECTURES}:mask_rcnn", coco_eps_zero=True,
        ),
        ModelSpec(
            "maskrcnn_resnet50_fpn_v2", ("boxes", "masks"), COCO_CATEGORIES, (),
            "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
            "Mask R-CNN R50-FPN, improved training recipe (COCO box AP 47.4, mask AP 41.8)",
            f"{_ARCHITECTURES}:mask_rcnn_v2",
        ),
        ModelSpec(
            "keypointrcnn_resnet50_fpn", ("boxes", "keypoints"), COCO_PERSON, COCO_KEYPOINT_NAMES,
            "keypointrcnn_resnet50_fpn_coco-fc266e95.pth",
            "Keypoint R-CNN R50-FPN, people and 17 keypoints (COCO box AP 54.6, keypoint AP 65.0)",
            f"{_ARCHITECTURES}:keypoint_rcnn", coco_eps_zero=True,
        ),
        ModelSpec(
            "maskkeypointrcnn_resnet50_fpn", TASKS, COCO_CATEGORIES, COCO_KEYPOINT_NAMES, None,
            "Mask R-CNN R50-FPN with a keypoint branch: masks and keypoints in one pass "
            "(train it; no published weights)",
            f"{_ARCHITECTURES}:mask_keypoint_rcnn",
        ),
        ModelSpec(
            "demo", TASKS, SHAPES_CATEGORIES, SHAPES_KEYPOINT_NAMES, None,
            "small joint mask + keypoint model (R18-FPN cut after 3 stages) trained on "
            "synthetic shapes, shipped as --weights demo",
            "maskray.models.demo_network:demo_network",
            min_size=192, max_size=256, backbone="resnet18", category_set="shapes",
            extra_recipe={"stages": 3, "fpn_channels": 64, "box_head_size": 256,
                          "head_channels": 64, "head_layers": 4, "anchor_sizes": [16, 32, 64, 128]},
            ablation_backbones=("resnet18", "resnet34"),  # its own depth at CPU cost
        ),
        ModelSpec(
            "null", ("boxes", "masks"), COCO_CATEGORIES, (), None,
            "detects nothing and computes nothing: measures the pipeline alone",
            "maskray.models.null_model:null_model", has_weights=False,
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The spec of model `name`; UsageError naming the choices for an unknown name."""
    try:
        return MODELS[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None
