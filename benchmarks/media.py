"""The benchmark's videos: the sample clip, longer copies of it, and a 720p version for GPUs.

Longer videos are made by remuxing the clip's packets several times with shifted timestamps
(no re-encoding, so every copy has the clip's exact pixels and keyframe layout). The 720p
video is re-encoded once (H.264, same frame rate). Results are cached by name; a cached file
is reused only when its frame count is right.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_VIDEO = ROOT / "tests" / "data" / "videos" / "bikes.mp4"


def frame_count(path: Path) -> int:
    """Frames of the first video stream, counted from its packets (no decoding)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.size and p.pts is not None)


def repeated(source: Path, times: int, cache: Path) -> Path:
    """`source` played `times` times in a row, as one mp4 in `cache` (made once)."""
    if times == 1:
        return source
    target = cache / f"{source.stem}_x{times}.mp4"
    expected = frame_count(source) * times
    if target.exists() and frame_count(target) == expected:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.mp4")
    with av.open(str(source)) as first:
        stream = first.streams.video[0]
        packets = [p for p in first.demux(stream) if p.size and p.pts is not None]
        # One clip length in the stream's time base: last pts + one frame - first pts.
        step = round(1 / (float(stream.average_rate) * stream.time_base))
        span = max(p.pts for p in packets) + step - min(p.pts for p in packets)
        with av.open(str(partial), "w", format="mp4") as output:
            out_stream = output.add_stream_from_template(stream)
            for copy in range(times):
                for packet in packets:
                    packet.pts += span if copy else 0
                    packet.dts = None if packet.dts is None else packet.dts + (span if copy else 0)
                    packet.stream = out_stream
                    output.mux(packet)
    partial.replace(target)
    return target


def scaled(source: Path, width: int, height: int, cache: Path) -> Path:
    """`source` re-encoded at `width`x`height` (H.264, yuv420p, same rate), made once."""
    target = cache / f"{source.stem}_{width}x{height}.mp4"
    expected = frame_count(source)
    if target.exists() and frame_count(target) == expected:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.mp4")
    with av.open(str(source)) as inp, av.open(str(partial), "w", format="mp4") as output:
        in_stream = inp.streams.video[0]
        out_stream = output.add_stream("libx264", rate=in_stream.average_rate)
        out_stream.width, out_stream.height, out_stream.pix_fmt = width, height, "yuv420p"
        out_stream.options = {"crf": "20", "preset": "veryfast", "g": "50"}
        frame_time = Fraction(1, 1) / Fraction(in_stream.average_rate)
        out_stream.codec_context.time_base = frame_time
        for number, frame in enumerate(inp.decode(in_stream)):
            image = frame.reformat(width=width, height=height, format="yuv420p")
            image.pts, image.time_base = number, frame_time  # one tick per frame
            output.mux(out_stream.encode(image))
        output.mux(out_stream.encode(None))
    partial.replace(target)
    return target
