"""A job's first seconds: Ray starts while a new job's sources are listed, mistakes still fail
before Ray is touched, and work begins on the first worker replica that is up."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from maskray.errors import UsageError
from maskray.pipeline.execution.startup import Once, is_new_job, list_sources
from maskray.pipeline.inputs.listing import list_media
from maskray.pipeline.output import sink as sink_module
from submit_helpers import local_ray, run_cli, small_spec

SMALL_IMAGE = bytes.fromhex(  # a 1x1 PNG: listing only looks at names and sizes
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000050001" "0d0a2db40000000049454e44ae426082")


def _folder_of_images(folder: Path, count: int) -> Path:
    for number in range(count):
        path = folder / f"{number // 100:02d}" / f"img-{number:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(SMALL_IMAGE)
    return folder


class RecordingConnect:
    """A `connect` that notes whether a listing was under way while Ray 'started'."""

    def __init__(self):
        self.calls = 0
        self.listing_seen = False

    def __call__(self):
        self.calls += 1
        self.listing_seen = any(t.name.startswith("maskray-listing") for t in threading.enumerate())


def test_a_new_job_lists_its_sources_while_ray_starts(tmp_path):
    source = _folder_of_images(tmp_path / "src", 300)
    spec = small_spec([source], tmp_path / "out")
    connect = RecordingConnect()
    media = list_sources(spec, Once(connect), overwrite=False)
    assert connect.calls == 1 and connect.listing_seen
    assert media == list_media([str(source)], output=str(tmp_path / "out"))  # the same listing


def test_a_resumed_job_lists_first_and_may_need_no_ray(tmp_path):
    source = _folder_of_images(tmp_path / "src", 3)
    output = tmp_path / "out"
    sink_module.write_job(str(output), {"job_id": "earlier"})
    connect = RecordingConnect()
    media = list_sources(small_spec([source], output), Once(connect), overwrite=False)
    assert connect.calls == 0 and len(media) == 3
    # ... unless --overwrite replaces that job: then Ray is certainly needed
    list_sources(small_spec([source], output), Once(connect), overwrite=True)
    assert connect.calls == 1


def test_mistakes_fail_before_ray_is_touched(tmp_path):
    connect = RecordingConnect()
    missing = tmp_path / "no-such-folder"
    with pytest.raises(UsageError, match=f"source not found: {missing}"):
        list_sources(small_spec([missing], tmp_path / "out"), Once(connect), overwrite=False)
    with pytest.raises(UsageError, match="unsupported URI scheme 'ftp'"):
        list_sources(small_spec(["ftp://host/a.jpg"], tmp_path / "out"), Once(connect), overwrite=False)
    assert connect.calls == 0
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert not is_new_job(str(blocker / "out"), overwrite=False)  # the lease step says why, at once
    assert is_new_job(str(tmp_path / "new" / "deeper" / "out"), overwrite=False)
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert not is_new_job(str(locked / "out"), overwrite=False)


def test_ray_is_started_once_however_often_it_is_asked_for():
    calls = []
    once = Once(lambda: calls.append(1))
    threads = [threading.Thread(target=once) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    once()
    assert calls == [1] and once.called


@pytest.mark.ray
def test_work_begins_on_the_first_replica_up(tmp_path):
    """Two replicas of one GPU each on a one-GPU cluster (a cluster still scaling up): the
    first starts and takes work; the second waits for a GPU, and the job does not wait for it."""
    from maskray.pipeline.execution.worker_pool import WorkerPool
    from maskray.pipeline.output.sink import OutputSink

    spec = small_spec([tmp_path], tmp_path / "out")
    started = []
    with local_ray(num_cpus=2, num_gpus=1):
        pool = WorkerPool(spec, OutputSink(str(tmp_path / "out")), 2, gpus_per_worker=1.0, cpus_per_worker=1.0,
                          on_started=started.append)
        try:
            first = pool.wait_first()
            assert first["gpu_ids"] == ["0"] and started == [first]
            assert pool.has_idle() and len(pool.placements) == 1  # the other still waits for a GPU
            pool.take()
            assert not pool.has_idle()
        finally:
            pool.shutdown()


@pytest.mark.ray
def test_a_replica_that_cannot_load_its_weights_gives_the_users_line(data_dir, tmp_path):
    """Weights the driver can read and hash but no replica can load (not a state dict) fail in
    the replicas: the user still gets the replica's own one line and exit code 2, not a Ray
    traceback. (`coco` offline fails earlier, in the driver: tests/models/test_weights_location.py.)"""
    weights = tmp_path / "notes.pt"
    weights.write_text("these are not weights\n")
    result = run_cli("submit", data_dir / "images" / "rocket.jpg", "--output", tmp_path / "out",
                     "--model", "demo", "--weights", weights, "--min-size", "128",
                     "--max-size", "256", "--workers", "2")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in lines if line.startswith("maskray: error: ")]
    assert len(errors) == 1 and errors == lines[-1:] and str(weights) in errors[0], lines
    assert "weights_only=True" in errors[0]
    assert "Traceback" not in result.stderr
