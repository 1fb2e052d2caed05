"""Helpers shared by the submit / resume / bad-input / GPU tests: a small spec, a local Ray (one
for the whole session where a test needs no special options), and reading an output folder
the way a user would (committed shards only)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from maskray.jobs.ray_local import AUTH_MODE, AUTH_TOKEN, AUTH_TOKEN_PATH, SINGLE_MACHINE, private_cluster_environment
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


# ray.init's options for a test's local Ray: 2 CPUs, no dashboard, a small object store.
LOCAL_RAY = {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False,
             "object_store_memory": 200 * 1024 * 1024}
IDLE_TIMEOUT_S = 60.0
CLUSTER_VARIABLES = (AUTH_MODE, AUTH_TOKEN, AUTH_TOKEN_PATH, SINGLE_MACHINE)  # what a private Ray sets
_shared: dict = {}  # "stack" (what stops it), "options", while the session's shared Ray runs


@contextlib.contextmanager
def local_ray(**options):
    """A private Ray for a test as maskray starts one (token auth on, 127.0.0.1), with the
    options of LOCAL_RAY unless `options` (ray.init's) say otherwise.

    With LOCAL_RAY's options it is the session's shared Ray: started on first use (after the
    session's S3 endpoint, so its workers see the AWS variables), kept between tests, stopped
    at the end of the session (conftest), or as soon as a test leaves it busy (actors alive) so
    the next one starts clean. Other options get a Ray of their own, stopped after the body.
    """
    import ray

    wanted = {**LOCAL_RAY, **options}
    if wanted != LOCAL_RAY:
        stop_shared_ray()
        with private_cluster_environment():
            ray.init(**wanted)
            try:
                yield ray
            finally:
                ray.shutdown()
        return
    if not (_shared and ray.is_initialized()):
        _start_shared_ray(wanted)
    try:
        yield ray
    finally:
        if not _idle(ray, IDLE_TIMEOUT_S):
            stop_shared_ray()


def _start_shared_ray(options: dict) -> None:
    import ray

    stop_shared_ray()
    if ray.is_initialized():  # a Ray a job left in this process: not ours to reuse
        ray.shutdown()
    from s3_endpoint import session_s3

    session_s3()
    before = {name: os.environ.get(name) for name in CLUSTER_VARIABLES}
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(private_cluster_environment())  # its token file stays until the stop
        ray.init(**options)
        stack.callback(ray.shutdown)
    except BaseException:
        stack.close()
        raise
    # Ray's processes have the cluster's variables; this process gets its own back, so the
    # subprocesses tests start meanwhile (a `maskray submit`, `ray start`) see none of them.
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _shared.update(stack=stack, options=options)


def stop_shared_ray() -> None:
    """Stop the session's shared Ray, if it runs."""
    if _shared:
        _shared.pop("stack").close()
        _shared.clear()


def _idle(ray, timeout: float) -> bool:
    """True once every CPU of the shared Ray is free again (the test's actors are gone)."""
    deadline = time.monotonic() + timeout
    while ray.is_initialized():
        total, free = ray.cluster_resources().get("CPU", 0), ray.available_resources().get("CPU", 0)
        if free >= total > 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return False


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


def run_on_shared_ray(*args) -> subprocess.CompletedProcess:
    """`maskray ARGS` through the same entry point as `run_cli`, in this process on the session's
    shared Ray (the driver here, the replicas in Ray's workers): no new interpreter and no
    private Ray to start per call. For tests about a job's results and messages; a test about
    the process itself (signals, exit without a traceback from Ray's own logs) uses `run_cli`."""
    from maskray.cli import main

    out, err = io.StringIO(), io.StringIO()
    with local_ray(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(arg) for arg in args])
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def processes_titled(prefix: str) -> list[int]:
    """Pids of the processes under this one (its Ray's workers among them) whose title starts
    with `prefix`: Ray titles a worker by what it runs, e.g. `ray::ShardWorker.process`."""
    from ray_guard import process_table

    table = process_table()
    found = []
    for pid in table:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as stream:
                title = stream.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith(prefix) and _descends_from(pid, os.getpid(), table):
            found.append(pid)
    return sorted(found)


def _descends_from(pid: int, root: int, table: dict) -> bool:
    for _ in range(64):
        parent = table.get(pid, (0, ""))[0]
        if parent == root:
            return True
        if parent <= 1:
            return False
        pid = parent
    return False


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
