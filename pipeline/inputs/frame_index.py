"""A video's frame index in compact form: numpy arrays, saved as a small `.npz` blob.

`VideoIndex` (video.py) holds pts as Python ints in tuples, fine for one segment's window but
~100 bytes a frame; an hour of 30 fps video is 108,000 frames. `FrameIndex` keeps the same
facts as two int64/int32 arrays (8 + a few bytes a frame) and converts both ways, so the
planner can hold and cache whole-video indexes and hand a shard only its window.

The blob is an uncompressed `.npz` read with `allow_pickle=False`: an index read from OUT
can never run code.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import numpy as np

from maskray.pipeline.inputs.video import VideoIndex

_FORMAT = 1  # bump when the blob's fields change; older blobs are then rebuilt, not misread


@dataclass(frozen=True, eq=False)
class FrameIndex:
    """Every frame of one video stream: `pts` sorted (presentation order), `keyframes` positions."""

    pts: np.ndarray        # int64, strictly increasing, stream time base
    keyframes: np.ndarray  # int32 frame numbers of keyframes, increasing
    time_base: Fraction
    fps: float
    width: int = 0
    height: int = 0
    stream_index: int = 0
    problem: Optional[str] = None
    source: str = "demux"  # which reader built it ("mp4", "mkv", "demux"), for logs and tests

    @property
    def num_frames(self) -> int:
        return int(self.pts.shape[0])

    @property
    def duration(self) -> float:
        """Seconds: last frame's time + one frame, as VideoIndex counts it."""
        return float(int(self.pts[-1] - self.pts[0]) * self.time_base) + 1.0 / self.fps

    def times(self) -> np.ndarray:
        """Each frame's time in seconds from the first (float64, as `VideoIndex.time` gives it)."""
        from maskray.pipeline.inputs.sampling import frame_times

        return frame_times(self.pts, int(self.pts[0]), self.time_base)

    def same_frames(self, other: "FrameIndex") -> bool:
        """True when both name the same frames with the same times and keyframes."""
        return (self.time_base == other.time_base and np.array_equal(self.pts, other.pts)
                and np.array_equal(self.keyframes, other.keyframes))

    def to_video_index(self) -> VideoIndex:
        pts = tuple(int(value) for value in self.pts)
        return VideoIndex(
            time_base=self.time_base, fps=self.fps, pts=pts,
            keyframes=tuple(int(k) for k in self.keyframes) or (0,),
            origin_pts=pts[0], num_frames=len(pts), duration=self.duration,
            width=self.width, height=self.height, stream_index=self.stream_index,
            problem=self.problem,
        )

    def window(self, start: int, end: int) -> VideoIndex:
        """The VideoIndex window `[start, end)` without expanding the whole video to tuples."""
        start, end = max(0, start), min(end, self.num_frames)
        keys = self.keyframes[(self.keyframes >= start) & (self.keyframes < end)]
        return VideoIndex(
            time_base=self.time_base, fps=self.fps,
            pts=tuple(int(value) for value in self.pts[start:end]),
            keyframes=tuple(int(k) for k in keys), origin_pts=int(self.pts[0]),
            num_frames=self.num_frames, duration=self.duration, width=self.width,
            height=self.height, stream_index=self.stream_index, first_frame=start,
            problem=self.problem if end == self.num_frames else None,
        )

    @classmethod
    def from_video_index(cls, index: VideoIndex, source: str = "demux") -> "FrameIndex":
        if index.first_frame != 0 or len(index.pts) != index.num_frames:
            raise ValueError("a FrameIndex is made from a whole-video index, not a window")
        return cls(pts=np.asarray(index.pts, dtype=np.int64),
                   keyframes=np.asarray(index.keyframes, dtype=np.int32),
                   time_base=index.time_base, fps=index.fps, width=index.width,
                   height=index.height, stream_index=index.stream_index,
                   problem=index.problem, source=source)

    def to_bytes(self) -> bytes:
        meta = {
            "format": _FORMAT, "time_base": [self.time_base.numerator, self.time_base.denominator],
            "fps": self.fps, "width": self.width, "height": self.height,
            "stream_index": self.stream_index, "problem": self.problem, "source": self.source,
        }
        buffer = io.BytesIO()
        np.savez(buffer, pts=self.pts.astype(np.int64), keyframes=self.keyframes.astype(np.int32),
                 meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Optional["FrameIndex"]:
        """The index in `data`, or None when the blob is of another format or unreadable."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as blob:
                meta = json.loads(blob["meta"].tobytes().decode("utf-8"))
                if meta.get("format") != _FORMAT:
                    return None
                pts, keyframes = blob["pts"].astype(np.int64), blob["keyframes"].astype(np.int32)
        except (OSError, ValueError, KeyError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        if pts.ndim != 1 or pts.size == 0:
            return None
        return cls(pts=pts, keyframes=keyframes, time_base=Fraction(*meta["time_base"]),
                   fps=float(meta["fps"]), width=int(meta["width"]), height=int(meta["height"]),
                   stream_index=int(meta["stream_index"]), problem=meta["problem"],
                   source=str(meta["source"]))
