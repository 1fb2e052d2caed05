"""The model catalog, builders and weights: names, seeded `none`, files, checkpoints, `coco` cache, CLI."""

import hashlib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torchvision.ops.misc import FrozenBatchNorm2d

from maskray import cli
from maskray.models.categories import (
    COCO_CATEGORIES,
    COCO_KEYPOINT_NAMES,
    COCO_SKELETON,
    SHAPES_CATEGORIES,
    SHAPES_KEYPOINT_NAMES,
)
from maskray.errors import UsageError, WeightsError
from maskray.models.build import build_model
from maskray.models.catalog import MODELS, get_spec
from maskray.models.weights import coco_weights_cached, demo_weights_present, save_checkpoint

COCO_FILE = "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache: `coco` weights are whatever the test puts there."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def demo_model():
    return build_model("demo", "none", min_size=128, max_size=256)[0]


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_categories_follow_coco():
    assert len(COCO_CATEGORIES) == 80
    assert COCO_CATEGORIES[1] == "person" and COCO_CATEGORIES[90] == "toothbrush"
    assert 12 not in COCO_CATEGORIES and COCO_CATEGORIES[13] == "stop sign"
    assert len(COCO_KEYPOINT_NAMES) == 17 and COCO_KEYPOINT_NAMES[0] == "nose"
    assert all(1 <= a <= 17 and 1 <= b <= 17 for a, b in COCO_SKELETON)
    assert SHAPES_CATEGORIES == {1: "circle", 2: "square", 3: "triangle"}
    assert SHAPES_KEYPOINT_NAMES == ("top", "bottom", "left", "right")


def test_catalog_names_and_unknown_name():
    assert set(MODELS) == {
        "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "keypointrcnn_resnet50_fpn",
        "maskkeypointrcnn_resnet50_fpn", "demo", "null",
    }
    assert get_spec("demo").keypoint_names == SHAPES_KEYPOINT_NAMES
    assert get_spec("maskkeypointrcnn_resnet50_fpn").tasks == ("boxes", "masks", "keypoints")
    with pytest.raises(UsageError) as raised:
        get_spec("yolo")
    assert "yolo" in str(raised.value) and "maskrcnn_resnet50_fpn_v2" in str(raised.value)


def test_every_catalog_entry_names_a_builder_that_imports():
    from maskray.models.build import builder_of

    for spec in MODELS.values():
        assert callable(builder_of(spec)), spec.name


def test_a_model_registered_with_its_builder_function_is_built_like_any_other(monkeypatch):
    """A catalog entry may hold the function itself: the recipe, seed and checks still apply."""
    from dataclasses import replace

    from maskray.models.demo_network import demo_network

    calls = []

    def counted(recipe, **settings):
        calls.append(recipe.model)
        return demo_network(recipe, **settings)

    spec = replace(get_spec("demo"), name="demo_counted", builder=counted)
    monkeypatch.setitem(MODELS, spec.name, spec)
    model, weights_id = build_model("demo_counted", "none", seed=0, min_size=128, max_size=160)
    assert calls == ["demo_counted"] and weights_id == "none:seed0"
    assert model.maskray_spec.name == "demo_counted" and model.maskray_recipe.extra["stages"] == 3
    reference, _ = build_model("demo", "none", seed=0)
    assert same_state(model.state_dict(), reference.state_dict())


def test_none_weights_are_reproducible_per_seed(demo_model):
    again, weights_id = build_model("demo", "none", seed=0)
    other, _ = build_model("demo", "none", seed=1)
    assert weights_id == "none:seed0"
    assert same_state(demo_model.state_dict(), again.state_dict())
    assert not same_state(demo_model.state_dict(), other.state_dict())
    assert not demo_model.training


def test_plain_state_dict_loads_by_path(demo_model, tmp_path):
    path = tmp_path / "demo-state.pt"
    torch.save(demo_model.state_dict(), path)
    loaded, weights_id = build_model("demo", str(path))
    assert weights_id == "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert same_state(demo_model.state_dict(), loaded.state_dict())


def test_checkpoint_rebuilds_its_recipe(tmp_path):
    trained, _ = build_model(
        "maskrcnn_resnet50_fpn", "none", backbone="resnet18", categories=SHAPES_CATEGORIES, seed=3
    )
    path = tmp_path / "shapes.pt"
    save_checkpoint(trained, path)
    raw = torch.load(path, weights_only=True)
    assert raw["maskray_checkpoint"] == 1
    assert raw["recipe"]["categories"] == {"1": "circle", "2": "square", "3": "triangle"}
    assert raw["recipe"]["backbone"] == "resnet18" and raw["recipe"]["num_classes"] == 4

    # The recipe wins over the name given: the file alone says what it is.
    loaded, weights_id = build_model("maskrcnn_resnet50_fpn_v2", str(path))
    assert weights_id.startswith("file:")
    assert loaded.maskray_spec.name == "maskrcnn_resnet50_fpn"
    assert loaded.maskray_spec.categories == SHAPES_CATEGORIES
    assert loaded.maskray_recipe.backbone == "resnet18"
    assert same_state(trained.state_dict(), loaded.state_dict())


def test_checkpoint_keeps_training_variants_and_loads_from_a_uri(tmp_path):
    trained, _ = build_model("demo", "none", roi_op="pool", mask_loss="softmax", mask_head="mlp")
    path = tmp_path / "variant.pt"
    save_checkpoint(trained, path)
    loaded, _ = build_model("demo", path.as_uri())  # file://..., read through pyarrow.fs
    recipe = loaded.maskray_recipe
    assert (recipe.roi_op, recipe.mask_loss, recipe.mask_head) == ("pool", "softmax", "mlp")
    assert recipe.extra == trained.maskray_recipe.extra  # the demo network's shape fields
    assert same_state(trained.state_dict(), loaded.state_dict())
    with pytest.raises(UsageError):
        build_model("demo", "none", roi_op="bogus")


