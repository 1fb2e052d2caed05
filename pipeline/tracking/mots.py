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

import pyarrow.dataset as ds

from maskray.models.errors import UsageError
from maskray.pipeline import storage
from maskray.pipeline.output.reader import open_output, write_file

COLUMNS = ["source", "frame", "category_id", "height", "width", "mask_rle", "track_id"]


def export_mots(output_uri: str, folder_uri: str, *, min_score: float = 0.0) -> dict[str, int]:
    """Write `<video name>.txt` per tracked video into `folder_uri`; returns {file: lines}."""
    output = open_output(output_uri)
    table = output.instances_table(COLUMNS, filter=ds.field("score") >= min_score)
    lines: dict[str, list[tuple]] = defaultdict(list)
    for row in table.to_pylist():
        if row["track_id"] is None or row["mask_rle"] is None:
            continue
        object_id = int(row["category_id"]) * 1000 + int(row["track_id"])
        lines[row["source"]].append((row["frame"], object_id, row["category_id"], row["height"],
                                     row["width"], row["mask_rle"]))
    if not lines:
        raise UsageError(f"{output_uri} has no tracked video instances (tracks need --track and masks)")
    names = _file_names(sorted(lines))
    written = {}
    for source, rows in sorted(lines.items()):
        text = "".join(" ".join(str(v) for v in row) + "\n" for row in sorted(rows))
        uri = storage.join(storage.canonical(folder_uri), names[source])
        write_file(uri, text.encode())
        written[uri] = len(rows)
    return written


def _file_names(sources: list[str]) -> dict[str, str]:
    """`<stem>.txt` per video; videos sharing a stem get a short digest of their URI too."""
    stems = {s: posixpath.splitext(posixpath.basename(s))[0] for s in sources}
    counts = defaultdict(int)
    for stem in stems.values():
        counts[stem] += 1
    return {s: f"{stem}.txt" if counts[stem] == 1 else f"{stem}-{hashlib.sha1(s.encode()).hexdigest()[:6]}.txt"
            for s, stem in stems.items()}
