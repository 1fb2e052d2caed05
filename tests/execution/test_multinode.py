"""A real two-node Ray cluster on this machine, sources and OUT on S3 (moto's server).

Head: 1 CPU, 1 fake GPU; second node (`ray start --address=...`): 2 CPUs, 1 fake GPU; each in
its own process group and temp dir, on 127.0.0.1, token auth on. `maskray submit --address
<head>` runs one replica per node. The second node's whole process group is killed once it
has committed a shard: the job still ends with every frame exactly once, and no shard used
up a retry because of the lost node.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ray_head import kill_node, node_pids, ray_env, start_head, start_node, stop_head
from submit_helpers import REPO, SMALL_FLAGS, commits, frame_keys, read_table

pytestmark = pytest.mark.ray  # a real two-node Ray cluster

START_TIMEOUT = 400  # `ray start` on 2 busy shared cores can take minutes


@pytest.fixture
def two_nodes(s3_server):
    """(head, second node), started after the S3 variables are set so their workers see them."""
    for tries_left in (1, 0):  # on 2 busy shared cores a raylet can abort while starting: once more
        head = start_head(num_cpus=1, num_gpus=1, auth_mode="token", timeout=START_TIMEOUT)
        try:
            node = start_node(head, num_cpus=2, num_gpus=1, auth_mode="token", timeout=START_TIMEOUT)
            break
        except RuntimeError:
            stop_head(head)
            if not tries_left:
                raise
    try:
        yield head, node
    finally:
        stop_head(node)
        stop_head(head)


def test_losing_a_node_mid_job_keeps_every_frame_exactly_once(two_nodes, data_dir, s3_client, s3_bucket, tmp_path):
    head, node = two_nodes
    bikes = str(data_dir / "videos" / "bikes.mp4")
    videos = [f"s3://{s3_bucket}/src/bikes-{n}.mp4" for n in range(2)]
    for uri in videos:
        s3_client.upload_file(bikes, s3_bucket, uri.split("/", 3)[3])
    images = []
    for name in ("chelsea.png", "coins.png", "rocket.jpg"):
        s3_client.upload_file(str(data_dir / "images" / name), s3_bucket, f"src/images/{name}")
        images.append(f"s3://{s3_bucket}/src/images/{name}")
    output = f"s3://{s3_bucket}/out"
    log_path = tmp_path / "submit.log"
    command = [sys.executable, "-c", "from maskray.cli import main; main()", "submit", f"s3://{s3_bucket}/src",
               "--output", output, "--address", head.gcs_address, "--workers", "2", "--every", "2",
               "--segment-seconds", "1", "--batch-size", "2", *SMALL_FLAGS]
    with open(log_path, "wb") as log:
        submit = subprocess.Popen(command, cwd=REPO, env=ray_env("token"), stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        second_node_workers: set = set()
        deadline = time.monotonic() + 600
        while True:
            second_node_workers |= node_pids(node)
            done = commits(output)
            if any(r["worker"]["pid"] in second_node_workers for r in done.values()):
                break
            assert submit.poll() is None, f"submit ended early:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no shard committed on the second node:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.5)
        assert submit.poll() is None, "the job ended before the node could be lost"
        committed_before_loss = len(done)
        kill_node(node)
        code = submit.wait(timeout=900)
    finally:
        if submit.poll() is None:
            os.killpg(submit.pid, signal.SIGKILL)
            submit.wait()
    log = log_path.read_text()
    assert code == 0, log[-3000:]

    records = commits(output)
    assert len(records) > committed_before_loss
    worker_pids = {r["worker"]["pid"] for r in records.values()}
    assert worker_pids & second_node_workers and worker_pids - second_node_workers  # both nodes worked
    assert all(r["attempt"] == 1 for r in records.values()), "a node loss used up a shard's retry"
    keys = frame_keys(read_table(output, "frames"))
    expected = {(uri, frame) for uri in videos for frame in range(0, 250, 2)} | {(uri, 0) for uri in images}
    assert set(keys) == expected and set(keys.values()) == {1}
