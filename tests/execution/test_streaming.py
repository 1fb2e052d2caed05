"""Planning streams into the job (issue 11): image groups run at once, each video's shards as
soon as its index arrives, a kill mid-planning resumes, and every sampled frame of VFR and
B-frame videos lands in exactly one shard."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from fractions import Fraction

import av
import numpy as np
import pytest

from maskray.jobs.launch import run_job
from maskray.pipeline.inputs.listing import list_media
from maskray.pipeline.inputs.plan_stream import ShardStream, ThreadRunner, plan_settings, plan_shards
from maskray.pipeline.inputs.sampling import Sampling
from maskray.pipeline.inputs.video import build_index
from maskray.pipeline.output import layout
from maskray.pipeline.output.status import output_status
from submit_helpers import (REPO, SMALL_FLAGS, commits, frame_keys, kill_session, local_ray, read_table,
                            run_on_shared_ray, small_spec)


def encode(path, container: str, durations_ms: list[int], size=(64, 48), bframes: int = 2, gop: int = 12) -> str:
    """An H.264 video whose frame `n` lasts `durations_ms[n]` (variable frame rate when they
    differ), with `bframes` B-frames (presentation order differs from decoding order)."""
    width, height = size
    texture = np.random.default_rng(len(durations_ms)).integers(0, 255, (height, width * 2, 3), dtype=np.uint8)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"bf": str(bframes), "g": str(gop), "keyint_min": str(gop), "preset": "veryfast"}
        stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for number, duration in enumerate(durations_ms):
            shift = (number * 3) % width
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[:, shift:shift + width]), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            out.mux(stream.encode(frame))
            pts += duration
        out.mux(stream.encode(None))
    return str(path)


def repeat_as_ts(source: str, target, times: int) -> str:
    """`source` played `times` times in a row, as MPEG-TS (no container index: demuxed to index)."""
    with av.open(source) as inp, av.open(str(target), "w", format="mpegts") as out:
        stream = inp.streams.video[0]
        packets = [p for p in inp.demux(stream) if p.size and p.pts is not None]
        stamps = [(p.pts, p.dts) for p in packets]
        step = min(b - a for (a, _), (b, _) in zip(stamps, stamps[1:]) if b > a)
        span = max(pts for pts, _ in stamps) + step - min(pts for pts, _ in stamps)
        template = out.add_stream_from_template(stream)
        for copy in range(times):
            for packet, (pts, dts) in zip(packets, stamps):
                # Muxing rescales a packet's stamps to the output's time base: set them afresh.
                packet.time_base = stream.time_base
                packet.pts, packet.dts = pts + copy * span, dts + copy * span
                packet.stream = template
                out.mux(packet)
    return str(target)


def sampled_reference(index, sampling: Sampling) -> list[int]:
    """The sampling rules of sampling.py's docstring, frame by frame with exact times."""
    frames = range(index.num_frames)
    if sampling.every:
        return [f for f in frames if f % sampling.every == 0]
    chosen, previous = [], -1
    for frame in frames:
        slot = math.floor((index.time(frame) + 1e-6) * sampling.fps)
        if slot > previous:
            chosen.append(frame)
            previous = slot
    return chosen


@pytest.fixture(scope="module")
def odd_videos(tmp_path_factory):
    """Variable frame rate (MP4 and Matroska: both read from the container's own index) and
    three B-frames between references; keyframes every 12 frames."""
    folder = tmp_path_factory.mktemp("odd")
    vfr = [20, 40, 33, 67, 10] * 24  # 120 frames, 4.04 s
    return [encode(folder / "vfr.mp4", "mp4", vfr), encode(folder / "vfr.mkv", "matroska", vfr),
            encode(folder / "bframes.mp4", "mp4", [40] * 100, bframes=3)]


def test_image_groups_come_before_any_video_is_read(data_dir, tmp_path):
    media = list_media([str(data_dir)])
    settings = plan_settings(media, Sampling(every=10), 1.0, workers=2, images_per_shard=2, output=str(tmp_path))
    runner = ThreadRunner()
    try:
        stream = ShardStream(media, settings, runner)
        first = stream.poll(timeout=0)
        assert first and all(s.kind == "images" for s in first) and not stream.done
        later = []
        while not stream.done:
            later += stream.poll(timeout=1.0)
    finally:
        runner.close()
    assert {s.kind for s in later} == {"video"}
    whole = plan_shards(media, Sampling(every=10), 1.0, workers=2, images_per_shard=2)
    assert sorted(s.id for s in first + later) == sorted(s.id for s in whole)


