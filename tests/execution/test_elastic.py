"""An elastic, preemptible cluster made of real Ray nodes on this machine (token auth, 127.0.0.1).

One head (1 CPU) is shared by the scenarios, in order; nodes join (`ray start --address`) and
are preempted the way the autoscaler and KubeRay do it: Ray's drain call with reason
PREEMPTION and a deadline, then the node's whole process group is killed at the deadline.
- a poison input still ends as error rows after its retries (the budget still works);
- a job without --workers follows the cluster: a node that joins gets a replica that commits
  shards (2 CPU nodes: 2 replicas), preempted nodes cost no retries, every frame once; with
  --max-workers the autoscaler is asked for the queue's bundles and the ask is cleared at the
  end; Ray's metrics endpoint has maskray's frame counter equal to the frames written;
- one shard preempted more often than its retry budget allows still finishes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from ray_head import drain_node, kill_node, node_pids, ray_env, start_head, start_node, stop_head
from submit_helpers import REPO, SMALL_FLAGS, commits, frame_keys, read_table

pytestmark = pytest.mark.ray

START_TIMEOUT = 400  # `ray start` on 2 busy shared cores can take minutes
DRAIN_DEADLINE_S = 15
# The join/preempt scenario only needs the node gone some seconds after its notice (what a
# replica does with the time left is the third scenario's and tests/execution/test_drain_deadline.py's).
SHORT_DRAIN_DEADLINE_S = 5


@pytest.fixture(scope="module")
def cluster():
    head = start_head(num_cpus=1, auth_mode="token", timeout=START_TIMEOUT)
    nodes: list = []
    try:
        yield head, nodes
    finally:
        for node in nodes:
            stop_head(node)
        stop_head(head)


def _join(cluster, **resources):
    head, nodes = cluster
    node = start_node(head, auth_mode="token", timeout=START_TIMEOUT, **resources)
    nodes.append(node)
    return node


class Submit:
    """`maskray submit` in its own session, its output in a log file."""

    def __init__(self, tmp_path, head, *args):
        self.log_path = tmp_path / "submit.log"
        command = [sys.executable, "-c", "from maskray.cli import main; main()", "submit", *map(str, args),
                   "--address", head.gcs_address]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=ray_env("token"), stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, condition, what: str, timeout: float = 400):
        deadline = time.monotonic() + timeout
        while True:
            found = condition()
            if found:
                return found
            assert self.process.poll() is None, f"submit ended before {what}:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} in time:\n{self.log()[-3000:]}"
            time.sleep(0.5)

    def finish(self, timeout: float = 900) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _preempt(cluster, node, deadline_s: float) -> None:
    """Drain `node` with reason PREEMPTION and a deadline; kill its process group at the deadline."""
    head, _ = cluster
    drained_at = time.monotonic()
    drain_node(head, node, deadline_s)
    time.sleep(max(0.0, drained_at + deadline_s - time.monotonic()))
    kill_node(node)


def _worker_pids_in_log(log: str) -> set:
    return {int(pid) for pid in re.findall(r"worker started: \S+ pid (\d+)", log)}


def _summary(output) -> dict:
    from maskray.pipeline.output.status import output_status

    return output_status(str(output)).to_dict()


def _autoscaler_request(head) -> list:
    """The resource request the cluster holds for its autoscaler (read from the GCS's KV)."""
    code = ("import json, sys; from ray._raylet import GcsClient;"
            " from ray.autoscaler._private.constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL as key;"
            f" value = GcsClient(address={head.gcs_address!r}).internal_kv_get(key, None);"
            " sys.stdout.write(value.decode() if value else 'null')")
    answer = subprocess.run([sys.executable, "-c", code], env=ray_env("token"), capture_output=True, text=True,
                            timeout=120)
    assert answer.returncode == 0, answer.stderr[-2000:]
    return json.loads(answer.stdout) or []


def _scrape(port: int) -> str:
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with no_proxy.open(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode(errors="replace")


def _metric_total(text: str, name: str, job_id: str) -> float:
    """The sum of `name`'s samples for this job (Ray may add `_total` to a counter's name)."""
    total = 0.0
    for line in text.splitlines():
        metric = line.split("{", 1)[0]
        if metric in (name, f"{name}_total") and f'job_id="{job_id}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_poison_input_still_fails_after_its_retries(cluster, tmp_path, data_dir):
    from PIL import Image
    import numpy as np

    head, _ = cluster
    folder = tmp_path / "scraped"
    folder.mkdir()
    # A 400x1 divider: at --max-size 8 the model raises on it on every attempt (as in
    # test_adversarial_output.py); beside it a good image.
    Image.fromarray(np.full((1, 400, 3), 200, np.uint8)).save(folder / "divider.png")
    shutil.copy(data_dir / "images" / "coffee.png", folder / "coffee.png")
    output = tmp_path / "out"
    flags = [flag for flag in SMALL_FLAGS]
    flags[flags.index("--min-size") + 1], flags[flags.index("--max-size") + 1] = "4", "8"
    job = Submit(tmp_path, head, folder, "--output", output, *flags)
    assert job.finish() == 3, job.log()[-3000:]
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in read_table(str(output), "frames").to_pylist()}
    assert rows["coffee.png"]["status"] == "ok"
    assert rows["divider.png"]["status"] == "error" and "failed the worker" in rows["divider.png"]["error"]
    status = _summary(output)
    assert status["retries"] == 2 and status["preemptions"] == 0 and status["requeued_shards"] == 0


def test_the_pool_follows_nodes_that_join_and_are_preempted(cluster, tmp_path, data_dir):
    head, _ = cluster
    source = tmp_path / "src"
    source.mkdir()
    for n in range(5):
        shutil.copy(data_dir / "videos" / "bikes.mp4", source / f"bikes-{n}.mp4")
    output = tmp_path / "out"
    job = Submit(tmp_path, head, source, "--output", output, "--max-workers", "3", "--segment-seconds", "2",
                 "--batch-size", "2", *SMALL_FLAGS)
    job.wait_for(lambda: commits(str(output)), "first commit")
    assert len(_worker_pids_in_log(job.log())) == 1  # a 1-node cluster: one replica
    # Shards wait: the autoscaler is asked for --max-workers replica bundles.
    assert _autoscaler_request(head) == [{"CPU": 1}] * 3

    for round_ in range(2):  # a node joins, works, is preempted; then another one
        node = _join(cluster, num_cpus=1)
        pids: set = set()

        def committed_on_node():
            pids.update(node_pids(node))
            return any(r["worker"]["pid"] in pids for r in commits(str(output)).values())

        job.wait_for(committed_on_node, f"a commit on joined node {round_ + 1}")
        if round_ == 0:  # 2 CPU nodes: 2 replicas, one per node, on the progress line
            job.wait_for(lambda: re.search(r"\[node \w+: .*; node \w+: ", job.log()), "two nodes on the progress line",
                         timeout=60)
        assert job.process.poll() is None, "the job ended before the node could be preempted"
        _preempt(cluster, node, SHORT_DRAIN_DEADLINE_S)

    code = job.finish()
    log = job.log()
    assert code == 0, log[-3000:]
    records = commits(str(output))
    assert all(r["attempt"] == 1 for r in records.values()), "a preemption used up a shard's retry"
    keys = frame_keys(read_table(str(output), "frames"))
    expected = {(str(source / f"bikes-{n}.mp4"), frame) for n in range(5) for frame in range(250)}
    assert set(keys) == expected and set(keys.values()) == {1}
    status = _summary(output)
    assert status["state"] == "done" and status["preemptions"] == 2 and status["retries"] == 0
    summary = [line for line in log.strip().splitlines() if not line.startswith("maskray: compacted")][-1]
    assert "2 preemptions" in summary  # the job's summary, before the end-of-job compaction's line
    assert _autoscaler_request(head) == []  # cleared at the end
    # Ray's metrics endpoint (the head's, where the driver ran) counts the frames written.
    job_id = status["job_id"]
    deadline = time.monotonic() + 60
    while _metric_total(_scrape(head.metrics_port), "ray_maskray_frames", job_id) != len(keys):
        assert time.monotonic() < deadline, _scrape(head.metrics_port)[-3000:]
        time.sleep(2)


def test_a_shard_preempted_more_often_than_its_retry_budget_allows_still_finishes(cluster, tmp_path, data_dir):
    """Nodes with a (declared) GPU: only they get replicas, so the one long shard runs on each
    joined node in turn, and each is preempted under it: 4 times, one more than MAX_ATTEMPTS."""
    from maskray.pipeline.execution.tasks import MAX_ATTEMPTS

    head, _ = cluster
    output = tmp_path / "out"
    node = _join(cluster, num_cpus=1, num_gpus=1)
    job = Submit(tmp_path, head, data_dir / "videos" / "bikes.mp4", "--output", output, "--segment-seconds", "60",
                 "--batch-size", "1", *SMALL_FLAGS)
    preemptions = MAX_ATTEMPTS + 1
    for round_ in range(preemptions):
        job.wait_for(lambda: _worker_pids_in_log(job.log()) & node_pids(node), f"a replica on node {round_ + 1}")
        job.wait_for(lambda: job.log().count("back in the queue") == round_, f"requeue {round_}")
        following = _join(cluster, num_cpus=1, num_gpus=1)  # ready to take the shard over
        time.sleep(2)  # the shard is in flight on `node` (its only shard and replica)
        drain_node(head, node, DRAIN_DEADLINE_S)
        job.wait_for(lambda: job.log().count("back in the queue") == round_ + 1, f"requeue {round_ + 1}", timeout=60)
        kill_node(node)
        node = following
    code = job.finish()
    log = job.log()
    assert code == 0, log[-3000:]
    assert log.count("would not finish before the deadline") == preemptions
    records = commits(str(output))
    assert [r["attempt"] for r in records.values()] == [1]
    keys = frame_keys(read_table(str(output), "frames"))
    assert len(keys) == 250 and set(keys.values()) == {1}
    status = _summary(output)
    assert status["preemptions"] == preemptions and status["requeued_shards"] == preemptions
    assert status["retries"] == 0
