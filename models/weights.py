"""Where a model's weights come from: `coco`, `none`, `demo` or a PATH/URI to a state dict.

Every file is read with `torch.load(..., weights_only=True)`: tensors and plain containers
only, never arbitrary pickles. Nothing is ever downloaded: `coco` weights are looked up in the
torch hub cache, where torchvision puts them once fetched on a machine with internet.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import torch

from maskray.models.errors import WeightsError, first_line
from maskray.models.recipe import CHECKPOINT_VERSION, Recipe

KEYWORDS = ("coco", "none", "demo")
DEMO_WEIGHTS = Path(__file__).resolve().parent / "weights" / "demo.pt"


@dataclass
class LoadedWeights:
    """What `load_weights` found; `state_dict` is None for random initialisation."""

    kind: str  # "coco" | "none" | "demo" | "file"
    weights_id: str  # recorded with every output: "coco:<file>", "none:seed0", "file:<sha12>"
    state_dict: dict[str, torch.Tensor] | None
    recipe: Recipe | None  # set when the file is a maskray checkpoint
    source: str  # for messages: the file or keyword the weights came from


def coco_cache_dir() -> Path:
    """The folder torchvision downloads published weights to (honours TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def coco_weights_cached(name: str) -> bool | None:
    """Whether model `name`'s COCO weights are in the local cache; None if it has none."""
    from maskray.models.specs import get_spec

    filename = get_spec(name).coco_weights
    if filename is None:
        return None
    return (coco_cache_dir() / filename).is_file()


def demo_weights_present() -> bool:
    """Whether the embedded demo model's weights are shipped in this installation."""
    return DEMO_WEIGHTS.is_file()


def load_weights(
    weights: str, *, model: str, coco_file: str | None, seed: int = 0
) -> LoadedWeights:
    """Resolves `weights` for model `model` (whose published file is `coco_file`)."""
    if weights == "none":
        return LoadedWeights("none", f"none:seed{seed}", None, None, "none")
    if weights == "coco":
        return _load_coco(model, coco_file)
    if weights == "demo":
        if not DEMO_WEIGHTS.is_file():
            raise WeightsError(
                f"demo weights are missing: {DEMO_WEIGHTS} is not in this installation "
                "(train them with `maskray train`, or use --weights none)"
            )
        data = DEMO_WEIGHTS.read_bytes()
        state_dict, recipe = _parse(data, str(DEMO_WEIGHTS))
        return LoadedWeights("demo", f"demo:{_digest(data)}", state_dict, recipe, "demo")
    data = _read_bytes(weights)
    state_dict, recipe = _parse(data, weights)
    return LoadedWeights("file", f"file:{_digest(data)}", state_dict, recipe, weights)


def make_checkpoint(model: torch.nn.Module) -> dict:
    """A maskray checkpoint of a model built by `build_model`, possibly wrapped for data
    parallel training (`model.module`): its recipe and a CPU copy of its state dict."""
    from maskray.models.specs import get_spec

    module = getattr(model, "module", model)
    recipe = getattr(module, "maskray_recipe", None)
    if recipe is None:
        raise ValueError("make_checkpoint needs a model built by models.registry.build_model")
    recipe = recipe.to_dict()
    if get_spec(recipe["model"]).family == "compact":  # write the shape down, so the file says it
        from maskray.models.compact import COMPACT_DEFAULTS

        recipe = {**COMPACT_DEFAULTS, **recipe}
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
        raise WeightsError(
            f"COCO weights {coco_file} are not in the local cache and maskray never downloads: "
            f"put {coco_file} (from https://download.pytorch.org/models/{coco_file}) into "
            f"{path.parent}/"
        )
    state_dict, recipe = _parse(path.read_bytes(), str(path))
    return LoadedWeights("coco", f"coco:{coco_file}", state_dict, recipe, str(path))


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


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]
