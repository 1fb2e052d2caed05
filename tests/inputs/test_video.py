"""Video index, sampling, segmenting and segment decoding on the real sample videos."""

from __future__ import annotations

import hashlib
import json

import av
import pytest

from maskray.errors import UsageError
from maskray.pipeline.inputs.errors import DecodeError
from maskray.pipeline.inputs.sampling import Sampling, plan_segments, sampled_frames
from maskray.pipeline.inputs.video import VideoIndex, build_index, decode_segment


@pytest.fixture(scope="module")
def bikes(data_dir):
    return str(data_dir / "videos" / "bikes.mp4")


@pytest.fixture(scope="module")
def bikes_index(bikes):
    return build_index(bikes)


@pytest.fixture(scope="module")
def straight_decode(bikes):
    """Every frame of bikes.mp4 from one plain PyAV pass: {frame number: (time, pixel digest)}."""
    frames = {}
    with av.open(bikes) as container:
        stream = container.streams.video[0]
        for number, frame in enumerate(container.decode(stream)):
            frames[number] = (float(frame.pts * stream.time_base), _digest(frame.to_ndarray(format="rgb24")))
    return frames


def _digest(rgb) -> str:
    assert rgb.dtype.name == "uint8" and rgb.ndim == 3 and rgb.shape[2] == 3
    return hashlib.sha1(rgb.tobytes()).hexdigest() + str(rgb.shape)


def _decode_all_segments(source, index, segments, wanted):
    """Decode each segment on its own, from a JSON round trip of its index window (as a worker does)."""
    decoded = []
    for start, end in segments:
        window = VideoIndex.from_dict(json.loads(json.dumps(index.window(start, end).to_dict())))
        decoded.extend(decode_segment(source, window, start, end, wanted))
    return decoded


def test_index_of_bikes_matches_the_file(bikes_index):
    assert bikes_index.num_frames == 250
    assert bikes_index.keyframes == (0, 30, 76, 137, 187, 242)
    assert bikes_index.fps == pytest.approx(25.0)
    assert bikes_index.duration == pytest.approx(10.0)
    assert (bikes_index.width, bikes_index.height) == (640, 272)
    assert bikes_index.time(0) == 0.0 and bikes_index.time(25) == pytest.approx(1.0)
    assert bikes_index.problem is None


@pytest.mark.parametrize("every", [1, 7])
def test_segmented_decoding_equals_one_straight_decode(bikes, bikes_index, straight_decode, every):
    segments = plan_segments(bikes_index, 0.5)
    assert len(segments) == 6  # one per keyframe interval
    wanted = sampled_frames(bikes_index, Sampling(every=every))
    assert wanted == list(range(0, 250, every))
    decoded = _decode_all_segments(bikes, bikes_index, segments, set(wanted))
    # Every sampled frame exactly once, in order: none twice, none missed.
    assert [d.frame for d in decoded] == wanted
    for item in decoded:
        time, digest = straight_decode[item.frame]
        assert item.time == pytest.approx(time, abs=1e-9)
        assert _digest(item.rgb) == digest


def test_decoding_stops_at_the_last_wanted_frame(bikes, bikes_index, straight_decode):
    decoded = list(decode_segment(bikes, bikes_index, 137, 187, {140, 150}))
    assert [d.frame for d in decoded] == [140, 150]
    assert [_digest(d.rgb) for d in decoded] == [straight_decode[140][1], straight_decode[150][1]]


def test_single_keyframe_video_stays_one_segment(data_dir):
    index = build_index(str(data_dir / "videos" / "carphone_pristine.mp4"))
    assert index.num_frames == 120 and index.keyframes == (0,)
    assert index.fps == pytest.approx(29.97, abs=0.01)
    assert plan_segments(index, 0.5) == [(0, 120)]
    assert plan_segments(index, None) == [(0, 120)]


def test_segments_start_on_keyframes_and_cover_the_video(bikes_index):
    for seconds in (0.1, 2.0, 3.0, 100.0):
        segments = plan_segments(bikes_index, seconds)
        assert segments[0][0] == 0 and segments[-1][1] == 250
        assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))
        assert all(start in bikes_index.keyframes for start, _ in segments)
    assert plan_segments(bikes_index, 100.0) == [(0, 250)]


