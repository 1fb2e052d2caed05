"""Videos: an index from demuxing (no decoding), and decoding one segment of frames.

Frame identity: `frame` is the 0-based position in presentation order (packets sorted by
pts), and `time` is `(pts - first_pts) * time_base` seconds, measured from the first
presented frame, so the first frame is at 0.0 even when the stream's start_time is not 0.

The index is built once per video by a planning task on the cluster
(pipeline/execution/planning_tasks.py) and cached in `OUT/_index/`; a shard names it, and its
worker reads the slice its segment needs (`VideoIndex.window`), so workers never demux the
whole file again. A segment is
decoded by seeking to the keyframe at (or before) its first frame and decoding forward;
decoded frames are matched to frame numbers by their pts, so every sampled frame gets the
same number, time and pixels however the video is cut into segments.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import BinaryIO, Iterator, Optional, Union

import av
import numpy as np

from maskray.errors import first_line
from maskray.pipeline import storage
from maskray.pipeline.inputs.errors import DecodeError, missing_is_transient, read_problem
from maskray.pipeline.inputs.images import MAX_DECODE_PIXELS
from maskray.pipeline.inputs.video_pixels import upright_rgb

# PyAV reads Python file objects in chunks of this size; large chunks mean few object-store GETs.
_REMOTE_BUFFER_BYTES = 4 * 1024 * 1024
Source = Union[str, BinaryIO]


@dataclass(frozen=True)
class VideoIndex:
    """Where every frame of one video stream is, from its packets.

    `pts[i]` is the pts of frame `first_frame + i` (presentation order, stream time base);
    `keyframes` are frame numbers (global) of keyframes; `num_frames` counts the whole
    video even in a window. `problem` says why the video cannot be read to its end
    (truncated or corrupt after some frames), or is None.
    """

    time_base: Fraction
    fps: float
    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    origin_pts: int
    num_frames: int
    duration: float = 0.0  # seconds, whole video: last frame's time + one frame
    width: int = 0
    height: int = 0
    stream_index: int = 0
    first_frame: int = 0
    problem: Optional[str] = None
    _position: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_position", {p: self.first_frame + i for i, p in enumerate(self.pts)})

    @property
    def end_frame(self) -> int:
        """One past the last frame this index (or window) covers."""
        return self.first_frame + len(self.pts)

    def pts_of(self, frame: int) -> int:
        return self.pts[frame - self.first_frame]

    def time(self, frame: int) -> float:
        """Presentation time of `frame` in seconds from the first frame."""
        return float((self.pts_of(frame) - self.origin_pts) * self.time_base)

    def frame_at_pts(self, pts: int) -> Optional[int]:
        return self._position.get(pts)

    def window(self, start: int, end: int) -> "VideoIndex":
        """The part of the index a segment `[start, end)` needs to be decoded on its own."""
        start, end = max(start, self.first_frame), min(end, self.end_frame)
        keyframes = tuple(k for k in self.keyframes if start <= k < end)
        # Only the segment reaching the end of a broken video reports its problem.
        problem = self.problem if end == self.end_frame else None
        offset = start - self.first_frame
        return replace(self, pts=self.pts[offset:end - self.first_frame], keyframes=keyframes,
                       first_frame=start, problem=problem)

    def to_dict(self) -> dict:
        return {
            "time_base": [self.time_base.numerator, self.time_base.denominator],
            "fps": self.fps, "pts": list(self.pts), "keyframes": list(self.keyframes),
            "origin_pts": self.origin_pts, "num_frames": self.num_frames,
            "duration": self.duration, "width": self.width,
            "height": self.height, "stream_index": self.stream_index,
            "first_frame": self.first_frame, "problem": self.problem,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "VideoIndex":
        values = dict(data)
        values["time_base"] = Fraction(*values["time_base"])
        values["pts"] = tuple(values["pts"])
        values["keyframes"] = tuple(values["keyframes"])
        return cls(**values)


@dataclass(frozen=True)
class DecodedFrame:
    """A frame as displayed (rotation applied): `rgb` maybe reduced, `width`/`height` full size."""

    frame: int
    time: float
    rgb: np.ndarray  # (h, w, 3) uint8
    width: int = 0
    height: int = 0


def build_index(source: Source) -> VideoIndex:
    """Index the first video stream of `source` (URI or seekable file) by demuxing its packets.

    Raises DecodeError when the file cannot be opened as a video or holds no frames. A video
    that breaks part-way keeps the frames before the break and names the break in `problem`.
    """
    with _open_container(source) as container:
        if not container.streams.video:
            raise DecodeError("no video stream")
        stream = container.streams.video[0]
        pts_values: set[int] = set()
        key_pts: set[int] = set()
        problem = None
        try:
            for packet in container.demux(stream):
                pts = packet.pts if packet.pts is not None else packet.dts
                if pts is None or packet.size == 0 or getattr(packet, "is_discard", False):
                    continue
                pts_values.add(pts)
                if packet.is_keyframe:
                    key_pts.add(pts)
        except av.FFmpegError as error:
            problem = f"video stream broken after {len(pts_values)} frames: {_short(error)}"
        if not pts_values:
            raise DecodeError(problem or "video has no frames")
        declared = stream.frames or 0
        if problem is None and declared > len(pts_values):
            problem = f"video truncated: {len(pts_values)} of {declared} frames readable"
        pts = tuple(sorted(pts_values))
        fps = _frame_rate(stream, pts)
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        keyframes = tuple(i for i, value in enumerate(pts) if value in key_pts) or (0,)
        return VideoIndex(
            time_base=time_base,
            fps=fps,
            pts=pts,
            keyframes=keyframes,
            origin_pts=pts[0],
            num_frames=len(pts),
            duration=float((pts[-1] - pts[0]) * time_base) + 1.0 / fps,
            width=stream.codec_context.width or 0,
            height=stream.codec_context.height or 0,
            stream_index=stream.index,
            problem=problem,
        )


def decode_segment(source: Source, index: VideoIndex, start_frame: int, end_frame: int,
                   wanted, max_pixels: Optional[int] = MAX_DECODE_PIXELS) -> Iterator[DecodedFrame]:
    """Decode frames `[start_frame, end_frame)` and yield those in `wanted`, in order.

    Seeks to the keyframe at or before `start_frame`, decodes forward and stops right
    after the last wanted frame. If the video breaks, the frames decoded before the break
    are yielded first, then DecodeError is raised. Frames are upright (`video_pixels.py`)
    and reduced to at most `max_pixels` (None: full size).
    """
    targets = sorted(f for f in set(wanted) if start_frame <= f < end_frame)
    if not targets:
        return
    progress = _Progress(start_frame - 1)
    with _open_container(source) as container:
        stream = container.streams[index.stream_index]
        stream.thread_type = "AUTO"  # frame + slice threads: decoding is the CPU cost here
        try:
            seek_pts = index.pts_of(start_frame) if start_frame > 0 else None
            try:
                yield from _decode_from(container, stream, seek_pts, index, start_frame, targets, progress,
                                        max_pixels)
            except _SeekMissed:
                # Some containers (e.g. MPEG-TS) seek imprecisely: decode from the very start instead.
                yield from _decode_from(container, stream, _REWIND, index, start_frame, targets, progress,
                                        max_pixels)
        except (av.FFmpegError, _SeekMissed) as error:
            raise DecodeError(f"video broken after frame {progress.frame}: {_short(error)}") from None
    if progress.frame < targets[-1]:
        raise DecodeError(index.problem or f"video ended before frame {targets[-1]}")
    if index.problem and end_frame >= index.end_frame:
        raise DecodeError(index.problem)


def decode_frames(source: str, wanted=None, max_pixels: Optional[int] = None) -> Iterator[DecodedFrame]:
    """Frames of a whole video (or those in `wanted`) numbered as a job numbers them.

    The one definition of a video frame's number, for tools beside the job (render, training
    data): its position in presentation order, from the index, never a decode-order count.
    """
    index = build_index(source)
    frames = range(index.end_frame) if wanted is None else wanted
    yield from decode_segment(source, index, index.first_frame, index.end_frame, frames, max_pixels)


class _SeekMissed(Exception):
    """The seek landed after the first wanted frame (nothing has been yielded yet)."""


class _Progress:
    def __init__(self, frame: int):
        self.frame = frame  # the last frame number reached, for messages and the end check


_REWIND = "rewind"


def _decode_from(container, stream, seek_pts, index: VideoIndex, start_frame: int, targets: list[int],
                 progress: _Progress, max_pixels: Optional[int]) -> Iterator[DecodedFrame]:
    if seek_pts == _REWIND:
        container.seek(0, backward=True, any_frame=False)  # the start of the file, all streams
    elif seek_pts is not None:
        container.seek(seek_pts, backward=True, any_frame=False, stream=stream)
    wanted, last = set(targets), targets[-1]
    last_pts, checked = index.pts_of(last), seek_pts is None or seek_pts == _REWIND
    for decoded in container.decode(stream):
        position = index.frame_at_pts(decoded.pts) if decoded.pts is not None else None
        if position is None:
            if decoded.pts is not None and decoded.pts > last_pts:
                if not checked:
                    raise _SeekMissed("seek went past the segment")
                break
            continue  # a leading frame before the segment, or one the index never saw
        if position < start_frame:
            continue
        if not checked:
            if position > targets[0]:
                raise _SeekMissed(f"seek landed on frame {position}, after frame {targets[0]}")
            checked = True
        progress.frame = position
        if position in wanted:
            rgb, width, height = upright_rgb(decoded, max_pixels)
            yield DecodedFrame(position, index.time(position), rgb, width, height)
        if position >= last:
            break
    if not checked:
        raise _SeekMissed("no frame of the segment after the seek")


def _open_container(source: Source):
    try:
        if isinstance(source, str):
            if storage.is_local(source):
                return av.open(storage.canonical(source))
            return _RemoteContainer(source)
        return av.open(source, buffer_size=_REMOTE_BUFFER_BYTES)
    except av.FFmpegError as error:
        raise DecodeError(f"not a readable video: {_short(error)}") from None
    except OSError as error:
        raise DecodeError(f"cannot read video: {read_problem(error)}", transient=missing_is_transient(error)) from None


class _RemoteContainer:
    """An av container over an object-store file; closes both on exit."""

    def __init__(self, uri: str):
        self._file = storage.open_input(uri)
        try:
            self._container = av.open(self._file, buffer_size=_REMOTE_BUFFER_BYTES)
        except BaseException:
            self._file.close()
            raise

    def __enter__(self):
        return self._container

    def __exit__(self, *exc_info):
        try:
            self._container.close()
        finally:
            self._file.close()


def _frame_rate(stream, pts: tuple[int, ...]) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if rate and float(rate) > 0:
        return float(rate)
    if len(pts) > 1 and stream.time_base:
        return (len(pts) - 1) / float((pts[-1] - pts[0]) * stream.time_base)
    return 25.0  # a single-frame video: any rate gives the same one frame


def _short(error: BaseException) -> str:
    # FFmpeg errors carry errno and file name in str(); their strerror is the readable part.
    return first_line(getattr(error, "strerror", None) or error, limit=200)
