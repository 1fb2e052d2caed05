"""MOTS-style results of tracked videos: one text file per video, one line per instance.

    <frame> <object id> <class id> <image height> <image width> <rle>

as in the MOTS challenge's results format: the object id is `class id * 1000 + track id`,
the mask is COCO's compressed RLE string (the table's `mask_rle`), and frames are maskray's
0-based frame numbers. Instances without a track id (images, untracked jobs) are left out.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections import defaultdict

from maskray.errors import UsageError
from maskray.pipeline import storage
from maskray.pipeline.export.exporter import Exporter
from maskray.pipeline.export.stream import run_export
from maskray.pipeline.output.reader import write_file


class MotsExporter(Exporter):
    """DEST: a folder with `<video name>.txt` per tracked video."""

    name = "mots"

    def open(self, dest: str) -> None:
        self.folder = storage.canonical(dest)
        videos = [s for s, frames in self.context.frames.items() if frames and frames[0].time is not None]
        self.names = _file_names(sorted(videos))
        self.written: dict[str, int] = {}

    def write_source(self, source, frames, instances) -> None:
        lines = []
        for row in instances.to_pylist():
            if row["track_id"] is None or row["mask_rle"] is None:
                continue
            object_id = int(row["category_id"]) * 1000 + int(row["track_id"])
            lines.append((row["frame"], object_id, row["category_id"], row["height"], row["width"], row["mask_rle"]))
        if not lines:
            return
        uri = storage.join(self.folder, self.names.get(source) or _file_names([source])[source])
        write_file(uri, "".join(" ".join(str(v) for v in line) + "\n" for line in sorted(lines)).encode())
        self.written[uri] = len(lines)

    def close(self) -> list[str]:
        if not self.written:
            raise UsageError(f"{self.context.output.uri} has no tracked video instances "
                             "(tracks need --track and masks)")
        return [f"wrote {count} tracked instances to {uri}" for uri, count in sorted(self.written.items())]


def export_mots(output_uri: str, folder_uri: str, *, min_score: float = 0.0) -> dict[str, int]:
    """Write `<video name>.txt` per tracked video into `folder_uri`; returns {file: lines}."""
    return run_export(output_uri, folder_uri, "mots", min_score=min_score).written


def _file_names(sources: list[str]) -> dict[str, str]:
    """`<stem>.txt` per video; videos sharing a stem get a short digest of their URI too."""
    stems = {s: posixpath.splitext(posixpath.basename(s))[0] for s in sources}
    counts = defaultdict(int)
    for stem in stems.values():
        counts[stem] += 1
    return {s: f"{stem}.txt" if counts[stem] == 1 else f"{stem}-{hashlib.sha1(s.encode()).hexdigest()[:6]}.txt"
            for s, stem in stems.items()}
