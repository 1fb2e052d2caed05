"""Planning at scale: segments capped whatever the job size, indexing as cluster tasks cached in
OUT (the driver reads no media bytes), and a resume with another --segment-seconds."""

from __future__ import annotations

import os

import av
import pytest

from maskray.jobs.launch import run_job
from maskray.pipeline.execution.planning_tasks import ClusterRunner
from maskray.pipeline.inputs.listing import MediaFile
from maskray.pipeline.inputs.plan_stream import ShardStream, plan_settings, plan_shards
from maskray.pipeline.inputs.sampling import Sampling
from maskray.pipeline.inputs.shards import MAX_SEGMENT_SECONDS
from maskray.pipeline.inputs.video import build_index
from maskray.pipeline.output import layout
from submit_helpers import commits, frame_keys, local_ray, read_table, small_spec


def _remux(source: str, target, container: str, times: int = 1) -> str:
    """`source` played `times` times in a row (packets copied, timestamps shifted)."""
    with av.open(source) as inp, av.open(str(target), "w", format=container) as out:
        stream = inp.streams.video[0]
        packets = [p for p in inp.demux(stream) if p.size and p.pts is not None]
        span = max(p.pts for p in packets) + 512 - min(p.pts for p in packets)  # bikes: 512 ticks a frame
        template = out.add_stream_from_template(stream)
        for copy in range(times):
            for packet in packets:
                packet.pts += span if copy else 0
                packet.dts = packet.dts + (span if copy else 0)
                packet.stream = template
                out.mux(packet)
    return str(target)


@pytest.fixture(scope="module")
def bikes(data_dir) -> str:
    return str(data_dir / "videos" / "bikes.mp4")


@pytest.fixture(scope="module")
def long_video(bikes, tmp_path_factory) -> str:
    """bikes.mp4 30 times: 300 s, 7,500 frames."""
    return _remux(bikes, tmp_path_factory.mktemp("long") / "long.mp4", "mp4", times=30)


def test_segments_are_capped_whatever_the_job_size(long_video):
    index = build_index(long_video)
    gap = max(index.time(b) - index.time(a) for a, b in zip(index.keyframes, index.keyframes[1:]))
    media = [MediaFile(long_video, "video", os.path.getsize(long_video))]
    for segment_seconds in (None, 600.0):  # automatic for 1 worker would be 75 s; asked 600 s
        shards = plan_shards(media, Sampling(every=10), segment_seconds, workers=1)
        lengths = [index.time(s.end_frame - 1) - index.time(s.start_frame) for s in shards]
        assert len(shards) >= 300 / (MAX_SEGMENT_SECONDS + gap)
        assert max(lengths) < MAX_SEGMENT_SECONDS + gap
        ranges = sorted((s.start_frame, s.end_frame) for s in shards)  # they tile the video
        assert ranges[0][0] == 0 and ranges[-1][1] == 7500 and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert sum(s.expected_frames for s in shards) == 750  # every 10th frame, each in one shard


@pytest.fixture(scope="module")
def ray_session():
    with local_ray() as ray:
        yield ray


@pytest.mark.ray
def test_indexing_runs_on_the_cluster_and_the_driver_reads_no_video(ray_session, bikes, long_video, tmp_path):
    """The driver process's own reads (rchar) stay far below the videos' bytes, the MPEG-TS
    one (demuxed: no container index) included; each index lands in OUT's cache, and the
    shards planned on the cluster are those planned here."""
    ts_video = _remux(long_video, tmp_path / "long.ts", "mpegts")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 5000)
    paths = [bikes, long_video, ts_video, str(broken)]
    media = [MediaFile(path, "video", os.path.getsize(path)) for path in paths]
    output = str(tmp_path / "out")
    _plan_on_cluster(media[:1], None)  # first use imports modules (their files count as reads): not per video
    before = _driver_bytes_read()
    shards = _plan_on_cluster(media, output)
    read = _driver_bytes_read() - before
    video_bytes = sum(item.size for item in media)
    assert read < 0.05 * video_bytes, f"the driver read {read} bytes for {video_bytes} bytes of video"
    errors = [s for s in shards if s.planning_error]
    assert [s.uris for s in errors] == [(str(broken),)] and "\n" not in errors[0].planning_error
    assert len(os.listdir(os.path.join(output, layout.INDEXES))) == 3
    here = plan_shards(media, Sampling(every=10), None, workers=2, output=str(tmp_path / "here"))
    assert sorted(s.to_dict()["id"] for s in shards) == sorted(s.id for s in here)
    assert {s.index_key for s in shards if not s.planning_error} == {s.index_key for s in here if not s.planning_error}


@pytest.mark.ray
def test_planning_reads_one_video_at_a_time_until_a_replica_is_up(ray_session, bikes, tmp_path):
    """On a small machine each planning task may start a Ray worker process, which would slow
    the replicas' own start: one at a time until the first replica is up, then a few per core."""
    copies = []
    for number in range(6):
        copies.append(tmp_path / f"bikes-{number}.mp4")
        copies[-1].write_bytes(open(bikes, "rb").read())
    media = [MediaFile(str(path), "video", os.path.getsize(path)) for path in copies]
    runner = ClusterRunner()
    stream = ShardStream(media, plan_settings(media, Sampling(every=10), None, workers=2, output=None), runner)
    assert runner.max_in_flight == 1  # a 2-CPU cluster
    shards = stream.poll(timeout=0.0)
    assert len(stream._in_flight) == 1
    runner.replicas_started()
    shards += stream.poll(timeout=0.0)
    assert runner.max_in_flight == 4 and len(stream._in_flight) == 4
    while not stream.done:
        shards += stream.poll(timeout=1.0)
    assert {s.uris for s in shards} == {(str(path),) for path in copies}


def _plan_on_cluster(media: list, output) -> list:
    settings = plan_settings(media, Sampling(every=10), None, workers=2, output=output)
    stream, shards = ShardStream(media, settings, ClusterRunner()), []
    while not stream.done:
        shards += stream.poll(timeout=1.0)
    return shards


def _driver_bytes_read() -> int:
    with open("/proc/self/io") as stream:
        return int(next(line for line in stream if line.startswith("rchar")).split()[1])


@pytest.mark.ray
def test_resume_with_another_segment_length_keeps_every_frame_once(ray_session, bikes, tmp_path):
    """Without tracking the cut does not change results (with it, track ids are stitched across
    cuts, so --segment-seconds stays part of the job's identity)."""
    output = tmp_path / "out"
    assert small_spec([bikes], output, track=True, segment_seconds=2.0).fingerprint() != \
        small_spec([bikes], output, track=True, segment_seconds=5.0).fingerprint()
    assert run_job(small_spec([bikes], output, every=25, segment_seconds=2.0, track=False)) == 0
    first = set(commits(str(output)))
    assert len(first) > 1
    # Another cut is accepted (it does not change results): new shards, each frame once.
    assert run_job(small_spec([bikes], output, every=25, segment_seconds=5.0, track=False)) == 0
    records = commits(str(output))
    assert set(records) != first
    keys = frame_keys(read_table(str(output), "frames"))
    assert set(keys) == {(bikes, f) for f in range(0, 250, 25)} and set(keys.values()) == {1}
