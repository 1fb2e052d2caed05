"""Shard attempts and bisection: how the driver makes sure no single input fails a job.

A planned shard gets MAX_ATTEMPTS attempts, each on a fresh actor (a corrupted CUDA context
or a zombie stays behind with the old one). If the last attempt fails, the shard is cut in
two pieces (its images, or halves of a segment's or a paged file's frame range), each tried on its own; a piece of one
input that still fails becomes that input's error rows, written without running the model.
Pieces commit under their own ids, naming the planned shard and their place in the bisection
(`0`, `1`, `01`, ...), so the planned shard counts as done once its pieces tile it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

MAX_ATTEMPTS = 3  # a whole planned shard
PIECE_ATTEMPTS = 1  # each bisected piece: the whole shard already failed MAX_ATTEMPTS times


@dataclass
class ShardTask:
    shard: object  # pipeline.inputs.shards.Shard
    planned: str
    piece: str = ""
    attempts: int = 0
    failure: Optional[str] = None  # set: write this message as the inputs' error rows

    @property
    def max_attempts(self) -> int:
        return MAX_ATTEMPTS if not self.piece else PIECE_ATTEMPTS

    def exhausted(self) -> bool:
        return self.attempts >= self.max_attempts


def planned_task(shard) -> ShardTask:
    return ShardTask(shard, shard.id)


def units(shard) -> int:
    """How many inputs the shard holds: images, or frames of its range (a video segment's
    sampled frames are known to its worker only; halving the range still isolates one)."""
    return len(shard.uris) if shard.kind == "images" else shard.end_frame - shard.start_frame


def bisect(task: ShardTask, message: str) -> list[ShardTask]:
    """The tasks that replace an exhausted one: two halves, or one input's error rows."""
    shard = task.shard
    if units(shard) <= 1 or shard.planning_error:
        # The same id and place: the error rows take the failed piece's part of the tiling.
        return [ShardTask(shard, task.planned, task.piece, 0, failure=message)] if task.failure is None else []
    half = units(shard) // 2
    pieces = []
    for side, selected in (("0", slice(None, half)), ("1", slice(half, None))):
        piece = task.piece + side
        if shard.kind != "images":
            frames = range(shard.start_frame, shard.end_frame)[selected]
            # A piece decodes no lookahead: only whole segments are stitched.
            changed = dict(start_frame=frames.start, end_frame=frames.stop, lookahead=(),
                           expected_frames=len(frames) if shard.kind == "pages" else 0)
        else:
            uris = tuple(shard.uris[selected])
            changed = dict(uris=uris, expected_frames=len(uris))
        sub = dataclasses.replace(shard, id=f"{task.planned}~{piece}", **changed)
        pieces.append(ShardTask(sub, task.planned, piece))
    return pieces
