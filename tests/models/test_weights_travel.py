"""Weights travel with the job: the driver fetches them once and the replicas get them through
Ray's object store, so a replica needs no copy of the file, no torch cache and no credentials.

- `https://`-style weights from a server on 127.0.0.1: one request for a job of two replicas;
- `s3://` weights from moto: the credentials reach neither `_job.json` nor the job's output;
- a real cluster (`ray start` on 127.0.0.1, token auth): the weights file is deleted
  once the driver has read it, before Ray is touched; then a node joins with an empty HOME
  and torch cache; the pool gives it a replica, which starts and commits shards.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import time

import pytest

from s3_endpoint import TEST_ACCESS_KEY, TEST_SECRET_KEY
from file_server import FileServer
from maskray.models.weight_files import DEMO_WEIGHTS
from ray_head import node_pids, ray_env, start_head, start_node, stop_head
from submit_helpers import REPO, commits, frame_keys, read_table, run_cli, run_on_shared_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

DEMO = DEMO_WEIGHTS.read_bytes()
DEMO_SHA256 = hashlib.sha256(DEMO).hexdigest()
FLAGS = ["--model", "demo", "--min-size", "128", "--max-size", "256", "--score-threshold", "0.3",
         "--max-instances", "5"]
START_TIMEOUT = 400  # `ray start` on 2 busy shared cores can take minutes


def _job(output) -> dict:
    return json.loads((output / "_job.json").read_text())


def test_url_weights_are_fetched_once_by_the_driver(data_dir, tmp_path):
    name = f"shapes-{DEMO_SHA256[:8]}.pt"  # a torchvision-style name: its hash prefix is checked
    images = [data_dir / "images" / n for n in ("coins.png", "chelsea.png", "rocket.jpg", "camera.png")]
    with FileServer({f"/{name}": DEMO}) as server:
        result = run_on_shared_ray("submit", *images, "--output", tmp_path / "out", "--weights",
                                   server.url(name), "--workers", "2", "--batch-size", "1", *FLAGS)
        assert result.returncode == 0, result.stderr[-3000:]
        assert server.requests == {f"/{name}": 1}  # two replicas, one request
    assert _job(tmp_path / "out")["weights_id"] == f"file:{DEMO_SHA256[:12]}"
    assert "read once, sent to the replicas" in result.stderr
    frames = read_table(str(tmp_path / "out"), "frames")
    assert frames.num_rows == 4 and set(frames.column("status").to_pylist()) == {"ok"}


def test_s3_weights_keep_their_credentials_out_of_the_output(data_dir, s3_client, s3_bucket, tmp_path):
    s3_client.put_object(Bucket=s3_bucket, Key="models/shapes.pt", Body=DEMO)
    uri = f"s3://{s3_bucket}/models/shapes.pt"
    output = tmp_path / "out"
    result = run_cli("submit", data_dir / "images" / "coins.png", "--output", output, "--weights", uri,
                     "--weights-sha256", DEMO_SHA256, *FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    job = _job(output)
    assert job["spec"]["weights"] == uri and job["weights_id"] == f"file:{DEMO_SHA256[:12]}"
    written = b"".join(path.read_bytes() for path in output.rglob("*") if path.is_file())
    said = (result.stdout + result.stderr).encode()
    for secret in (TEST_ACCESS_KEY, TEST_SECRET_KEY):
        assert secret.encode() not in written and secret.encode() not in said


@pytest.fixture
def head_and_bare_home(tmp_path):
    """(head, bare home): a one-node cluster, and an empty HOME / torch cache for a node that
    joins later."""
    bare_home = tmp_path / "bare-home"
    bare_home.mkdir()
    head = start_head(num_cpus=1, num_gpus=1, auth_mode="token", timeout=START_TIMEOUT)
    try:
        yield head, bare_home
    finally:
        stop_head(head)


def _join_bare_node(head, bare_home, monkeypatch):
    with monkeypatch.context() as bare:  # inherited by the node's raylet and workers only
        bare.setenv("HOME", str(bare_home))
        bare.setenv("TORCH_HOME", str(bare_home / "torch"))
        bare.delenv("XDG_CACHE_HOME", raising=False)
        return start_node(head, num_cpus=2, num_gpus=1, auth_mode="token", timeout=START_TIMEOUT)


# The driver in its own process: `connect` (called once the weights are read, before Ray is
# touched) deletes the weights file, then joins the cluster.
DRIVER = textwrap.dedent("""
    import contextlib, os, sys
    from maskray.jobs.ray_local import ray_session
    from maskray.jobs.spec import JobSpec
    from maskray.pipeline.execution import driver

    address, weights, source, output = sys.argv[1:]
    spec = JobSpec(sources=[source], output=output, model="demo", weights=weights, min_size=128,
                   max_size=256, score_threshold=0.3, max_instances=5, every=1,
                   segment_seconds=1.0, batch_size=2).validate(check_local_device=False)
    with contextlib.ExitStack() as ray_held:
        def connect():
            os.remove(weights)
            print("weights file deleted", flush=True)
            ray_held.enter_context(ray_session(address))
        outcome = driver.run(spec, connect=connect, maskray_version="test")
    print("exit", outcome.exit_code, flush=True)
""")


def test_a_node_that_joins_without_the_file_or_a_cache_runs_a_replica(head_and_bare_home, data_dir, tmp_path,
                                                                     monkeypatch):
    # The job starts on the head alone (no --workers: the pool follows the cluster); once the
    # driver has read and deleted the weights file, a node with an empty HOME and torch cache
    # joins: its replica starts from the bytes the driver shipped and commits shards.
    head, bare_home = head_and_bare_home
    weights = tmp_path / "shapes.pt"
    weights.write_bytes(DEMO)
    output = tmp_path / "out"
    command = [sys.executable, "-c", DRIVER, head.gcs_address, str(weights),
               str(data_dir / "videos" / "bikes.mp4"), str(output)]
    log_path = tmp_path / "driver.log"
    second_node: set = set()  # pids of the joined node's processes (its replica's among them)
    node = None
    with open(log_path, "w") as log_file:
        driver = subprocess.Popen(command, cwd=REPO, env=ray_env("token"), stdout=log_file,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 800
            while driver.poll() is None and time.monotonic() < deadline:
                if node is None and "weights file deleted" in log_path.read_text():
                    node = _join_bare_node(head, bare_home, monkeypatch)
                if node is not None:
                    second_node |= node_pids(node)
                time.sleep(0.5)
        finally:
            if driver.poll() is None:
                driver.kill()
            if node is not None:
                stop_head(node)
    log = log_path.read_text()
    assert driver.returncode == 0 and "exit 0" in log, log[-3000:]
    assert not weights.exists() and "weights file deleted" in log
    records = commits(str(output))
    on_second_node = [r for r in records.values() if r["worker"]["pid"] in second_node]
    assert on_second_node, f"no shard committed on the second node:\n{log[-3000:]}"
    assert not any(path.is_file() for path in (bare_home / "torch").rglob("*"))  # nothing cached there
    frames = read_table(str(output), "frames")
    assert set(frame_keys(frames).values()) == {1} and frames.num_rows == 250  # every frame, once
    assert _job(output)["weights_id"] == f"file:{DEMO_SHA256[:12]}"
