"""The models maskray knows by name and what each predicts: plain data, no torch.

`get_spec` is all a caller needs to validate a model name (the `maskray submit` driver does,
and stays small because of it); `models.registry.build_model` turns a spec into a network.
"""

from __future__ import annotations

from dataclasses import dataclass

from maskray.models.categories import (
    COCO_CATEGORIES,
    COCO_KEYPOINT_NAMES,
    COCO_PERSON,
    SHAPES_CATEGORIES,
    SHAPES_KEYPOINT_NAMES,
)
from maskray.errors import UsageError

TASKS = ("boxes", "masks", "keypoints")
DEFAULT_VARIANTS = {"roi_op": "align", "mask_loss": "sigmoid", "mask_head": "fcn"}


@dataclass(frozen=True)
class ModelSpec:
    """A named model: what it predicts, its published weights, how it is assembled."""

    name: str
    tasks: tuple[str, ...]  # subset of TASKS
    categories: dict[int, str]  # category id -> name; ids are the model's label indices
    keypoint_names: tuple[str, ...]
    coco_weights: str | None  # torchvision's published file name, None if there is none
    description: str
    min_size: int = 800  # shorter image side the network sees
    max_size: int = 1333  # cap on the longer side
    family: str = "maskrcnn"  # maskrcnn | maskrcnn_v2 | keypointrcnn | joint | compact | null
    backbone: str = "resnet50"
    category_set: str = "coco"  # coco | shapes, for listings
    coco_eps_zero: bool = False  # torchvision's v1 weights expect FrozenBatchNorm eps 0


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "maskrcnn_resnet50_fpn", ("boxes", "masks"), COCO_CATEGORIES, (),
            "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
            "Mask R-CNN R50-FPN, the paper's model (COCO box AP 37.9, mask AP 34.6)",
            coco_eps_zero=True,
        ),
        ModelSpec(
            "maskrcnn_resnet50_fpn_v2", ("boxes", "masks"), COCO_CATEGORIES, (),
            "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
            "Mask R-CNN R50-FPN, improved training recipe (COCO box AP 47.4, mask AP 41.8)",
            family="maskrcnn_v2",
        ),
        ModelSpec(
            "keypointrcnn_resnet50_fpn", ("boxes", "keypoints"), COCO_PERSON, COCO_KEYPOINT_NAMES,
            "keypointrcnn_resnet50_fpn_coco-fc266e95.pth",
            "Keypoint R-CNN R50-FPN, people and 17 keypoints (COCO box AP 54.6, keypoint AP 65.0)",
            family="keypointrcnn", coco_eps_zero=True,
        ),
        ModelSpec(
            "maskkeypointrcnn_resnet50_fpn", TASKS, COCO_CATEGORIES, COCO_KEYPOINT_NAMES, None,
            "Mask R-CNN R50-FPN with a keypoint branch: masks and keypoints in one pass "
            "(train it; no published weights)",
            family="joint",
        ),
        ModelSpec(
            "demo", TASKS, SHAPES_CATEGORIES, SHAPES_KEYPOINT_NAMES, None,
            "small joint mask + keypoint model (compact R18-FPN) trained on synthetic shapes, "
            "shipped as --weights demo",
            min_size=192, max_size=256, family="compact", backbone="resnet18",
            category_set="shapes",
        ),
        ModelSpec(
            "null", ("boxes", "masks"), COCO_CATEGORIES, (), None,
            "detects nothing and computes nothing: measures the pipeline alone",
            family="null",
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The spec of model `name`; UsageError naming the choices for an unknown name."""
    try:
        return MODELS[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None
