"""`build_model`: a model name (`models.catalog`) and weights into a ready network.

The network itself comes from the builder the model's catalog entry names, imported here on
first use; this module adds what every model shares: the recipe (classes, keypoints, backbone,
the paper's switches), the weights, their checks and the seed. A built model carries
`maskray_spec` (its spec, with the categories and keypoints it really predicts) and
`maskray_recipe` (what `weights.make_checkpoint` saves beside the weights).
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import replace

import torch
from torch import nn
from torchvision.ops import misc as misc_nn_ops

from maskray.errors import UsageError, WeightsError
from maskray.models.catalog import MODELS, ModelSpec, get_spec
from maskray.models.choices import BACKBONES
from maskray.models.predictor_config import PRE_NMS_TOP
from maskray.models.recipe import Recipe
from maskray.models.variants import check_variants
from maskray.models.weights import load_weights


def build_model(
    name: str,
    weights: str = "none",
    *,
    seed: int = 0,
    min_size: int | None = None,
    max_size: int | None = None,
    score_threshold: float = 0.05,
    max_instances: int = 100,
    proposals: int | None = None,
    pre_nms_top: int | None = PRE_NMS_TOP,
    candidate_filter=None,
    num_classes: int | None = None,
    categories: dict[int, str] | None = None,
    keypoint_names: tuple[str, ...] | list[str] | None = None,
    backbone: str | None = None,
    roi_op: str = "align",
    mask_loss: str = "sigmoid",
    mask_head: str = "fcn",
    weights_data: bytes | None = None,
    weights_sha256: str | None = None,
) -> tuple[nn.Module, str]:
    """Model `name` with `weights` (coco | none | demo | PATH), in eval mode, on the CPU.

    A maskray checkpoint's recipe (backbone, variants, classes, keypoints) overrides `name`
    and the architecture arguments, so a trained model loads from its file alone.
    `num_classes` counts the background class 0 (default: largest category id + 1).
    `proposals`: region proposals per image at inference; fewer is faster (default: the
    architecture's own, 1000 for the COCO models).
    `pre_nms_top`: box x class candidates per image entering the box NMS (None: all of them,
    torchvision's way; see models/roi_heads.py).
    `candidate_filter`: `keep(labels, scores)` applied before that cap and the NMS (the classes
    and per-class thresholds of `models.class_filter`); None keeps every class.
    `weights_data`: the file's bytes when they were fetched elsewhere (a job's driver), checked
    against `weights_sha256`; `weights` then only says what they are (coco, demo, a location).
    Returns (model, weights_id); `weights_id` identifies the weights in every output.
    """
    spec = get_spec(name)
    if weights == "demo":
        spec = MODELS["demo"]  # the demo weights only fit the demo model
    sizes = dict(
        min_size=min_size or spec.min_size,
        max_size=max_size or spec.max_size,
        score_threshold=score_threshold,
        max_instances=max_instances,
        proposals=proposals,
        pre_nms_top=pre_nms_top,
        candidate_filter=candidate_filter,
    )
    if pre_nms_top is not None and pre_nms_top < 1:
        raise UsageError(f"pre-NMS top must be at least 1, got {pre_nms_top}")
    variants = dict(roi_op=roi_op, mask_loss=mask_loss, mask_head=mask_head)
    if not spec.has_weights:  # built as it is: --weights does not apply
        recipe = _recipe(spec, num_classes, categories, keypoint_names, backbone, variants)
        model = _build(spec, recipe, trainable=False, **sizes).eval()
        model.maskray_spec, model.maskray_recipe = spec, recipe
        return model, spec.name
    loaded = load_weights(weights, model=spec.name, coco_file=spec.coco_weights, seed=seed,
                          data=weights_data, sha256=weights_sha256)
    if loaded.recipe is not None:
        recipe = loaded.recipe
        if recipe.model not in MODELS or not MODELS[recipe.model].has_weights:
            raise WeightsError(
                f"{loaded.source}: checkpoint names unknown model {recipe.model!r}"
            )
        spec = MODELS[recipe.model]
        # A checkpoint written before a shape field existed gets the field's default.
        recipe = replace(recipe, extra={**copy.deepcopy(spec.extra_recipe), **recipe.extra})
        sizes["min_size"] = min_size or spec.min_size
        sizes["max_size"] = max_size or spec.max_size
    else:
        recipe = _recipe(spec, num_classes, categories, keypoint_names, backbone, variants)
    if recipe.backbone not in BACKBONES:
        choices = ", ".join(BACKBONES)
        raise UsageError(f"unknown backbone {recipe.backbone!r}; choose one of: {choices}")
    if loaded.kind == "coco" and recipe.backbone != spec.backbone:
        raise WeightsError(
            f"COCO weights of {spec.name} are for backbone {spec.backbone}, not {recipe.backbone}"
        )

    # Random initialisation and BatchNorm state dicts get trainable BatchNorm; trained
    # FrozenBatchNorm weights (torchvision's COCO v1) get the frozen setup they expect.
    trainable = loaded.state_dict is None or any(
        k.startswith("backbone.body.") and k.endswith("num_batches_tracked")
        for k in loaded.state_dict
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # `none` weights are the same for the same seed
        model = _build(spec, recipe, trainable=trainable, **sizes)
    if loaded.state_dict is not None:
        _load_state_dict(model, loaded.state_dict, loaded.source, spec, recipe)
    if loaded.kind == "coco" and spec.coco_eps_zero:
        for module in model.modules():
            if isinstance(module, misc_nn_ops.FrozenBatchNorm2d):
                module.eps = 0.0
    model.eval()
    model.maskray_spec = replace(
        spec, categories=dict(recipe.categories), keypoint_names=tuple(recipe.keypoint_names),
        tasks=tuple(t for t in spec.tasks if t != "keypoints" or recipe.keypoint_names),
    )
    model.maskray_recipe = recipe
    return model, loaded.weights_id


def _build(spec: ModelSpec, recipe: Recipe, *, trainable: bool, min_size: int, max_size: int,
           score_threshold: float, max_instances: int, proposals, pre_nms_top, candidate_filter
           ) -> nn.Module:
    """The network of `recipe` from the builder of `spec` (interface: models/catalog.py)."""
    try:
        check_variants(recipe.roi_op, recipe.mask_loss, recipe.mask_head)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if (recipe.mask_loss, recipe.mask_head) != ("sigmoid", "fcn") and "masks" not in spec.tasks:
        raise UsageError("--mask-loss softmax and --mask-head mlp need a model with a mask head")
    heads = dict(score_thresh=score_threshold, detections_per_img=max_instances,
                 pre_nms_top=pre_nms_top, candidate_filter=candidate_filter,
                 mask_loss=recipe.mask_loss)
    return builder_of(spec)(recipe, trainable=trainable, min_size=min_size, max_size=max_size,
                            proposals=proposals, heads=heads)


def builder_of(spec: ModelSpec):
    """The builder function of `spec`: the function itself, or imported from "module:function"."""
    if callable(spec.builder):
        return spec.builder
    module, _, function = spec.builder.partition(":")
    return getattr(importlib.import_module(module), function)


def _recipe(spec, num_classes, categories, keypoint_names, backbone, variants) -> Recipe:
    """The recipe of `spec` with the caller's overrides."""
    if categories is None:
        categories = spec.categories
        if num_classes is not None:
            categories = {k: v for k, v in categories.items() if k < num_classes}
    categories = {int(k): str(v) for k, v in categories.items()}
    if num_classes is None:
        num_classes = max(categories, default=0) + 1
    if num_classes < 2 or any(not 0 < k < num_classes for k in categories):
        raise UsageError(
            f"num_classes {num_classes} must exceed every category id (1..) and be >= 2"
        )
    if keypoint_names is not None and "keypoints" not in spec.tasks:
        raise UsageError(f"model {spec.name} has no keypoint head; keypoint names do not apply")
    names = tuple(spec.keypoint_names if keypoint_names is None else keypoint_names)
    # A model whose keypoint branch is required refuses no names in its builder.
    return Recipe(spec.name, backbone or spec.backbone, num_classes, categories, names,
                  extra=copy.deepcopy(spec.extra_recipe), **variants)


def _load_state_dict(model, state_dict, source, spec, recipe) -> None:
    """Loads strictly; a mismatch becomes one line saying what did not fit."""
    expected = model.state_dict()
    tracked = "num_batches_tracked"  # BatchNorm counters: harmless either way
    missing = [k for k in expected if k not in state_dict and not k.endswith(tracked)]
    unexpected = [k for k in state_dict if k not in expected and not k.endswith(tracked)]
    wrong_shape = [
        k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong_shape:
        problems = [
            f"{len(found)} {what} (e.g. {found[0]})"
            for what, found in (("missing", missing), ("unexpected", unexpected),
                                ("of another shape", wrong_shape))
            if found
        ]
        raise WeightsError(
            f"{source} does not fit {spec.name} (backbone {recipe.backbone}, "
            f"{recipe.num_classes} classes incl. background): tensors " + "; ".join(problems)
        )
    filtered = {k: v for k, v in state_dict.items() if k in expected}
    model.load_state_dict(filtered, strict=False)
