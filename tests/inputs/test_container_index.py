"""Frame indexes from containers' own tables equal the demuxed ones, from a small part of the file."""

from __future__ import annotations

import os
import shutil
from fractions import Fraction

import av
import numpy as np
import pytest

from maskray.pipeline.inputs.container_index import index_video, read_container_index
from maskray.pipeline.inputs.errors import DecodeError
from maskray.pipeline.inputs.frame_index import FrameIndex
from maskray.pipeline.inputs.video import build_index, decode_segment
from maskray.pipeline.output import layout


def _encode(path, container, codec="libx264", frames=60, vfr=False, options=None, muxer_options=None):
    """A 160x120 clip of moving noise (so frames are KBs, not bytes); B-frames by default."""
    rng = np.random.default_rng(7)
    time_base = Fraction(1, 1000)
    with av.open(str(path), "w", format=container, options=muxer_options or {}) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = options if options is not None else {"bf": "3", "g": "12", "preset": "veryfast"}
        stream.codec_context.time_base = time_base
        base = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        pts = 0
        for number in range(frames):
            image = np.roll(base, number * 3, axis=1)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = pts, time_base
            pts += int(rng.integers(15, 90)) if vfr else 40
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return str(path)


def _remux(source, target, container, muxer_options=None):
    with av.open(source) as inp, av.open(str(target), "w", format=container, options=muxer_options or {}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return str(target)


@pytest.fixture(scope="module")
def videos(data_dir, tmp_path_factory):
    """name -> (path, which container reader must index it)."""
    folder = tmp_path_factory.mktemp("videos")
    bikes = str(data_dir / "videos" / "bikes.mp4")
    return {
        "bikes.mp4": (bikes, "mp4"),
        "carphone.mp4 (one keyframe, 29.97 fps)": (str(data_dir / "videos" / "carphone_pristine.mp4"), "mp4"),
        "bframes.mp4": (_encode(folder / "bframes.mp4", "mp4"), "mp4"),
        "bframes-vfr.mp4": (_encode(folder / "vfr.mp4", "mp4", vfr=True), "mp4"),
        "bframes-faststart.mp4": (_encode(folder / "fast.mp4", "mp4", muxer_options={"movflags": "faststart"}), "mp4"),
        "bframes.mov": (_encode(folder / "bframes.mov", "mov"), "mp4"),
        "mpeg4-bframes.mp4": (_encode(folder / "mpeg4.mp4", "mp4", codec="mpeg4",
                                      options={"bf": "2", "g": "12"}), "mp4"),
        "bikes.mkv": (_remux(bikes, folder / "bikes.mkv", "matroska"), "mkv"),
        "bframes-vfr.mkv": (_encode(folder / "vfr.mkv", "matroska", vfr=True), "mkv"),
        "vp9.webm": (_encode(folder / "vp9.webm", "webm", codec="libvpx-vp9", frames=30,
                             options={"deadline": "realtime", "cpu-used": "8"}), "mkv"),
        "bikes.ts (no container index)": (_remux(bikes, folder / "bikes.ts", "mpegts"), "demux"),
    }


CASES = ["bikes.mp4", "carphone.mp4 (one keyframe, 29.97 fps)", "bframes.mp4", "bframes-vfr.mp4",
         "bframes-faststart.mp4", "bframes.mov", "mpeg4-bframes.mp4", "bikes.mkv", "bframes-vfr.mkv",
         "vp9.webm", "bikes.ts (no container index)"]


@pytest.mark.parametrize("name", CASES)
def test_container_index_equals_demuxing_and_reads_under_5_percent(videos, name):
    path, reader = videos[name]
    demuxed = build_index(path)
    index, report = index_video(path)
    assert report.how == reader
    assert index.to_video_index() == demuxed  # pts, keyframes, time base, fps, size, stream, problem
    if reader != "demux":
        size = os.path.getsize(path)
        assert report.bytes_read < 0.05 * size, f"read {report.bytes_read} of {size} bytes"


def test_bframe_videos_really_have_reordered_frames(videos):
    """The B-frame cases test what they claim: decode order differs from presentation order."""
    for name in ("bframes.mp4", "bframes-vfr.mkv"):
        with av.open(videos[name][0]) as container:
            stream = container.streams.video[0]
            pts = [packet.pts for packet in container.demux(stream) if packet.size]
        assert pts != sorted(pts), name
    vfr = build_index(videos["bframes-vfr.mp4"][0])
    assert len(set(np.diff(vfr.pts))) > 5  # variable frame durations


def test_truncated_mp4_falls_back_to_demuxing_and_names_the_break(videos, tmp_path):
    """Sample tables that point past the end of the file are not trusted: demuxing decides."""
    source = videos["bframes-faststart.mp4"][0]  # index first, so the cut keeps it
    cut = tmp_path / "cut.mp4"
    data = open(source, "rb").read()
    cut.write_bytes(data[:len(data) // 2])
    assert read_container_index(str(cut))[0] is None
    index, report = index_video(str(cut))
    assert report.how == "demux"
    assert index.to_video_index() == build_index(str(cut))
    assert index.problem and index.num_frames < 60


def test_not_a_video_is_the_same_decode_error(tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200)
    with pytest.raises(DecodeError):
        index_video(str(fake))


def test_index_cache_in_out_is_used_and_follows_source_changes(videos, tmp_path):
    source = tmp_path / "clip.mp4"
    shutil.copyfile(videos["bframes.mp4"][0], source)
    out = str(tmp_path / "out")
    first, report = index_video(str(source), out)
    assert report.how == "mp4"
    cached = [name for name in os.listdir(os.path.join(out, layout.INDEXES))]
    assert len(cached) == 1 and cached[0].endswith(".npz")
    again, report = index_video(str(source), out)
    assert report.how == "cache" and report.bytes_read == 0 and again.same_frames(first)
    # A different video under the same name (new size and mtime) is indexed again, not served stale.
    shutil.copyfile(videos["bikes.mp4"][0], source)
    os.utime(source, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    changed, report = index_video(str(source), out)
    assert report.how == "mp4" and changed.num_frames == 250


def test_a_damaged_cache_blob_is_rebuilt_not_trusted(videos, tmp_path):
    source = videos["bikes.mp4"][0]
    out = str(tmp_path / "out")
    index_video(source, out)
    folder = os.path.join(out, layout.INDEXES)
    blob = os.path.join(folder, os.listdir(folder)[0])
    with open(blob, "wb") as stream:
        stream.write(b"not an index")
    index, report = index_video(source, out)
    assert report.how == "mp4" and index.to_video_index() == build_index(source)


def test_compact_index_round_trips_and_windows_like_the_tuple_index(videos):
    demuxed = build_index(videos["bikes.mp4"][0])
    compact = FrameIndex.from_bytes(FrameIndex.from_video_index(demuxed).to_bytes())
    assert compact.pts.dtype == np.int64 and compact.to_video_index() == demuxed
    for start, end in ((0, 30), (30, 76), (137, 250), (200, 400)):
        assert compact.window(start, end) == demuxed.window(start, end)


def test_segments_decoded_with_a_container_index_match_a_straight_decode(videos):
    path = videos["bframes-vfr.mkv"][0]
    index = index_video(path)[0]
    with av.open(path) as container:
        straight = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    decoded = []
    for start, end in ((0, 24), (24, 60)):
        decoded.extend(decode_segment(path, index.window(start, end), start, end, range(start, end)))
    assert [d.frame for d in decoded] == list(range(60))
    assert all(np.array_equal(d.rgb, straight[d.frame]) for d in decoded)


def test_video_on_s3_is_indexed_from_its_header_with_ranged_reads(videos, s3_client, s3_bucket):
    for name, key in (("bikes.mp4", "clips/bikes.mp4"), ("bikes.mkv", "clips/bikes.mkv")):
        path = videos[name][0]
        s3_client.upload_file(path, s3_bucket, key)
        index, report = index_video(f"s3://{s3_bucket}/{key}", f"s3://{s3_bucket}/out")
        assert report.how == videos[name][1]
        assert index.to_video_index() == build_index(path)
        assert report.bytes_read < 0.05 * os.path.getsize(path)
        again, report = index_video(f"s3://{s3_bucket}/{key}", f"s3://{s3_bucket}/out")
        assert report.how == "cache" and again.same_frames(index)
