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
from maskray.errors import UsageError
from maskray.pipeline import storage
from maskray.pipeline.cityscapes.files import core_name
from maskray.pipeline.cityscapes.labels import LABEL_IDS
from maskray.pipeline.export.exporter import Exporter, Frame, Option
from maskray.pipeline.export.stream import run_export
from maskray.pipeline.output.reader import Output, write_file

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


def cityscapes_frames(frames: dict[str, list[Frame]], only: Optional[set] = None) -> tuple[dict, CityscapesExport]:
    """{(source, frame): core name} of the exportable frames, and the counts so far."""
    export = CityscapesExport()
    by_core: dict[str, list[tuple[str, Frame]]] = defaultdict(list)
    for source, rows in frames.items():
        for frame in rows:
            core = core_name(source) if frame.time is None else None
            if core is None:
                export.unmatched_frames += 1
            elif only is not None and core not in only:
                export.skipped_frames += 1
            else:
                by_core[core].append((source, frame))
    keys = {}
    for core, found in by_core.items():
        if len(found) > 1:
            export.ambiguous_frames += len(found)
            continue
        source, frame = found[0]
        keys[(source, frame.frame)] = core
        export.pictures[core] = (frame.width, frame.height)
    return keys, export


class CityscapesExporter(Exporter):
    """DEST: a folder of `<picture>_pred.txt` files and their `masks/`."""

    name = "cityscapes"
    options = (Option("only", "core names to export (e.g. the pictures with ground truth); default all"),)

    def open(self, dest: str) -> None:
        self.dest = dest
        self.keys, self.result = cityscapes_frames(self.context.frames, self.settings.get("only"))

    def write_source(self, source, frames, instances) -> None:
        rows: dict[str, list[dict]] = defaultdict(list)
        for row in instances.to_pylist():
            core = self.keys.get((source, row["frame"]))
            if core is None:
                continue
            if row["category"] not in LABEL_IDS:
                self.result.other_instances += 1
            elif row["mask_rle"] is None:
                raise UsageError(f"{self.context.output.uri} has no masks (its model has no mask head): "
                                 "Cityscapes results are masks")
            else:
                rows[core].append(row)
        for frame in frames:
            core = self.keys.get((source, frame.frame))
            if core is None:
                continue
            ordered = sorted(rows[core], key=lambda r: -r["score"])
            instances = ((rle.decode(r["mask_rle"], r["height"], r["width"]), LABEL_IDS[r["category"]], r["score"])
                         for r in ordered)
            self.result.instances += write_predictions(self.dest, core, instances)

    def close(self) -> list[str]:
        export = self.result
        lines = [f"wrote {export.instances} instances on {len(export.pictures)} pictures to {self.dest} "
                 f"(one *_pred.txt per picture, masks in masks/)"]
        return lines + left_out(export.unmatched_frames + export.skipped_frames, export.ambiguous_frames,
                                export.other_instances)


def left_out(unmatched: int, ambiguous: int, other_instances: int) -> list[str]:
    """What an export or evaluation left out, and why (a line each)."""
    lines = []
    if unmatched:
        lines.append(f"{unmatched} processed frames left out: not images named like Cityscapes pictures "
                     "(<city>_<seq>_<frame>_leftImg8bit.png) or without ground truth")
    if ambiguous:
        lines.append(f"{ambiguous} frames left out: the same Cityscapes name read from more than one path")
    if other_instances:
        lines.append(f"{other_instances} instances left out: categories that are not Cityscapes instance classes")
    return lines


def export_cityscapes(output, folder: str, *, min_score: float = 0.0,
                      only: Optional[set] = None) -> CityscapesExport:
    """Write the Cityscapes results of an output (a URI or an open `Output`) into `folder`.

    only: core names to export (e.g. the pictures that have ground truth); default all.
    """
    return run_export(output, folder, "cityscapes", min_score=min_score, only=only).result
