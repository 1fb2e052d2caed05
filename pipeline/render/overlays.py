"""Render an output's instances over its source image or video, for a person to look at.

An image gives a PNG/JPEG/WebP. A video gives a video (MP4 with H.264 where the encoder is
available, else MPEG-4 Part 2) at the source's frame rate. `frames="all"` (default) writes
every frame of the video: frames the job processed carry their instances, the frames that
sampling (`--every`, `--fps`, `--keyframes`) skipped are shown as they are, so the clip
keeps its real speed. `frames="processed"` writes only processed frames, at the source's
rate divided by the sampling step, a compact flip-book of what the model saw. A single
frame of a video can be rendered to an image with `frame=N`.
"""

from __future__ import annotations

import io
import os
import posixpath
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import av
import numpy as np
import pyarrow.dataset as ds
from PIL import Image

from maskray.errors import UsageError
from maskray.pipeline import storage
from maskray.pipeline.render.drawing import draw_instances
from maskray.pipeline.inputs.errors import DecodeError
from maskray.pipeline.inputs.images import decode_image
from maskray.pipeline.inputs.video import decode_frames
from maskray.pipeline.output.reader import Output, open_output, write_file

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".m4v")
# Preferred encoders, best first; mpeg4 ships with every FFmpeg build.
VIDEO_CODECS = ("libx264", "h264", "mpeg4")
_COLUMNS = ["frame", "instance", "category_id", "category", "score", "x1", "y1", "x2", "y2",
            "mask_rle", "keypoints", "width", "height", "track_id"]


@dataclass
class RenderSummary:
    source: str  # the source as the output names it
    out: str
    frames_written: int
    frames_annotated: int
    instances_drawn: int


def render(output_uri: str, source: str, out_uri: str, *, min_score: float = 0.5,
           frames: str = "all", frame: Optional[int] = None, trails: int = 0) -> RenderSummary:
    """Draw the instances of `source` found in `output_uri` and write the picture to `out_uri`.

    Tracked video instances are coloured by track; `trails`: also draw each track's path over
    its last `trails` processed frames.
    """
    if frames not in ("all", "processed"):
        raise UsageError(f"frames must be 'all' or 'processed', got {frames!r}")
    suffix = posixpath.splitext(out_uri.lower())[1]
    if suffix not in IMAGE_FORMATS and suffix not in VIDEO_SUFFIXES:
        raise UsageError(f"--out must end with one of {', '.join([*IMAGE_FORMATS, *VIDEO_SUFFIXES])}")
    output = open_output(output_uri)
    key, is_image = find_source(output, source)
    by_frame = _instances_by_frame(output, key, min_score)
    read_from = storage.canonical(source)
    if not storage.exists(read_from):
        raise UsageError(f"source not found: {source}")
    if is_image and frame not in (None, 0):
        raise UsageError(f"{source} is an image: it has only frame 0, not --frame {frame}")
    if is_image or frame is not None:
        if suffix not in IMAGE_FORMATS:
            raise UsageError("an image (or a video with --frame) renders to .png, .jpg or .webp")
        rgb = _read_image(read_from) if is_image else _video_frame(read_from, frame)
        rows = by_frame.get(0 if is_image else frame, [])
        _check_size(rgb, rows, source)
        buffer = io.BytesIO()
        paths = _trails(by_frame, frame, trails) if frame is not None else None
        Image.fromarray(draw_instances(rgb, rows, trails=paths)).save(buffer, format=IMAGE_FORMATS[suffix])
        write_file(out_uri, buffer.getvalue())
        return RenderSummary(key, out_uri, 1, int(bool(rows)), len(rows))
    if suffix not in VIDEO_SUFFIXES:
        raise UsageError(f"{source} is a video: write a {', '.join(VIDEO_SUFFIXES)} file, or pass --frame N")
    processed = _processed_frames(output, key)
    return _render_video(read_from, key, out_uri, by_frame, processed, frames, trails)


def find_source(output: Output, given: str) -> tuple[str, bool]:
    """The output's name for `given` and whether it is an image.

    Exact match of the canonical URI first, then a unique match of the path's tail
    (`videos/gate.mp4`), then of the basename; a UsageError names the choices otherwise.
    """
    table = output.sql("SELECT source, bool_and(time IS NULL) AS is_image FROM frames GROUP BY 1")
    known = dict(zip(table.column("source").to_pylist(), table.column("is_image").to_pylist()))
    if not known:
        raise UsageError(f"{output.uri} has no committed frames yet")
    wanted = storage.canonical(given)
    if wanted in known:
        return wanted, bool(known[wanted])
    parts = [p for p in given.replace("\\", "/").split("/") if p not in ("", ".")]
    for tail in ("/".join(parts), parts[-1] if parts else ""):
        hits = [s for s in known if tail and (s == tail or s.endswith("/" + tail))]
        if len(hits) == 1:
            return hits[0], bool(known[hits[0]])
        if len(hits) > 1:
            raise UsageError(f"{given} matches several sources: {', '.join(sorted(hits)[:5])}")
    examples = ", ".join(sorted(known)[:5])
    raise UsageError(f"{given} is not a source of {output.uri} (sources include: {examples})")


def _instances_by_frame(output: Output, source: str, min_score: float) -> dict[int, list[dict]]:
    table = output.instances_table(
        _COLUMNS, filter=(ds.field("source") == source) & (ds.field("score") >= min_score)
    )
    grouped: dict[int, list[dict]] = defaultdict(list)
    for row in sorted(table.to_pylist(), key=lambda r: (r["frame"], r["instance"])):
        grouped[row["frame"]].append(row)
    return grouped


