"""Cluster jobs through the Ray Jobs API (`--address http(s)://HEAD:8265`).

`submit_job` sends the same `maskray submit` command line to the cluster with `--address
auto`, so the driver runs there, joins the cluster, and outlives the client. Assumptions
about the cluster: maskray is installed on its nodes with the `maskray` command on PATH (no
code is uploaded: no runtime_env working_dir), and it sees the sources and the output at the
URIs in the spec (object stores, or a shared filesystem for paths). Credentials never
travel: no entrypoint argument, metadata entry or runtime_env variable carries one; the
cluster uses its own.

Each Ray job's metadata holds the output URI and the spec's fingerprint, so `maskray jobs`
shows progress from the output's commit records, and a second job on an output that a job
is still writing is refused. Cancelling stops the driver; its shards that committed stay,
and submitting the same command again resumes from them.
"""

from __future__ import annotations

import secrets
import shlex
import sys
import time
from typing import Optional, TextIO

from maskray.jobs.cluster.client import api_errors, connect, is_jobs_api_address, resolve_address
from maskray.jobs.cluster.view import (
    FINGERPRINT_KEY, OUTPUT_KEY, VERSION_KEY, ClusterJob, format_table, output_progress,
)
from maskray.errors import UsageError

# Printed by the entrypoint when the job finished but some inputs were recorded as errors:
# Ray then shows SUCCEEDED (the job did all it could), and `--wait` still exits 3.
INPUT_ERRORS_LINE = "maskray: finished; some inputs were recorded as errors (exit 3)"

__all__ = [
    "build_entrypoint", "submit_job", "follow_job", "list_jobs", "job_status", "job_logs",
    "cancel_job", "ClusterJob", "format_table", "is_jobs_api_address", "resolve_address",
]


# ---- submit -------------------------------------------------------------------------------

def build_entrypoint(spec, overwrite: bool = False) -> str:
    """The shell command the cluster runs: `maskray submit` with every spec field as a flag.

    Every field is spelled out (not left to defaults), so the driver on the cluster builds
    the same spec, and thus the same fingerprint, as this machine. Exit code 3 (done, some
    inputs recorded as errors) becomes 0 plus INPUT_ERRORS_LINE: Ray then says SUCCEEDED.
    """
    data = spec.to_dict()
    words = ["maskray", "submit", *data.pop("sources"), "--output", data.pop("output")]
    data.pop("extra", None)  # no flag for it; options a later version adds go there
    # Fields whose flags are spelled differently from their names:
    thresholds = data.pop("class_thresholds", None) or {}
    if thresholds:  # `--score-threshold person=0.7,car=0.5,0.4`: per class, then the default
        data["score_threshold"] = ",".join([f"{k}={v}" for k, v in thresholds.items()] + [str(data["score_threshold"])])
    if data.get("classes"):
        data["classes"] = ",".join(str(c) for c in data["classes"])
    words += ["--track" if data.pop("track", True) else "--no-track"]
    words += ["--compact" if data.pop("compact", True) else "--no-compact"]
    for name, value in sorted((data.pop("tracker", None) or {}).items()):
        words += [f"--track-{name.replace('_', '-')}", str(value)]
    for name, value in sorted(data.items()):
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        words += [flag] if value is True else [flag, str(value)]
    words += ["--overwrite"] if overwrite else []
    words += ["--address", "auto"]
    command = " ".join(shlex.quote(word) for word in words)
    return (f'{command}; code=$?; if [ "$code" = 3 ]; then echo {shlex.quote(INPUT_ERRORS_LINE)};'
            " code=0; fi; exit $code")


def submit_job(spec, address: str, wait: bool = False, *, overwrite: bool = False,
               stream: Optional[TextIO] = None) -> int:
    """Submit `spec` as a Ray job and print its id; with `wait`, follow its log to the end.

    `overwrite` travels to the driver, which replaces a different job's output. Returns the
    exit code: 0 once submitted (no `wait`), else the job's (see `follow_job`).
    """
    from importlib.metadata import version

    stream = stream or sys.stdout
    spec.validate(check_local_device=False)  # the cluster, not this machine, needs the GPUs
    address = resolve_address(address)
    client = connect(address)
    fingerprint = spec.fingerprint()
    with api_errors(address):
        for details in client.list_jobs():
            job = ClusterJob.from_details(details)
            if job.output == spec.output and not job.finished:
                raise UsageError(
                    f"job {job.job_id} is still {job.state} on {spec.output}; wait for it or run"
                    f" `maskray cancel {job.job_id} --address {address}`"
                )
        job_id = client.submit_job(
            entrypoint=build_entrypoint(spec, overwrite),
            submission_id=f"maskray-{fingerprint[:8]}-{secrets.token_hex(4)}",
            metadata={OUTPUT_KEY: spec.output, FINGERPRINT_KEY: fingerprint, VERSION_KEY: version("maskray")},
        )
    print(job_id, file=stream, flush=True)
    if not wait:
        print(f"maskray: submitted to {address}; follow it with"
              f" `maskray logs {job_id} --address {address} --follow`", file=sys.stderr)
        return 0
    return follow_job(client, job_id, address, stream)


