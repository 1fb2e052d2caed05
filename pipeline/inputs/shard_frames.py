"""A shard's frames, in order: `(FrameRef, rgb, FrameGeometry)` per decoded frame, `FrameError` otherwise.

This is where "no input ever kills the job" is kept: every failure to read one input becomes
a `FrameError` (a `frames` row with status 'error'; `transient` when the store failed rather
than the file), and frames decoded before a video breaks are kept. Each sampled frame gets
exactly one row: decoded, or an error. Every decoded frame passes the size guards
(`geometry.fit`): `rgb` is what the model sees, the FrameRef keeps the frame's own size,
and `geometry.restore` maps the model's results back to it.

A video shard names its frame range and the key of its video's index in `OUT/_index/`: the
index is read here (`video_segment`), and the sampled frames and the segment's window of pts
are computed from it, exactly as the planner computed them.
"""

from __future__ import annotations

from typing import Iterator, Optional, Union

import numpy as np

from maskray.pipeline import storage
from maskray.pipeline.inputs.errors import TRANSIENT_PREFIX, error_text, missing_is_transient, read_problem
from maskray.pipeline.inputs.geometry import FrameGeometry, fit
from maskray.pipeline.inputs import images
from maskray.pipeline.inputs.container_index import index_of_shard
from maskray.pipeline.inputs.sampling import sampled_positions
from maskray.pipeline.inputs.video import VideoIndex, decode_segment
from maskray.pipeline.inputs.frame_ref import FrameError, FrameRef

Item = Union[tuple[FrameRef, np.ndarray, FrameGeometry], FrameError]


def iter_shard_frames(shard, output: Optional[str] = None) -> Iterator[Item]:
    """Decode `shard` (a `pipeline.inputs.shards.Shard`) lazily, one frame at a time; a video
    shard's index is read from the cache under `output` (OUT)."""
    if shard.planning_error:
        transient = shard.planning_error.startswith(TRANSIENT_PREFIX)
        for uri in shard.uris:
            yield FrameError(uri, 0, None, shard.planning_error, transient=transient)
    elif shard.kind == "images":
        for uri in shard.uris:
            yield from _decode_image(uri, None)
    elif shard.kind == "pages":
        yield from _decode_image(shard.uris[0], range(shard.start_frame, shard.end_frame))
    else:
        yield from _decode_video(shard, output)


def video_segment(shard, output: Optional[str]) -> tuple[VideoIndex, list[int]]:
    """The window of the video's index that `shard` decodes (its lookahead included) and its
    sampled frames, in order. DecodeError when the index cannot be had."""
    index = index_of_shard(shard.uris[0], shard.index_key, output)
    sampled = sampled_positions(index.times(), 0, index.keyframes, shard.sampling)
    first, last = np.searchsorted(sampled, [shard.start_frame, shard.end_frame])
    ahead = tuple(getattr(shard, "lookahead", ()))
    end = ahead[-1] + 1 if ahead else shard.end_frame
    return index.window(shard.start_frame, end), [int(f) for f in sampled[first:last]]


def _decode_image(uri: str, wanted: Optional[range]) -> Iterator[Item]:
    """Frames `wanted` of one image file; None: every frame it holds (one for most images,
    each frame of an animated WebP or PNG, which are not counted at planning)."""
    done: set[int] = set()
    try:
        data = storage.read_bytes(uri)
        for number, frame in enumerate(images.decode_frames(data, images.MAX_DECODE_PIXELS)):
            if wanted is not None and number >= wanted.stop:
                break
            if wanted is None or number in wanted:
                done.add(number)
                rgb, geometry = fit(frame.rgb, frame.width, frame.height)
                yield FrameRef(uri, number, frame.time, frame.width, frame.height), rgb, geometry
    except Exception as error:  # one unreadable input is an error row, never a failed job
        missing = [f for f in wanted if f not in done] if wanted is not None else [len(done)]
        yield from _errors(uri, missing, lambda f: None, error)
        return
    if wanted is not None and len(done) < len(wanted):
        for frame in [f for f in wanted if f not in done]:
            yield FrameError(uri, frame, None, f"image has {len(done)} frames, not {wanted.stop}")


def _decode_video(shard, output: Optional[str]) -> Iterator[Item]:
    uri = shard.uris[0]
    try:
        index, wanted = video_segment(shard, output)
    except Exception as error:  # the index cannot be had: one row tells the user why
        yield from _errors(uri, [shard.start_frame], lambda f: None, error)
        return
    ahead = tuple(getattr(shard, "lookahead", ()))  # tracked, never written: no error rows
    end = ahead[-1] + 1 if ahead else shard.end_frame
    done: set[int] = set()
    try:
        for decoded in decode_segment(uri, index, shard.start_frame, end, wanted + list(ahead),
                                      images.MAX_DECODE_PIXELS):
            done.add(decoded.frame)
            rgb, geometry = fit(decoded.rgb, decoded.width, decoded.height)
            yield FrameRef(uri, decoded.frame, decoded.time, decoded.width, decoded.height), rgb, geometry
    except Exception as error:  # the video broke: keep what was decoded, record the rest
        missing = [frame for frame in wanted if frame not in done]
        yield from _errors(uri, missing, index.time, error)
        if not missing and not ahead:
            # Every sampled frame was read, but the file breaks after them (truncated):
            # one row at the first unreadable frame number tells the user.
            yield from _errors(uri, [index.end_frame], lambda f: None, error)


def _errors(uri: str, frames: list[int], time_of, error: BaseException) -> Iterator[FrameError]:
    transient = missing_is_transient(error)  # every input here was listed by this job
    message = error_text(read_problem(error), transient)
    for frame in frames:
        yield FrameError(uri, frame, time_of(frame), message, transient=transient)
