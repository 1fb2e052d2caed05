"""The exporter interface: one format, written one source at a time.

An export runs an `Exporter`'s lifecycle, which its method names tell (as Ray Data's Datasink):

    exporter = Format(context, **options)   # what the format needs to know about the output
    exporter.open(dest)                     # once: make DEST, start any file that spans sources
    exporter.write_source(source, frames, instances)   # once per source (image or video)
    lines = exporter.close()                # once: finish files, return what to tell the user

`stream.run_export` drives it, holding only one source's instances at a time, so memory follows
the largest video, not the job. A new format is one file with one `Exporter` subclass and one
entry in `formats.FORMATS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Optional

import pyarrow as pa

from maskray.pipeline.coco.matching import common_folder
from maskray.pipeline.export.files import StreamedFile
from maskray.pipeline.output.reader import Output

# The columns `write_source` receives, one row per instance of the source (score >= min-score).
INSTANCE_COLUMNS = ["source", "frame", "instance", "category_id", "category", "score", "x1", "y1", "x2", "y2",
                    "mask_rle", "keypoints", "width", "height", "track_id"]


class Frame(NamedTuple):
    """A processed frame (status ok) of a source; `time` is None for an image."""

    frame: int
    time: Optional[float]
    width: int
    height: int


@dataclass(frozen=True)
class Option:
    """A format's option: keyword `name` (`--name` on the command line, `_` as `-`)."""

    name: str
    help: str
    choices: Optional[tuple] = None


@dataclass
class ExportContext:
    """What every exporter may know before the first source: the output, the model's categories
    (id -> name, with any others the output holds) and every source's processed frames."""

    output: Output
    categories: dict[int, str]
    frames: dict[str, list[Frame]]  # source -> its ok frames, in frame order
    min_score: float = 0.0

    def file_name(self, source: str, frame: Frame) -> str:
        """A frame's name in every format, as COCO's `file_name` (`coco.matching`): the source's
        path below the sources' common folder; a video frame's `<video path>/<frame:06d>.png`."""
        if not hasattr(self, "_common"):
            self._common = common_folder(list(self.frames))
        relative = source[len(self._common):].lstrip("/") if self._common else source.split("://")[-1].lstrip("/")
        return f"{relative}/{frame.frame:06d}.png" if frame.time is not None else relative


class Exporter:
    """Base of every format; subclasses set `name`, `options` and the three lifecycle methods."""

    name: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()
    # Formats that read every instance of the output (not just sources with frames) say so.
    needs_masks: ClassVar[bool] = False

    def __init__(self, context: ExportContext, **options):
        self.context = context
        self.settings = options

    def open(self, dest: str) -> None:
        self.dest = dest

    def write_source(self, source: str, frames: list[Frame], instances: pa.Table) -> None:
        raise NotImplementedError

    def close(self) -> list[str]:
        return []

    def abort(self) -> None:
        """After a failure: drop any file still being written (`close` was not reached)."""
        for value in vars(self).values():
            if isinstance(value, StreamedFile):
                value.discard()
