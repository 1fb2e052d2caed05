"""Helpers shared by the submit / resume / bad-input / GPU tests: a small spec, a local Ray,
and reading an output folder the way a user would (committed shards only)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from maskray.jobs.ray_local import private_cluster_environment
from maskray.jobs.spec import JobSpec
from maskray.pipeline import storage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The compact demo architecture (masks and keypoints) with random weights at a small size:
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
    """All committed rows of `instances` or `frames` (files named by `_commits/`)."""
    parts = []
    for record in commits(output).values():
        filesystem, path = storage.resolve(storage.join(output, record["files"][table]["path"]))
        parts.append(pq.read_table(path, filesystem=filesystem))
    return pa.concat_tables(parts) if parts else pa.table({})


def commits(output: str) -> dict:
    try:
        found = storage.list_files(storage.join(output, "_commits"))
    except FileNotFoundError:
        return {}
    records = [json.loads(storage.read_bytes(uri)) for uri, _ in found if uri.endswith(".json")]
    return {record["shard"]: record for record in records}


def frame_keys(frames: pa.Table) -> Counter:
    """How many `frames` rows each (source, frame) has: exactly once means all ones."""
    return Counter(zip(frames.column("source").to_pylist(), frames.column("frame").to_pylist()))


def run_cli(*args, timeout=300, **popen) -> subprocess.CompletedProcess:
    """`maskray ARGS` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-c", "from maskray.cli import main; main()", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout, **popen)