def test_fps_sampling_takes_the_first_frame_at_or_after_each_tick(bikes_index, bikes, straight_decode):
    assert sampled_frames(bikes_index, Sampling(fps=5)) == list(range(0, 250, 5))
    assert sampled_frames(bikes_index, Sampling(fps=100)) == list(range(250))
    two = sampled_frames(bikes_index, Sampling(fps=2))
    assert len(two) == 20
    for k, frame in enumerate(two):
        assert bikes_index.time(frame) >= k / 2 - 1e-9
        assert frame == 0 or bikes_index.time(frame - 1) < k / 2
    decoded = _decode_all_segments(bikes, bikes_index, plan_segments(bikes_index, 2.0), set(two))
    assert [d.frame for d in decoded] == two
    assert all(_digest(d.rgb) == straight_decode[d.frame][1] for d in decoded)


def test_keyframe_sampling_decodes_the_keyframes(bikes, bikes_index, straight_decode):
    wanted = sampled_frames(bikes_index, Sampling(keyframes=True))
    assert wanted == [0, 30, 76, 137, 187, 242]
    decoded = _decode_all_segments(bikes, bikes_index, plan_segments(bikes_index, 3.0), set(wanted))
    assert [d.frame for d in decoded] == wanted
    assert all(_digest(d.rgb) == straight_decode[d.frame][1] for d in decoded)


def test_sampling_refuses_contradictory_or_invalid_choices():
    with pytest.raises(UsageError, match="--every, --fps"):
        Sampling(every=2, fps=1.0)
    for bad in (dict(every=0), dict(every=1.5), dict(fps=0.0), dict(fps=-3.0)):
        with pytest.raises(UsageError):
            Sampling(**bad)
    assert Sampling.from_dict(Sampling(fps=2.5).to_dict()) == Sampling(fps=2.5)


def test_truncated_video_without_index_is_a_short_decode_error(bikes, tmp_path):
    data = open(bikes, "rb").read()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: int(len(data) * 0.4)])  # the moov box is at the end: gone
    with pytest.raises(DecodeError) as caught:
        build_index(str(truncated))
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 250


def test_truncated_streamable_video_keeps_the_frames_before_the_break(bikes, tmp_path, straight_decode):
    streamable = tmp_path / "faststart.mp4"
    _remux_faststart(bikes, streamable)
    data = streamable.read_bytes()
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(data[: int(len(data) * 0.4)])
    index = build_index(str(truncated))
    assert 0 < index.num_frames < 250 and index.problem
    decoded = []
    with pytest.raises(DecodeError):
        for start, end in plan_segments(index, 1.0):
            for item in decode_segment(str(truncated), index.window(start, end), start, end, range(250)):
                decoded.append(item)
    assert len(decoded) > 30  # at least the first keyframe interval survived
    assert all(_digest(d.rgb) == straight_decode[d.frame][1] for d in decoded)
    assert [d.frame for d in decoded] == list(range(len(decoded)))


@pytest.mark.parametrize("content", [b"", b"this is not a video at all\n" * 20])
def test_non_video_is_a_decode_error(tmp_path, content):
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(content)
    with pytest.raises(DecodeError) as caught:
        build_index(str(fake))
    assert "\n" not in str(caught.value)


def test_video_on_s3_decodes_like_the_local_file(bikes, bikes_index, straight_decode, s3_client, s3_bucket):
    s3_client.upload_file(bikes, s3_bucket, "clips/bikes.mp4")
    uri = f"s3://{s3_bucket}/clips/bikes.mp4"
    index = build_index(uri)
    assert index.pts == bikes_index.pts and index.keyframes == bikes_index.keyframes
    decoded = list(decode_segment(uri, index.window(137, 187), 137, 187, {137, 150, 186}))
    assert [d.frame for d in decoded] == [137, 150, 186]
    assert all(_digest(d.rgb) == straight_decode[d.frame][1] for d in decoded)


@pytest.mark.parametrize("container_format", ["matroska", "mpegts"])
def test_other_containers_decode_in_segments_like_straight(bikes, tmp_path, straight_decode, container_format):
    """MKV seeks precisely; MPEG-TS does not, and decoding falls back to reading from the start."""
    copy = tmp_path / f"bikes.{container_format}"
    _remux(bikes, copy, format=container_format)
    index = build_index(str(copy))
    assert index.num_frames == 250 and index.time(0) == 0.0
    decoded = _decode_all_segments(str(copy), index, plan_segments(index, 2.0), set(range(0, 250, 3)))
    assert [d.frame for d in decoded] == list(range(0, 250, 3))
    assert all(_digest(d.rgb) == straight_decode[d.frame][1] for d in decoded)
    assert decoded[-1].time == pytest.approx(straight_decode[249][0], abs=1e-6)


def _remux_faststart(source, target):
    """Copy the video stream with the index (moov) first, as streaming encoders write it."""
    _remux(source, target, options={"movflags": "faststart"})


def _remux(source, target, **output_options):
    with av.open(source) as inp, av.open(str(target), "w", **output_options) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
