"""Export an output as Cityscapes instance-level results: the files the official evaluation
(and the benchmark server) reads.

For each picture, `DIR/<city>_<seq>_<frame>_pred.txt` lists one predicted instance a line,

    masks/<city>_<seq>_<frame>_007.png 26 0.98125

a binary mask PNG (0 background, 255 instance) relative to the text file, the official label
id (not the train id) and the confidence. Every matched frame gets its text file, an empty
one when nothing was detected, since the evaluation wants one per ground-truth picture.

Frames are matched by their file names (`core_name`): only images whose names follow
Cityscapes' pattern are exported; two frames with the same name (in different folders) are
ambiguous and left out. Instances are kept by their category's name, so a model trained on
Cityscapes and a COCO model (person, car, truck, bus, train, motorcycle, bicycle) both export;
other categories are counted and skipped.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np
import pyarrow.dataset as ds
from PIL import Image

from maskray.models import rle
from maskray.models.errors import UsageError
from maskray.pipeline import storage
from maskray.pipeline.cityscapes.files import core_name
from maskray.pipeline.cityscapes.labels import LABEL_IDS
from maskray.pipeline.coco.export import ok_frames
from maskray.pipeline.output.reader import Output, open_output, write_file

MASKS_FOLDER = "masks"
PREDICTION_SUFFIX = "_pred.txt"
_COLUMNS = ["source", "frame", "category", "score", "mask_rle", "width", "height"]


@dataclass
class CityscapesExport:
    """What an export wrote and what it left out, and why."""

    pictures: dict[str, tuple[int, int]] = field(default_factory=dict)  # core name -> (width, height)
    instances: int = 0  # instances written
    unmatched_frames: int = 0  # processed frames whose names are not Cityscapes names (or videos)
    ambiguous_frames: int = 0  # frames sharing a core name with another frame
    skipped_frames: int = 0  # frames with Cityscapes names that `only` left out
    other_instances: int = 0  # instances of categories that are not Cityscapes instance classes


def write_predictions(folder: str, core: str, instances: Iterable[tuple[np.ndarray, int, float]]) -> int:
    """Write one picture's text file and masks; instances are (mask (H, W), label id, score).

    Returns the number of instances written (empty masks are left out).
    """
    lines = []
    for binary, label_id, score in instances:
        if not np.any(binary):
            continue
        name = f"{MASKS_FOLDER}/{core}_{len(lines):03d}.png"
        buffer = io.BytesIO()
        Image.fromarray((np.asarray(binary) != 0).astype(np.uint8) * 255).save(buffer, format="PNG")
        write_file(storage.join(folder, name), buffer.getvalue())
        lines.append(f"{name} {int(label_id)} {float(score):.6f}\n")
    write_file(storage.join(folder, core + PREDICTION_SUFFIX), "".join(lines).encode())
    return len(lines)


def cityscapes_frames(output: Output, only: Optional[set] = None) -> tuple[dict, CityscapesExport]:
    """{(source, frame): core name} of the output's exportable frames, and the counts so far."""
    export = CityscapesExport()
    by_core: dict[str, list[dict]] = defaultdict(list)
    for frame in ok_frames(output):
        core = core_name(frame["source"]) if frame["time"] is None else None
        if core is None:
            export.unmatched_frames += 1
        elif only is not None and core not in only:
            export.skipped_frames += 1
        else:
            by_core[core].append(frame)
    keys = {}
    for core, frames in by_core.items():
        if len(frames) > 1:
            export.ambiguous_frames += len(frames)
            continue
        frame = frames[0]
        keys[(frame["source"], int(frame["frame"]))] = core
        export.pictures[core] = (int(frame["width"]), int(frame["height"]))
    return keys, export


def export_cityscapes(output_uri, folder: str, *, min_score: float = 0.0,
                      only: Optional[set] = None) -> CityscapesExport:
    """Write the Cityscapes results of an output (a URI or an open `Output`) into `folder`.

    only: core names to export (e.g. the pictures that have ground truth); default all.
    """
    output = output_uri if isinstance(output_uri, Output) else open_output(output_uri)
    keys, export = cityscapes_frames(output, only)
    rows: dict[str, list[dict]] = defaultdict(list)
    scanner = output.instances().scanner(columns=_COLUMNS, filter=ds.field("score") >= min_score)
    for batch in scanner.to_batches():
        for row in batch.to_pylist():
            core = keys.get((row["source"], row["frame"]))
            if core is None:
                continue
            if row["category"] not in LABEL_IDS:
                export.other_instances += 1
            elif row["mask_rle"] is None:
                raise UsageError(f"{output.uri} has no masks (its model has no mask head): "
                                 "Cityscapes results are masks")
            else:
                rows[core].append(row)
    for core in sorted(export.pictures):
        ordered = sorted(rows[core], key=lambda r: -r["score"])
        instances = ((rle.decode(r["mask_rle"], r["height"], r["width"]), LABEL_IDS[r["category"]], r["score"])
                     for r in ordered)
        export.instances += write_predictions(folder, core, instances)
    return export