def _trails(by_frame: dict, frame: int, length: int) -> Optional[dict]:
    """{track_id: box centres over the last `length` processed frames up to `frame`}."""
    if length <= 0:
        return None
    recent = [f for f in sorted(by_frame) if f <= frame][-length:]
    paths: dict[int, list] = defaultdict(list)
    for f in recent:
        for row in by_frame[f]:
            if row.get("track_id") is not None:
                paths[row["track_id"]].append(((row["x1"] + row["x2"]) / 2, (row["y1"] + row["y2"]) / 2))
    return dict(paths)


def _processed_frames(output: Output, source: str) -> list[int]:
    table = output.frames().to_table(
        columns=["frame"], filter=(ds.field("source") == source) & (ds.field("status") == "ok")
    )
    return sorted(set(table.column("frame").to_pylist()))


def _check_size(rgb: np.ndarray, rows: list[dict], source: str) -> None:
    if rows and (rows[0]["height"], rows[0]["width"]) != rgb.shape[:2]:
        raise UsageError(
            f"{source} is {rgb.shape[1]}x{rgb.shape[0]} but the output's frame is "
            f"{rows[0]['width']}x{rows[0]['height']}: is it the same file?"
        )


def _read_image(uri: str) -> np.ndarray:
    try:
        return decode_image(storage.read_bytes(uri))
    except DecodeError as error:
        raise UsageError(f"cannot read {uri}: {error}") from None


def _video_frame(uri: str, wanted: int) -> np.ndarray:
    """Frame `wanted` as a job numbers it (presentation order, upright: inputs/video.py)."""
    try:
        for decoded in decode_frames(uri, [wanted]):
            return decoded.rgb
    except (DecodeError, av.FFmpegError, OSError) as error:
        if isinstance(error, DecodeError) and "ended before frame" in str(error):
            raise UsageError(f"{uri} has no frame {wanted}") from None
        raise UsageError(f"cannot read video {uri}: {error}") from None
    raise UsageError(f"{uri} has no frame {wanted}")


def _render_video(uri: str, key: str, out_uri: str, by_frame: dict, processed: list[int], mode: str,
                  trails: int = 0) -> RenderSummary:
    """Encode into a temp file beside the target (or in /tmp for an object store), then
    rename or upload it, so a reader never finds half a video under the final name."""
    local_out = storage.canonical(out_uri) if storage.is_local(out_uri) else None
    folder = os.path.dirname(local_out) if local_out else None
    if folder:
        os.makedirs(folder, exist_ok=True)
    handle, temp_path = tempfile.mkstemp(suffix=posixpath.splitext(out_uri)[1], dir=folder, prefix=".render-")
    os.close(handle)
    try:
        try:
            written, annotated, drawn = _encode(uri, temp_path, by_frame, processed, mode, trails)
        except av.FFmpegError as error:
            raise UsageError(f"video {uri} -> {out_uri}: {error}") from None
        if not written:
            raise UsageError(f"no frames to write from {uri}")
        if local_out:
            os.replace(temp_path, local_out)
        else:
            with open(temp_path, "rb") as stream:
                write_file(out_uri, stream.read())
    finally:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
    return RenderSummary(key, out_uri, written, annotated, drawn)


def _encode(uri: str, target: str, by_frame: dict, processed: list[int], mode: str,
            trails: int = 0) -> tuple[int, int, int]:
    """Decode `uri` frame by frame, draw where there are instances, encode to `target`.

    Returns (frames written, frames annotated, instances drawn).
    """
    written = annotated = drawn = 0
    wanted = set(processed)
    with storage.open_input(uri) as stream, av.open(stream) as source:
        video = source.streams.video[0]
        video.thread_type = "AUTO"
        rate = Fraction(video.average_rate or video.guessed_rate or 25)
        if mode == "processed":
            rate = rate / _sampling_step(processed)
        with av.open(target, "w") as sink:
            encoder = None
            for decoded in _numbered_frames(uri, wanted if mode == "processed" else None):
                rgb, rows = decoded.rgb, by_frame.get(decoded.frame, [])
                if rows:
                    _check_size(rgb, rows, uri)
                    rgb = draw_instances(rgb, rows, trails=_trails(by_frame, decoded.frame, trails))
                    annotated += 1
                    drawn += len(rows)
                rgb = _even(rgb)
                if encoder is None:
                    encoder = _add_encoder(sink, rate, rgb.shape[1], rgb.shape[0])
                picture = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                picture.pts = written
                sink.mux(encoder.encode(picture))
                written += 1
            if encoder is not None:
                sink.mux(encoder.encode(None))
    return written, annotated, drawn


def _numbered_frames(uri: str, wanted):
    """Upright frames with the job's frame numbers; a video that breaks ends the clip there."""
    try:
        yield from decode_frames(uri, sorted(wanted) if wanted is not None else None)
    except DecodeError:
        return


def _sampling_step(processed: list[int]) -> int:
    """The typical gap between processed frames (1 when every frame was processed)."""
    if len(processed) < 2:
        return 1
    return max(1, int(np.median(np.diff(processed))))


def _even(rgb: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: repeat the last row/column when one is odd."""
    height, width = rgb.shape[:2]
    if height % 2 or width % 2:
        rgb = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return rgb


def _add_encoder(container, rate: Fraction, width: int, height: int):
    for name in VIDEO_CODECS:
        try:
            stream = container.add_stream(name, rate=rate)
            break
        except (ValueError, av.FFmpegError):  # this FFmpeg build has no such encoder
            continue
    else:
        raise UsageError(f"no video encoder available (tried {', '.join(VIDEO_CODECS)})")
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.time_base = 1 / rate
    return stream
