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
from fractions import Fraction
from typing import TYPE_CHECKING, Optional

import numpy as np

from maskray.errors import UsageError

if TYPE_CHECKING:
    from maskray.pipeline.inputs.video import VideoIndex

_TIME_TOLERANCE = 1e-6  # seconds
_EXACT_INTS = 2 ** 53  # float64 holds every integer below this exactly


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


def frame_times(pts, origin_pts: int, time_base: Fraction) -> np.ndarray:
    """Seconds from `origin_pts` of each pts, as float64 equal to `float(Fraction)` of each.

    Integers below 2**53 are exact in float64 and IEEE division rounds correctly, so the
    vectorised form gives the very floats the per-frame Fractions give (frame choices by
    time must not differ between the planner and the worker); beyond that, Fractions.
    """
    offsets = np.asarray(pts, dtype=np.int64) - int(origin_pts)
    numerator, denominator = time_base.numerator, time_base.denominator
    largest = int(np.abs(offsets).max()) if offsets.size else 0
    if largest * abs(numerator) < _EXACT_INTS and denominator < _EXACT_INTS:
        return (offsets * numerator).astype(np.float64) / float(denominator)
    return np.array([float(int(value) * time_base) for value in offsets], dtype=np.float64)


def sampled_positions(times: np.ndarray, first_frame: int, keyframes, sampling: Sampling) -> np.ndarray:
    """Frame numbers (int64, increasing) that `sampling` keeps, from the frames' `times`
    (frame `first_frame + i` at `times[i]`) and the keyframe numbers."""
    end = first_frame + len(times)
    if sampling.keyframes:
        keys = np.asarray(keyframes, dtype=np.int64)
        return keys[(keys >= first_frame) & (keys < end)]
    frames = np.arange(first_frame, end, dtype=np.int64)
    if sampling.fps is not None:
        # Times increase, so slots never decrease: a frame is chosen when its slot (targets
        # k/F at or before it, minus one) is above its predecessor's.
        slots = np.floor((times + _TIME_TOLERANCE) * sampling.fps).astype(np.int64)
        previous = np.concatenate(([-1], slots[:-1]))
        return frames[slots > previous]
    return frames[frames % sampling.step == 0]


def segment_bounds(times: np.ndarray, first_frame: int, keyframes, duration: float,
                   segment_seconds: Optional[float]) -> list[tuple[int, int]]:
    """`plan_segments` on arrays: `times[i]` is frame `first_frame + i`'s time."""
    end = first_frame + len(times)
    if not segment_seconds or segment_seconds <= 0:
        return [(first_frame, end)]
    starts = [first_frame]
    for keyframe in (int(k) for k in keyframes):
        if keyframe <= starts[-1] or keyframe >= end:
            continue
        if times[keyframe - first_frame] - times[starts[-1] - first_frame] >= segment_seconds - _TIME_TOLERANCE:
            starts.append(keyframe)
    tail_seconds = duration - times[starts[-1] - first_frame]
    if len(starts) > 1 and tail_seconds < segment_seconds / 2:
        starts.pop()
    return list(zip(starts, starts[1:] + [end]))


def sampled_frames(index: "VideoIndex", sampling: Sampling) -> list[int]:
    """Frame numbers (0-based, presentation order) that `sampling` keeps, from a whole-video index."""
    times = frame_times(index.pts, index.origin_pts, index.time_base)
    return [int(f) for f in sampled_positions(times, index.first_frame, index.keyframes, sampling)]


def plan_segments(index: "VideoIndex", segment_seconds: Optional[float]) -> list[tuple[int, int]]:
    """Cut a video into `[start_frame, end_frame)` segments of about `segment_seconds`.

    Segments start on keyframes only (the first also at frame 0), so each can be decoded
    on its own; a segment is never shorter than the keyframe interval, and a video with a
    single keyframe stays one segment. A last piece shorter than half a segment joins the
    one before it. None or <= 0 means one segment.
    """
    times = frame_times(index.pts, index.origin_pts, index.time_base)
    return segment_bounds(times, index.first_frame, index.keyframes, index.duration, segment_seconds)