@pytest.fixture(scope="module")
def ray_session():
    with local_ray() as ray:
        yield ray


@pytest.mark.ray
@pytest.mark.parametrize("sampling", [Sampling(every=3), Sampling(fps=7.0)], ids=["every", "fps"])
def test_vfr_and_bframe_videos_give_every_sampled_frame_once(ray_session, odd_videos, sampling, tmp_path):
    output = tmp_path / "out"
    spec = small_spec(odd_videos, output, every=sampling.every, fps=sampling.fps, segment_seconds=0.5)
    assert run_job(spec) == 0
    frames = read_table(str(output), "frames")
    keys = frame_keys(frames)
    expected = set()
    for video in odd_videos:
        index = build_index(video)
        expected |= {(video, f) for f in sampled_reference(index, sampling)}
        times = {f: t for s, f, t in zip(*(frames.column(c).to_pylist() for c in ("source", "frame", "time")))
                 if s == video}
        assert all(t == pytest.approx(index.time(f), abs=1e-9) for f, t in times.items())
    assert set(keys) == expected and set(keys.values()) == {1}
    per_video = Counter(shard.rsplit("-", 2)[0] for shard in commits(str(output)))
    assert len(per_video) == 3 and min(per_video.values()) >= 4  # each cut into several segments


@pytest.fixture(scope="module")
def slow_to_plan(data_dir, tmp_path_factory):
    """Two images and 20 long MPEG-TS videos (hard links of one file: 60,000 frames each, to be
    demuxed for their index): planning takes many seconds, the images none."""
    folder = tmp_path_factory.mktemp("slow")
    (folder / "videos").mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes((data_dir / "images" / "coins.png").read_bytes())
    short = encode(folder / "short.mp4", "mp4", [40] * 250, size=(32, 32), bframes=0, gop=250)
    long_ts = repeat_as_ts(short, folder / "long.ts.part", 240)
    os.remove(short)
    for number in range(20):
        os.link(long_ts, folder / "videos" / f"v{number:02d}.ts")
    os.remove(long_ts)
    return folder


@pytest.mark.ray
def test_first_shards_commit_before_planning_ends_and_a_kill_mid_planning_resumes(slow_to_plan, tmp_path):
    output = tmp_path / "out"
    command = ["submit", slow_to_plan, "--output", output, "--workers", "1", "--every", "100000",
               "--no-compact", *SMALL_FLAGS]  # the resume's commit records are compared with the parts as committed
    two_cpus = set(sorted(os.sched_getaffinity(0))[:2])  # the same pace on any machine
    process = subprocess.Popen(
        [sys.executable, "-c", "from maskray.cli import main; main()", *map(str, command)], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=lambda: os.sched_setaffinity(0, two_cpus),
    )
    try:
        deadline = time.monotonic() + 300
        while not commits(str(output)) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        # What a user sees at the first commit: a shard done, planning still going on.
        status = output_status(str(output))
        assert process.poll() is None, "the job ended before it could be killed"
        assert status.shards_done >= 1 and status.shards_total is None and status.frames_total is None
        first = commits(str(output))
        os.kill(process.pid, signal.SIGKILL)  # mid-planning, no chance to clean up
        process.wait()
    finally:
        kill_session(process.pid)
    assert "shards" not in json.loads((output / layout.JOB_FILE).read_text())

    again = run_on_shared_ray(*command)  # the resume: on the session's Ray, as any job
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr
    records = commits(str(output))
    for shard, record in first.items():  # the first run's commits were kept, not redone
        assert records[shard]["files"] == record["files"]
    videos = sorted(str(p) for p in (slow_to_plan / "videos").iterdir())
    images = [str(slow_to_plan / "a.png"), str(slow_to_plan / "b.png")]
    keys = frame_keys(read_table(str(output), "frames"))
    assert set(keys) == {(v, 0) for v in videos} | {(i, 0) for i in images} and set(keys.values()) == {1}
    job = json.loads((output / layout.JOB_FILE).read_text())
    assert job["shards"] == 21 and job["frames"] == 22 and job["planned_at"] > max(
        r["committed_at"] for r in first.values())
    assert output_status(str(output)).state == "done"


pytestmark = [pytest.mark.timeout(600)]
