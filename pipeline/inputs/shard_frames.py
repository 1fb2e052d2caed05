"""A shard's frames, in order: `(FrameRef, rgb)` for each decoded frame, `FrameError` otherwise.

This is where "no input ever kills the job" is kept: every failure to read one input becomes
a `FrameError` (a `frames` row with status 'error'), and frames decoded before a video
breaks are kept. Each sampled frame gets exactly one row: decoded, or an error.
"""

from __future__ import annotations

from typing import Iterator, Union

import numpy as np

from maskray.pipeline import storage
from maskray.pipeline.inputs.images import decode_image
from maskray.pipeline.output.schema import FrameError, FrameRef
from maskray.pipeline.inputs.video import decode_segment

Item = Union[tuple[FrameRef, np.ndarray], FrameError]


def iter_shard_frames(shard) -> Iterator[Item]:
    """Decode `shard` (a `pipeline.shards.Shard`) lazily, one frame at a time."""
    if shard.planning_error:
        for uri in shard.uris:
            yield FrameError(uri, 0, None, shard.planning_error)
    elif shard.kind == "images":
        for uri in shard.uris:
            yield _decode_image(uri)
    else:
        yield from _decode_video(shard)


def _decode_image(uri: str) -> Item:
    try:
        rgb = decode_image(storage.read_bytes(uri))
    except Exception as error:  # one unreadable input is an error row, never a failed job
        return FrameError(uri, 0, None, _message(error))
    return FrameRef(uri, 0, None, int(rgb.shape[1]), int(rgb.shape[0])), rgb


def _decode_video(shard) -> Iterator[Item]:
    uri = shard.uris[0]
    index = shard.video_index()
    wanted = sorted(shard.frames)
    done: set[int] = set()
    try:
        for decoded in decode_segment(uri, index, shard.start_frame, shard.end_frame, wanted):
            done.add(decoded.frame)
            height, width = decoded.rgb.shape[:2]
            yield FrameRef(uri, decoded.frame, decoded.time, int(width), int(height)), decoded.rgb
    except Exception as error:  # the video broke: keep what was decoded, record the rest
        message = _message(error)
        missing = [frame for frame in wanted if frame not in done]
        for frame in missing:
            yield FrameError(uri, frame, index.time(frame), message)
        if not missing:
            # Every sampled frame was read, but the file breaks after them (truncated):
            # one row at the first unreadable frame number tells the user.
            yield FrameError(uri, index.end_frame, None, message)


def _message(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else ""
    kind = type(error).__name__
    return line if kind == "DecodeError" and line else f"{kind}: {line}" if line else kind
