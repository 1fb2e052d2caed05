"""Exactly once under failures: a killed `maskray submit` resumes, a killed worker's shard is
retried on a fresh actor, and every (source, frame) ends up in the output once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from maskray.jobs.launch import run_job
from maskray.pipeline import storage
from maskray.pipeline.output.status import output_status
from submit_helpers import (REPO, SMALL_FLAGS, commits, frame_keys, kill_session, local_ray, read_table,
                            processes_titled, run_on_shared_ray, small_spec)

# bikes.mp4 cut at >= 2 s on keyframes gives 4 shards of every 50th frame (2, 1, 1, 1 frames).
BIKES_FRAMES = [0, 50, 100, 150, 200]


def bikes_expected(data_dir) -> set:
    uri = str(data_dir / "videos" / "bikes.mp4")
    return {(uri, f) for f in BIKES_FRAMES}


def assert_exactly_once(output, expected) -> None:
    assert storage.exists(storage.join(str(output), "_SUCCESS"))
    keys = frame_keys(read_table(str(output), "frames"))
    assert set(keys) == expected and set(keys.values()) == {1}
    instances = read_table(str(output), "instances")
    pairs = list(zip(instances.column("source").to_pylist(), instances.column("frame").to_pylist(),
                     instances.column("instance").to_pylist()))
    assert len(pairs) == len(set(pairs))  # no instance twice either


def test_killed_submit_resumes_and_writes_each_frame_once(data_dir, tmp_path):
    output = tmp_path / "out"
    command = ["submit", data_dir / "videos" / "bikes.mp4", "--output", output, "--every", "50",
               "--segment-seconds", "2", "--batch-size", "1", *SMALL_FLAGS]
    process = subprocess.Popen(
        [sys.executable, "-c", "from maskray.cli import main; main()", *map(str, command)], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not commits(str(output)) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the job ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)  # no chance to clean up
        process.wait()
    finally:
        kill_session(process.pid)

    # Its lease names a process of this host that is gone: stopped at once, not "running".
    status = output_status(str(output))
    assert 1 <= status.shards_done < status.shards_total
    assert status.state == "failed" and "resume" in status.message
    assert not storage.exists(storage.join(str(output), "_SUCCESS"))

    again = run_on_shared_ray(*command)  # the resume: on the session's Ray, as any job
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr
    assert_exactly_once(output, bikes_expected(data_dir))
    assert output_status(str(output)).state == "done"


def test_shard_of_a_killed_worker_is_retried_on_a_fresh_actor(data_dir, tmp_path):
    killed = []

    def kill_first_worker():
        # Ray titles a worker process by what it runs (`ray::ShardWorker.process` during a
        # shard, as `ps` shows it): kill the first one seen, mid-shard.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            pids = processes_titled("ray::ShardWorker.process")
            if pids:
                time.sleep(0.3)  # let it get into the shard (one shard of 125 frames: seconds)
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.2)

    output = tmp_path / "out"
    # One long shard, so the kill always lands before the first attempt can commit it.
    spec = small_spec([data_dir / "videos" / "bikes.mp4"], output, every=2, segment_seconds=60.0)
    with local_ray():
        killer = threading.Thread(target=kill_first_worker, daemon=True)
        killer.start()
        assert run_job(spec) == 0
        killer.join(timeout=5)

    assert killed, "no worker was killed"
    records = commits(str(output)).values()
    assert all(r["worker"]["pid"] != killed[0] for r in records)
    assert any(r["attempt"] == 2 for r in records)
    # Parts are named per attempt, so the killed attempt's leftovers can never mix in.
    assert all(f".a{r['attempt']}-" in r["files"]["frames"]["path"] for r in records)
    bikes = str(data_dir / "videos" / "bikes.mp4")
    assert_exactly_once(output, {(bikes, f) for f in range(0, 250, 2)})


pytestmark = [pytest.mark.ray, pytest.mark.timeout(480)]  # real local Ray jobs
