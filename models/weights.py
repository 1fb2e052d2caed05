"""Where a model's weights come from: `coco`, `none`, `demo` or a PATH/URI to a state dict.

Every file is read with `torch.load(..., weights_only=True)`: tensors and plain containers
only, never arbitrary pickles. A job's replicas get the file's bytes from the driver (which
fetched and checked them once, `pipeline/weights_location.py`) with their sha256, checked
again here; without bytes (training, evaluation, a Predictor of one's own) the weights are
read where they are, and `coco` is looked up in the torch hub cache (a job's driver downloads it
there first: pipeline/weights_location.py).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch

from maskray.errors import WeightsError, first_line
from maskray.models.recipe import CHECKPOINT_VERSION, Recipe
from maskray.models.weight_files import (  # noqa: F401 - part of this module's interface
    DEMO_WEIGHTS, coco_cache_dir, coco_weights_cached, demo_weights_present, not_cached_line,
)
from maskray.models.weight_integrity import check_digest

KEYWORDS = ("coco", "none", "demo")


@dataclass
class LoadedWeights:
    """What `load_weights` found; `state_dict` is None for random initialisation."""

    kind: str  # "coco" | "none" | "demo" | "file"
    weights_id: str  # recorded with every output: "coco:<file>", "none:seed0", "file:<sha12>"
    state_dict: dict[str, torch.Tensor] | None
    recipe: Recipe | None  # set when the file is a maskray checkpoint
    source: str  # for messages: the file or keyword the weights came from


def load_weights(
    weights: str, *, model: str, coco_file: str | None, seed: int = 0,
    data: bytes | None = None, sha256: str | None = None,
) -> LoadedWeights:
    """Resolves `weights` for model `model` (whose published file is `coco_file`).

    `data`: the weights file's bytes, already fetched (a job's replicas get them from the
    driver); `sha256` is checked against them. Without `data` the file is read here.
    """
    if weights == "none":
        return LoadedWeights("none", f"none:seed{seed}", None, None, "none")
    if data is not None:
        return _from_bytes(weights, data, sha256, coco_file)
    if weights == "coco":
        return _load_coco(model, coco_file)
    if weights == "demo":
        if not DEMO_WEIGHTS.is_file():
            raise WeightsError(
                f"demo weights are missing: {DEMO_WEIGHTS} is not in this installation "
                "(train them with `maskray train`, or use --weights none)"
            )
        return _from_bytes("demo", DEMO_WEIGHTS.read_bytes(), sha256, coco_file, source=str(DEMO_WEIGHTS))
    return _from_bytes(weights, _read_bytes(weights), sha256, coco_file)


def _from_bytes(weights: str, data: bytes, sha256: str | None, coco_file: str | None,
                source: str | None = None) -> LoadedWeights:
    """`LoadedWeights` of a file's bytes: digest checked, then parsed (weights_only)."""
    kind = weights if weights in ("coco", "demo") else "file"
    source = source or (coco_file if kind == "coco" else weights)
    digest = check_digest(data, sha256, source)
    state_dict, recipe = _parse(data, source)
    weights_id = f"coco:{coco_file}" if kind == "coco" else f"{kind}:{digest[:12]}"
    return LoadedWeights(kind, weights_id, state_dict, recipe, source)


def make_checkpoint(model: torch.nn.Module) -> dict:
    """A maskray checkpoint of a model built by `build_model`, possibly wrapped for data
    parallel training (`model.module`): its recipe and a CPU copy of its state dict."""
    module = getattr(model, "module", model)
    recipe = getattr(module, "maskray_recipe", None)
    if recipe is None:
        raise ValueError("make_checkpoint needs a model built by models.build.build_model")
    recipe = recipe.to_dict()  # with the model's shape fields (`extra`): the file says it all
    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    return {"maskray_checkpoint": CHECKPOINT_VERSION, "recipe": recipe, "state_dict": state}


def save_checkpoint(model_or_checkpoint: torch.nn.Module | dict, path: str | Path, *, half: bool = False) -> int:
    """Writes a maskray checkpoint to a local `path` atomically (temp file + rename); returns
    its size in bytes. The one way maskray saves weights (training checkpoints, `model.pt`,
    the shipped demo model).

    model_or_checkpoint: a model (saved through `make_checkpoint`) or a checkpoint dict (as
    loaded from a file). half: floating-point weights stored as fp16, half the file; a model
    loads them into its fp32 parameters.
    """
    checkpoint = (make_checkpoint(model_or_checkpoint) if isinstance(model_or_checkpoint, torch.nn.Module)
                  else dict(model_or_checkpoint))
    if half:
        checkpoint["state_dict"] = {name: value.half() if value.is_floating_point() else value
                                    for name, value in checkpoint["state_dict"].items()}
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, temporary)
    temporary.replace(path)
    return path.stat().st_size


def _load_coco(model: str, coco_file: str | None) -> LoadedWeights:
    if coco_file is None:
        raise WeightsError(
            f"{model} has no published COCO weights; use --weights demo, none or a PATH "
            "to weights you trained"
        )
    path = coco_cache_dir() / coco_file
    if not path.is_file():
        raise WeightsError(not_cached_line(coco_file, "only `maskray submit` downloads them"))
    return _from_bytes("coco", path.read_bytes(), None, coco_file, source=str(path))


def _read_bytes(location: str) -> bytes:
    """The bytes of a local file or of a URI pyarrow can open (s3://, gs://, file://)."""
    if "://" in location:
        import pyarrow.fs

        try:
            filesystem, path = pyarrow.fs.FileSystem.from_uri(location)
            with filesystem.open_input_stream(path) as stream:
                return stream.read()
        except (OSError, ValueError) as error:
            raise WeightsError(f"cannot read weights {location}: {first_line(error)}") from None
    path = Path(location).expanduser()
    if not path.is_file():
        choices = ", ".join(KEYWORDS)
        raise WeightsError(f"weights file {location} does not exist (or use one of: {choices})")
    try:
        return path.read_bytes()
    except OSError as error:
        raise WeightsError(f"cannot read weights {location}: {error.strerror}") from None


def _parse(data: bytes, source: str) -> tuple[dict[str, torch.Tensor], Recipe | None]:
    """State dict (and recipe, for a maskray checkpoint) from a file's bytes."""
    try:
        content = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any refusal or corruption is the same user-facing fact
        raise WeightsError(
            f"{source} is not a loadable state dict: maskray reads weights with "
            "weights_only=True and refuses arbitrary pickles or corrupt files"
        ) from None
    recipe = None
    if isinstance(content, dict) and "maskray_checkpoint" in content:
        recipe = Recipe.from_dict(content.get("recipe") or {}, source)
        content = content.get("state_dict")
    elif isinstance(content, dict) and isinstance(content.get("model"), dict):
        content = content["model"]  # torchvision reference-script checkpoints
    is_state_dict = isinstance(content, dict) and content and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in content.items()
    )
    if not is_state_dict:
        raise WeightsError(f"{source} holds no state dict (a mapping of names to tensors)")
    return content, recipe

