"""Where known weights live on disk: the shipped demo file, and torchvision's published COCO
weights (where they are cached, how they are fetched).

The cache is torch hub's (`$TORCH_HOME/hub/checkpoints`, `TORCH_HOME` defaulting to
`$XDG_CACHE_HOME/torch`, then `~/.cache/torch`): the folder torchvision itself downloads to,
so a file fetched by either is found by both. Finding it is torch-free (the driver never
imports torch); only a download imports torch, to use torch hub's own
`load_state_dict_from_url(check_hash=True)`: the file's name carries the first digits of its
sha256, a mismatch is refused and nothing is left in the cache.

`MASKRAY_COCO_URL_BASE` replaces `https://download.pytorch.org/models/` (a mirror inside a
private network; tests serve files from 127.0.0.1). File names never change.
"""

from __future__ import annotations

import os
from pathlib import Path

from maskray.errors import WeightsError, first_line

DEMO_WEIGHTS = Path(__file__).resolve().parent / "weights" / "demo.pt"
COCO_URL_BASE = "https://download.pytorch.org/models/"
URL_BASE_VARIABLE = "MASKRAY_COCO_URL_BASE"


def coco_cache_dir() -> Path:
    """The folder torchvision downloads published weights to (what `torch.hub.get_dir()`
    gives, plus `checkpoints`, computed without importing torch)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints"


def coco_weights_cached(name: str) -> bool | None:
    """Whether model `name`'s COCO weights are in the local cache; None if it has none."""
    from maskray.models.catalog import get_spec

    filename = get_spec(name).coco_weights
    if filename is None:
        return None
    return (coco_cache_dir() / filename).is_file()


def demo_weights_present() -> bool:
    """Whether the embedded demo model's weights are shipped in this installation."""
    return DEMO_WEIGHTS.is_file()


def coco_url(filename: str) -> str:
    base = os.environ.get(URL_BASE_VARIABLE) or COCO_URL_BASE
    return base.rstrip("/") + "/" + filename


def coco_file_of(model: str) -> str:
    """The published file name of `model`'s COCO weights; WeightsError if it has none."""
    from maskray.models.catalog import get_spec

    filename = get_spec(model).coco_weights
    if filename is None:
        raise WeightsError(
            f"{model} has no published COCO weights; use --weights demo, none or a PATH "
            "to weights you trained"
        )
    return filename


def not_cached_line(filename: str, why: str) -> str:
    """The one line for COCO weights that are not here and cannot be fetched now."""
    return (f"COCO weights {filename} are not in the local cache and {why}: put {filename} "
            f"(from {coco_url(filename)}) into {coco_cache_dir()}/")


def fetch_coco(filename: str, *, offline: bool = False) -> Path:
    """The cached file `filename`, downloaded first when it is not cached (never when
    `offline`); WeightsError with one line when it cannot be had."""
    path = coco_cache_dir() / filename
    if path.is_file():
        return path
    if offline:
        raise WeightsError(not_cached_line(filename, "--offline forbids downloading them"))
    import contextlib
    import sys

    import torch.hub

    url = coco_url(filename)
    try:
        # torchvision's own way (`Weights.get_state_dict`): download into the cache with the
        # name's hash prefix checked, then load with weights_only=True (refusing pickles).
        # Its "Downloading ..." line goes with the job's log lines, not to stdout.
        with contextlib.redirect_stdout(sys.stderr):
            torch.hub.load_state_dict_from_url(url, model_dir=str(path.parent), file_name=filename,
                                               check_hash=True, progress=False, map_location="cpu",
                                               weights_only=True)
    except OSError as error:  # offline, refused, HTTP 404: nothing was fetched
        path.unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or error
        raise WeightsError(not_cached_line(filename, f"downloading them failed ({first_line(reason)})")) from None
    except Exception as error:  # noqa: BLE001 - torch hub's "invalid hash value", a refused pickle
        path.unlink(missing_ok=True)  # a cached file is trusted from then on: keep none unchecked
        raise WeightsError(f"COCO weights downloaded from {url} were refused: {first_line(error)}") from None
    return path