def test_variants_are_constructor_arguments_not_patches():
    """Each switch builds its own parts into one RoI heads class (no class swapped later)."""
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
    from torchvision.ops import MultiScaleRoIAlign

    from maskray.models.roi_heads import DetectionRoIHeads
    from maskray.models.variants import MLPMaskHead, MultiScaleRoIPool

    for roi_op, mask_loss, mask_head in (("align", "sigmoid", "fcn"), ("pool", "softmax", "mlp")):
        model, _ = build_model("demo", "none", roi_op=roi_op, mask_loss=mask_loss,
                               mask_head=mask_head, pre_nms_top=7)
        heads = model.roi_heads
        assert type(heads) is DetectionRoIHeads
        assert (heads.mask_loss, heads.pre_nms_top) == (mask_loss, 7)
        pooler = MultiScaleRoIPool if roi_op == "pool" else MultiScaleRoIAlign
        assert all(type(p) is pooler
                   for p in (heads.box_roi_pool, heads.mask_roi_pool, heads.keypoint_roi_pool))
        assert type(heads.mask_head) is (MLPMaskHead if mask_head == "mlp" else MaskRCNNHeads)
        with torch.inference_mode():
            (found,) = model([torch.rand(3, 96, 128)])
        masks = found["masks"]
        assert masks.shape[1:] == (1, 96, 128) and ((masks >= 0) & (masks <= 1)).all()
    with pytest.raises(UsageError, match="pre-NMS"):
        build_model("demo", "none", pre_nms_top=0)
    with pytest.raises(UsageError, match="mask head"):
        build_model("keypointrcnn_resnet50_fpn", "none", mask_head="mlp")


class _Payload:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_arbitrary_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, path)
    with pytest.raises(WeightsError) as raised:
        build_model("demo", str(path))
    message = str(raised.value)
    assert "\n" not in message and str(path) in message and "weights_only" in message
    assert not marker.exists()


def test_missing_corrupt_and_mismatched_files(demo_model, tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        build_model("demo", str(tmp_path / "nope.pt"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(WeightsError):
        build_model("demo", str(garbage))
    demo_state = tmp_path / "demo.pt"
    torch.save(demo_model.state_dict(), demo_state)
    with pytest.raises(WeightsError) as raised:
        build_model("maskrcnn_resnet50_fpn", str(demo_state))
    assert "does not fit maskrcnn_resnet50_fpn" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_coco_offline_names_the_file_and_the_cache_folder(torch_home):
    assert coco_weights_cached("maskrcnn_resnet50_fpn") is False
    with pytest.raises(WeightsError) as raised:
        build_model("maskrcnn_resnet50_fpn", "coco")
    message = str(raised.value)
    assert "\n" not in message
    assert COCO_FILE in message and str(torch_home) in message


def test_coco_loads_from_the_cache_folder(torch_home):
    random_model, _ = build_model("maskrcnn_resnet50_fpn", "none", seed=7)
    # torchvision's published v1 file has FrozenBatchNorm tensors: no BatchNorm counters.
    state = {k: v for k, v in random_model.state_dict().items() if "num_batches_tracked" not in k}
    torch_home.mkdir(parents=True)
    torch.save(state, torch_home / COCO_FILE)
    assert coco_weights_cached("maskrcnn_resnet50_fpn") is True

    model, weights_id = build_model("maskrcnn_resnet50_fpn", "coco")
    assert weights_id == f"coco:{COCO_FILE}"
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and all(m.eps == 0.0 for m in frozen)  # as torchvision loads these weights


def test_models_without_published_weights():
    with pytest.raises(WeightsError, match="no published COCO weights"):
        build_model("maskkeypointrcnn_resnet50_fpn", "coco")
    if demo_weights_present():
        model, weights_id = build_model("demo", "demo")
        assert weights_id.startswith("demo:") and model.maskray_spec.name == "demo"
    else:
        with pytest.raises(WeightsError, match="demo weights are missing"):
            build_model("demo", "demo")


def test_backbone_choice():
    with pytest.raises(UsageError, match="resnext101_32x8d"):
        build_model("demo", "none", backbone="vgg16")
    model, _ = build_model("maskrcnn_resnet50_fpn", "none", backbone="resnet18")
    assert model.backbone.body.layer4[-1].conv2.out_channels == 512  # a BasicBlock ResNet
    assert model.maskray_recipe.backbone == "resnet18"


def test_models_command_lists_models_and_local_weights(torch_home):
    torch_home.mkdir(parents=True)
    (torch_home / "keypointrcnn_resnet50_fpn_coco-fc266e95.pth").write_bytes(b"placeholder")
    result = CliRunner().invoke(cli.cli, ["models"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if line[:1].strip()}
    assert set(MODELS) <= set(rows)
    assert "coco: cached" in rows["keypointrcnn_resnet50_fpn"]
    assert "coco: not cached" in rows["maskrcnn_resnet50_fpn"]
    assert "n/a" in rows["maskkeypointrcnn_resnet50_fpn"]
    assert "shapes" in rows["demo"] and "demo:" in rows["demo"]
    assert str(torch_home) in result.output
    help_text = CliRunner().invoke(cli.cli, ["models", "--help"]).output
    assert "Example:" in help_text and "maskray models" in help_text
