"""A finished job's videos as it stored them, frame by frame: what `maskray retrack` tracks.

Each video is its committed segments (`CommitRecord`s), in order. For one video the `frames`
rows say which frames each segment processed (status `ok`: the frames its worker tracked) and
the `instances` rows hold what the model found in them: boxes, scores, categories, masks, and
the appearance `embedding` where the job stored it. `StoredPrediction` carries one frame's
instances with the names of the model's own `FramePrediction`, so `SegmentTracking` takes it
as it takes the worker's predictions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from maskray.pipeline.output.layout import CommitRecord
from maskray.pipeline.output.track_table import video_key

INSTANCE_COLUMNS = ["shard", "frame", "instance", "category_id", "score", "x1", "y1", "x2", "y2",
                    "mask_rle", "width", "height"]
EMBEDDING = "embedding"  # optional column (`submit --embeddings`): each instance's appearance


@dataclass
class StoredPrediction:
    """One frame's stored instances, in the order written (descending score)."""

    height: int
    width: int
    boxes: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32
    category_ids: np.ndarray  # (N,) int32
    masks_rle: Optional[list]  # N counts strings, None where the model had no mask head
    embeddings: Optional[np.ndarray] = None  # (N, D) float32, None where not stored

    def __len__(self) -> int:
        return len(self.scores)


EMPTY = StoredPrediction(0, 0, np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), [])


def segment_bounds(record: CommitRecord) -> tuple[int, int]:
    """(start, end) frames of a segment, from its id `vid-<digest>-f<start>-<end>`."""
    start, end = record.shard.rsplit("-", 2)[1:]
    return int(start.lstrip("f")), int(end)


def videos_of(records: dict[str, CommitRecord]) -> tuple[dict[str, list[CommitRecord]], list[str]]:
    """({video: its segments in order} of videos cut into whole segments, [videos left out]).

    A video with a bisected segment (a piece of a segment that failed its worker) is left out,
    as the job's own stitching leaves it: its pieces were tracked without a lookahead."""
    videos: dict[str, list[CommitRecord]] = defaultdict(list)
    for record in records.values():
        if record.planned.startswith("vid-"):
            videos[video_key(record.planned)].append(record)
    whole = {key: sorted(found, key=lambda r: segment_bounds(r)[0]) for key, found in videos.items()
             if all(not r.piece and r.shard == r.planned for r in found)}
    return dict(sorted(whole.items())), sorted(set(videos) - set(whole))


class StoredVideo:
    """One video's stored frames and instances (read once: a video's rows fit in memory)."""

    def __init__(self, output, segments: list[CommitRecord]):
        shards = [r.shard for r in segments]
        only = ds.field("shard").isin(shards)
        frames = output.frames().to_table(columns=["shard", "frame", "status"], filter=only)
        self.frames_of: dict[str, list[int]] = defaultdict(list)  # every frame written, by segment
        self.ok: set[int] = set()
        for shard, frame, status in zip(*(frames[c].to_pylist() for c in ("shard", "frame", "status"))):
            self.frames_of[shard].append(int(frame))
            if status == "ok":
                self.ok.add(int(frame))
        for found in self.frames_of.values():
            found.sort()
        instances = output.instances()
        columns = INSTANCE_COLUMNS + ([EMBEDDING] if EMBEDDING in instances.schema.names else [])
        table = instances.to_table(columns=columns, filter=only)
        self.instances = table.sort_by([("frame", "ascending"), ("instance", "ascending")])
        self._rows = _rows_by_frame(self.instances)

    def prediction(self, frame: int) -> StoredPrediction:
        rows = self._rows.get(frame)
        if rows is None:
            return EMPTY
        first, stop = rows
        return _prediction(self.instances.slice(first, stop - first))


def _rows_by_frame(table: pa.Table) -> dict[int, tuple[int, int]]:
    """{frame: (first row, end row)} of a table sorted by frame."""
    frames = table["frame"].to_numpy()
    if not len(frames):
        return {}
    values, starts = np.unique(frames, return_index=True)
    ends = list(starts[1:]) + [len(frames)]
    return {int(f): (int(s), int(e)) for f, s, e in zip(values, starts, ends)}


def _prediction(rows: pa.Table) -> StoredPrediction:
    boxes = np.stack([rows[c].to_numpy().astype(np.float32) for c in ("x1", "y1", "x2", "y2")], axis=1)
    masks = rows["mask_rle"]
    return StoredPrediction(
        height=int(rows["height"][0].as_py()), width=int(rows["width"][0].as_py()),
        boxes=boxes, scores=rows["score"].to_numpy().astype(np.float32),
        category_ids=rows["category_id"].to_numpy().astype(np.int32),
        masks_rle=None if masks.null_count else masks.to_pylist(),
        embeddings=_embeddings(rows[EMBEDDING]) if EMBEDDING in rows.column_names else None,
    )


def _embeddings(column: pa.ChunkedArray) -> Optional[np.ndarray]:
    """(N, D) float32 of a fixed-size (or plain) list column; None where any row has none."""
    if column.null_count or not len(column):
        return None
    array = column.combine_chunks()
    values = pc.list_flatten(array).to_numpy(zero_copy_only=False).astype(np.float32)
    return values.reshape(len(array), -1)
