"""Helpers shared by the submit / resume / bad-input / GPU tests: a small spec, a local Ray,
and reading an output folder the way a user would (committed shards only)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from maskray.jobs.ray_local import private_cluster_environment
from maskray.jobs.spec import JobSpec
from maskray.pipeline import storage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The demo network (masks and keypoints) with random weights at a small size:
# several times faster than R50-FPN on a CPU; score 0.0 with at most 5 instances per frame
# gives a few instances on every frame.
SMALL = dict(model="demo", weights="none", min_size=128, max_size=256,
             score_threshold=0.0, max_instances=5, batch_size=4)
SMALL_FLAGS = ["--model", "demo", "--weights", "none", "--min-size", "128", "--max-size", "256",
               "--score-threshold", "0.0", "--max-instances", "5"]


def small_spec(sources, output, **changes) -> JobSpec:
    values = dict(SMALL, sources=[str(s) for s in sources], output=str(output))
    values.update(changes)
    return JobSpec(**values)


@contextlib.contextmanager
def local_ray(**options):
    """A private Ray for a test as maskray starts one (token auth on, 127.0.0.1), with 2 CPUs and
    no dashboard unless `options` (ray.init's) say otherwise."""
    import ray

    with private_cluster_environment():
        ray.init(**{"num_cpus": 2, "include_dashboard": False, "log_to_driver": False, **options})
        try:
            yield ray
        finally:
            ray.shutdown()


def read_table(output: str, table: str) -> pa.Table:
    """All committed rows of `instances` or `frames`: the files the commit log names (the
    manifest and `_commits/`), each row kept only if its shard is committed."""
    records = commits(output)
    parts = []
    for path in sorted({record["files"][table]["path"] for record in records.values()}):
        filesystem, resolved = storage.resolve(storage.join(output, path))
        part = pq.read_table(resolved, filesystem=filesystem)
        parts.append(part.filter(pc.is_in(part["shard"], value_set=pa.array(sorted(records)))))
    return pa.concat_tables(parts) if parts else pa.table({})


def commits(output: str) -> dict:
    """`{shard: commit record as a dict}` of every committed shard (any job)."""
    from dataclasses import asdict

    from maskray.pipeline.output.commit_log import read_committed

    return {shard: asdict(record) for shard, record in read_committed(output).records.items()}


def frame_keys(frames: pa.Table) -> Counter:
    """How many `frames` rows each (source, frame) has: exactly once means all ones."""
    return Counter(zip(frames.column("source").to_pylist(), frames.column("frame").to_pylist()))


def run_cli(*args, timeout=300, **popen) -> subprocess.CompletedProcess:
    """`maskray ARGS` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-c", "from maskray.cli import main; main()", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout, **popen)


def kill_session(session_id: int) -> None:
    """Kill what is left of a session a test started with `start_new_session=True` (the
    embedded Ray a killed driver ran): never `ray stop`, never anything else's processes."""
    for _ in range(3):
        left = [pid for pid in _pids() if _session_of(pid) == session_id]
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _session_of(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[3])  # the field after state, ppid, pgrp: session id
    except (OSError, IndexError, ValueError):
        return None