def follow_job(client, job_id: str, address: str, stream: TextIO) -> int:
    """Stream a job's log until the job ends; returns its exit code.

    0 SUCCEEDED, 3 SUCCEEDED with inputs recorded as errors, 2 FAILED on a usage error found
    on the cluster (e.g. a source it cannot see), 1 otherwise (FAILED, STOPPED).
    Ctrl-C stops following, not the job.
    """
    import asyncio

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            stream.write(chunk)
            stream.flush()

    try:
        with api_errors(address, job_id):
            asyncio.run(tail())
    except KeyboardInterrupt:
        print(f"\nmaskray: job {job_id} keeps running on the cluster; stop it with"
              f" `maskray cancel {job_id} --address {address}`", file=sys.stderr)
        raise
    job = _wait_until_finished(client, job_id, address, timeout=30.0)
    if job.state == "SUCCEEDED":
        with api_errors(address, job_id):
            # Whole lines only: the log's first line echoes the entrypoint, which contains it.
            lines = client.get_job_logs(job_id).splitlines()
        return 3 if INPUT_ERRORS_LINE in lines else 0
    print(f"maskray: job {job_id} {job.state}" + (f": {job.reason}" if job.state == "FAILED" else ""),
          file=sys.stderr)
    return 2 if job.state == "FAILED" and job.exit_code == 2 else 1


# ---- list, status, logs, cancel -----------------------------------------------------------

def list_jobs(address: Optional[str] = None, *, everything: bool = False,
              limit: Optional[int] = None) -> list[ClusterJob]:
    """The cluster's maskray jobs (every job with `everything`), newest first, with progress.

    `limit`: only the newest so many (progress reads each job's output, which takes a moment
    on an object store).
    """
    address = resolve_address(address)
    client = connect(address)
    with api_errors(address):
        jobs = [ClusterJob.from_details(d) for d in client.list_jobs() if d.submission_id]
    if not everything:
        jobs = [job for job in jobs if job.is_maskray]
    jobs.sort(key=lambda job: job.start_time or 0, reverse=True)
    jobs = jobs[:limit] if limit else jobs
    for job in jobs:
        if job.output:
            job.progress = output_progress(job.output)
    return jobs


def job_status(job_id: str, address: Optional[str] = None) -> ClusterJob:
    """One job's state, message and, for a maskray job, progress read from its output."""
    address = resolve_address(address)
    client = connect(address)
    with api_errors(address, job_id):
        job = ClusterJob.from_details(client.get_job_info(job_id))
    if job.output:
        job.progress = output_progress(job.output)
    return job


def job_logs(job_id: str, address: Optional[str] = None, *, follow: bool = False,
             stream: Optional[TextIO] = None) -> int:
    """Print a job's log (its driver's output); `follow` streams it and returns the job's code."""
    address = resolve_address(address)
    stream = stream or sys.stdout
    client = connect(address)
    with api_errors(address, job_id):
        client.get_job_info(job_id)  # an unknown id: a one-line error, not a websocket one
        if not follow:
            stream.write(client.get_job_logs(job_id))
            stream.flush()
            return 0
    return follow_job(client, job_id, address, stream)


def cancel_job(job_id: str, address: Optional[str] = None, *, timeout: float = 60.0) -> ClusterJob:
    """Stop a job and wait until Ray reports it ended; its committed shards stay in the output.

    Ray sends the driver SIGTERM (SIGKILL a few seconds later); the worker actors end with
    it. A shard that was being written never gets its commit record, so readers skip it and
    a resubmitted job redoes it.
    """
    address = resolve_address(address)
    client = connect(address)
    with api_errors(address, job_id):
        client.stop_job(job_id)  # False when it had already ended: then this just reports
    job = _wait_until_finished(client, job_id, address, timeout=timeout)
    if job.output:
        job.progress = output_progress(job.output)
    return job


def _wait_until_finished(client, job_id: str, address: str, timeout: float) -> ClusterJob:
    deadline = time.monotonic() + timeout
    while True:
        with api_errors(address, job_id):
            job = ClusterJob.from_details(client.get_job_info(job_id))
        if job.finished or time.monotonic() > deadline:
            return job
        time.sleep(0.5)

