"""Which frames of a video to process, and where to cut it into segments.

Both are computed once from the whole video's index, so every shard agrees on them and
sampling keeps the original frame numbers.

Sampling rules (at most one of them; the default is every frame):
- `every=N`: frames whose number is a multiple of N (0, N, 2N, ...).
- `fps=F`: for each target time k/F seconds (k = 0, 1, 2, ...), the first frame whose time
  is at or after it; a frame chosen by several targets is taken once. With F at or above
  the video's own rate this is every frame. Times are compared with a 1 µs tolerance so
  rounded timestamps do not skip a frame.
- `keyframes=True`: the keyframes only (cheap previews).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from maskray.models.errors import UsageError

if TYPE_CHECKING:
    from maskray.pipeline.inputs.video import VideoIndex

_TIME_TOLERANCE = 1e-6  # seconds


@dataclass(frozen=True)
class Sampling:
    every: Optional[int] = None
    fps: Optional[float] = None
    keyframes: bool = False

    def __post_init__(self):
        chosen = [name for name, on in (("--every", self.every is not None),
                                        ("--fps", self.fps is not None),
                                        ("--keyframes", self.keyframes)) if on]
        if len(chosen) > 1:
            raise UsageError(f"choose one of {', '.join(chosen)}, not several")
        if self.every is not None and (int(self.every) != self.every or self.every < 1):
            raise UsageError(f"--every must be a whole number of frames >= 1, got {self.every}")
        if self.fps is not None and not (self.fps > 0 and math.isfinite(self.fps)):
            raise UsageError(f"--fps must be a positive number, got {self.fps}")

    @property
    def step(self) -> int:
        return int(self.every) if self.every is not None else 1

    def to_dict(self) -> dict:
        return {"every": self.every, "fps": self.fps, "keyframes": self.keyframes}

    @classmethod
    def from_dict(cls, data: dict) -> "Sampling":
        return cls(every=data.get("every"), fps=data.get("fps"), keyframes=bool(data.get("keyframes")))


def sampled_frames(index: "VideoIndex", sampling: Sampling) -> list[int]:
    """Frame numbers (0-based, presentation order) that `sampling` keeps, from a whole-video index."""
    frames = range(index.first_frame, index.end_frame)
    if sampling.keyframes:
        return [k for k in index.keyframes if index.first_frame <= k < index.end_frame]
    if sampling.fps is not None:
        chosen, previous_slot = [], -1
        for frame in frames:
            # Number of targets k/F at or before this frame's time (minus one).
            slot = math.floor((index.time(frame) + _TIME_TOLERANCE) * sampling.fps)
            if slot > previous_slot:
                chosen.append(frame)
                previous_slot = slot
        return chosen
    return [frame for frame in frames if frame % sampling.step == 0]


def plan_segments(index: "VideoIndex", segment_seconds: Optional[float]) -> list[tuple[int, int]]:
    """Cut a video into `[start_frame, end_frame)` segments of about `segment_seconds`.

    Segments start on keyframes only (the first also at frame 0), so each can be decoded
    on its own; a segment is never shorter than the keyframe interval, and a video with a
    single keyframe stays one segment. A last piece shorter than half a segment joins the
    one before it. None or <= 0 means one segment.
    """
    end = index.end_frame
    if not segment_seconds or segment_seconds <= 0:
        return [(index.first_frame, end)]
    starts = [index.first_frame]
    for keyframe in index.keyframes:
        if keyframe <= starts[-1] or keyframe >= end:
            continue
        if index.time(keyframe) - index.time(starts[-1]) >= segment_seconds - _TIME_TOLERANCE:
            starts.append(keyframe)
    tail_seconds = index.duration - index.time(starts[-1])
    if len(starts) > 1 and tail_seconds < segment_seconds / 2:
        starts.pop()
    return list(zip(starts, starts[1:] + [end]))
