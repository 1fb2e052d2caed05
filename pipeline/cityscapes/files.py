"""Cityscapes' file layout: names like `frankfurt_000000_000294_leftImg8bit.png` and the
folders they live in.

    ROOT/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_polygons.json
    ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png
    ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

`<city>_<seq>_<frame>` (the "core name") identifies a picture across all of them, and is how
an output's frames are matched to ground truth: by their file names, wherever they were read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from maskray.errors import UsageError

IMAGES = "leftImg8bit"
GROUND_TRUTH = "gtFine"
POLYGONS_SUFFIX = "_gtFine_polygons.json"
INSTANCE_IDS_SUFFIX = "_gtFine_instanceIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
IMAGE_SUFFIX = "_leftImg8bit.png"

_CORE = re.compile(r"^(?P<city>[^_/]+)_(?P<sequence>\d+)_(?P<frame>\d+)(?:_|\.|$)")


def core_name(path: str) -> Optional[str]:
    """`frankfurt_000000_000294` for any Cityscapes file name (or path); None for other names."""
    match = _CORE.match(path.rstrip("/").rsplit("/", 1)[-1])
    return f"{match['city']}_{match['sequence']}_{match['frame']}" if match else None


@dataclass(frozen=True)
class GroundTruthFiles:
    """One annotated picture: its core name, split, and the files there are for it."""

    core: str
    split: str
    polygons: Optional[Path]
    instance_ids: Optional[Path]
    image: Optional[Path]


def ground_truth_index(root, splits: Optional[list[str]] = None) -> dict[str, GroundTruthFiles]:
    """{core name: files} of every annotated picture under ROOT/gtFine (all splits by default).

    A picture counts when it has a polygons JSON or an instanceIds PNG; UsageError when ROOT
    has no gtFine folder or none of the asked splits holds an annotation.
    """
    root = Path(root)
    base = root / GROUND_TRUTH
    if not base.is_dir():
        raise UsageError(f"{root} is not a Cityscapes root: no {GROUND_TRUTH}/ folder in it")
    chosen = splits or sorted(p.name for p in base.iterdir() if p.is_dir())
    index: dict[str, GroundTruthFiles] = {}
    for split in chosen:
        cores = set()
        for suffix in (POLYGONS_SUFFIX, INSTANCE_IDS_SUFFIX):
            cores.update(p.name[: -len(suffix)] for p in (base / split).glob(f"*/*{suffix}"))
        for core in sorted(cores):
            city = core.split("_", 1)[0]
            folder = base / split / city
            polygons, instance_ids = folder / (core + POLYGONS_SUFFIX), folder / (core + INSTANCE_IDS_SUFFIX)
            image = root / IMAGES / split / city / (core + IMAGE_SUFFIX)
            index[core] = GroundTruthFiles(core, split, polygons if polygons.is_file() else None,
                                           instance_ids if instance_ids.is_file() else None,
                                           image if image.is_file() else None)
    if not index:
        where = ", ".join(str(base / s) for s in chosen) or str(base)
        raise UsageError(f"no Cityscapes annotations (*{POLYGONS_SUFFIX} or *{INSTANCE_IDS_SUFFIX}) in {where}")
    return index
