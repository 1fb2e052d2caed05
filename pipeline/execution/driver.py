"""The driver: plans shards, keeps a pool of worker actors busy, records commits.

Planning streams into the run (`plan_feed.py`): image groups go to the workers at once,
each video's segments as soon as its indexing task on the cluster returns, so the first
shards commit before planning ends; `_job.json` gets its totals when the plan is complete.

It runs where `maskray submit` runs, with Ray already initialised by the caller (or started
through `connect`). It holds only shard descriptions and small commit records, never frames or
instances, so its memory does not grow with the job; it never imports torch. The output's
write lifecycle (lease, `_job.json`, commits, `_SUCCESS`) is `OutputSink`'s; the driver only
calls it. Shards go to whichever actor is free; a failed attempt is retried on a fresh actor,
and a shard that fails every attempt is bisected (`tasks.py`) so one bad input becomes error
rows instead of failing the job. Committed shards are skipped, which is how a re-run resumes.
The weights are fetched and checked once, here, just before Ray starts, and reach every
replica through Ray's object store (`pipeline/weights_location.py`).

`spec` is a `jobs.spec.JobSpec` (read through its attributes; pipeline does not import jobs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, TextIO

from maskray.errors import MaskrayError
from maskray.pipeline.execution.autoscale_request import ResourceRequest
from maskray.pipeline.execution.cluster_watch import exit_lost
from maskray.pipeline.execution.dispatch import dispatch, pool_snapshot
from maskray.pipeline.execution.planning_tasks import ClusterRunner
from maskray.pipeline.execution.job_record import job_record as new_job_record
from maskray.pipeline.execution.heartbeat import LEASE_TTL_S, Heartbeat
from maskray.pipeline.execution.progress import Progress
from maskray.pipeline.execution.startup import Once, list_sources
from maskray.pipeline.execution.pool_sizing import following, pool_size
from maskray.pipeline.execution.worker_pool import WorkerPool, error_line, is_ray_error, placement_text
from maskray.pipeline.execution.plan_feed import CompletePlan, PlanFeed, committed_in_plan
from maskray.pipeline.inputs.overlap import refuse_output_among_sources
from maskray.pipeline.inputs.plan_stream import ShardStream, plan_from_cache, plan_settings
from maskray.pipeline.inputs.shards import PlanSettings
from maskray.pipeline.inputs.sampling import Sampling
from maskray.pipeline.tracking.segment import HEAD_FRAMES
from maskray.pipeline.tracking.track_ids import stitch_job
from maskray.pipeline.output.layout import covered_shards
from maskray.pipeline.output.sink import OutputSink, refuse_overlap
from maskray.pipeline.weights_location import JobWeights


STOPPED_BY_USER = "stopped by the user (Ctrl-C); run the same submit again to resume"


@dataclass
class JobOutcome:
    exit_code: int  # 0 every frame done, 3 some inputs recorded as errors
    summary: dict


def run(spec, *, overwrite: bool = False, connect: Optional[Callable[[], None]] = None,
        preflight: Optional[Callable[[], None]] = None, stream: Optional[TextIO] = None,
        terminal: Optional[bool] = None, maskray_version: str = "") -> JobOutcome:
    """Run `spec` to completion; returns the exit code (0, or 3 with input errors) and a summary.

    `preflight()` (the caller's own checks), the sources and OUT are checked before Ray is
    touched, so usage mistakes fail fast. `connect()` is called once Ray is needed: for a new
    job while its sources are listed (`startup.py`), for a resume once its plan shows work to
    do (never, when a re-run finds every shard committed).
    """
    if overwrite:  # before anything else: --overwrite must never reach an input
        refuse_overlap(spec.output, spec.sources)
    refuse_output_among_sources(spec.output, spec.sources)  # parts must never land among inputs
    if preflight:
        preflight()
    weights = JobWeights(spec)  # fetched and checked once, just before Ray starts
    connect = Once(weights.before(connect or (lambda: None)))
    media = list_sources(spec, connect, overwrite)  # UsageError for a missing or empty source
    sink = OutputSink(spec.output)
    job_record = sink.on_write_start(
        lambda previous: new_job_record(spec, previous, maskray_version),
        overwrite=overwrite, sources=spec.sources, lease_ttl_s=LEASE_TTL_S,
    )
    heartbeat = Heartbeat(sink, job_record["job_id"])
    try:
        heartbeat.start()
        outcome = _run(spec, sink, media, job_record, heartbeat, connect, stream, terminal, weights)
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):  # Ctrl-C: `status` says so, and how to go on
            heartbeat.stop("stopped", STOPPED_BY_USER)
        else:
            heartbeat.stop("failed", error_line(error) or type(error).__name__)
        sink.on_write_failed(error)
        if isinstance(error, Exception) and not isinstance(error, MaskrayError) and is_ray_error(error):
            raise MaskrayError(f"job failed: {error_line(error)}") from error
        raise
    heartbeat.stop("done")
    sink.release()
    return outcome


def _run(spec, sink: OutputSink, media, job_record, heartbeat: Heartbeat, connect, stream, terminal,
         weights=None) -> JobOutcome:
    started = time.time()
    plan = committed = None
    if job_record.get("plan_workers"):
        # A re-run plans exactly as the first run did (automatic segment lengths depend on the
        # worker count; the same cut gives the same shard ids, so committed work is found).
        # With every index cached it plans here, reading no media, and needs no Ray at all
        # when every shard is committed.
        plan = plan_from_cache(media, _settings(spec, media, job_record))
        if plan is not None:
            committed = committed_in_plan(sink, {s.id for s in plan})
    if plan is None or len(covered_shards(committed.values())) < len(plan):
        heartbeat.phase = "starting workers"
        connect()
        workers, gpus_per_worker, cpus_per_worker = pool_size(spec)
        if not job_record.get("plan_workers"):
            job_record["plan_workers"] = workers  # before any commit: a resume cuts the same way
            sink.write_job_record(job_record)
    runner = ClusterRunner() if plan is None else None
    source = CompletePlan(plan) if plan is not None else ShardStream(media, _settings(spec, media, job_record), runner)
    if committed is None:
        committed = sink.committed(repair=True)
    progress = Progress(None, None, stream=stream, terminal=terminal)
    if sink.repaired:
        progress.log(repair_line(sink.repaired, len(sink.redone)))
    feed = PlanFeed(source, sink, job_record, committed, progress, started)
    pending = feed.take()
    heartbeat.rate = lambda: progress.rate
    if pending or not feed.done:
        size = workers if not feed.done else min(workers, len(pending))
        weights = weights.ship()  # into Ray's object store; every replica starts from it
        if weights is not None:
            progress.log(f"{weights.describe()}: read once, sent to the replicas through Ray's object store")
        # Without --workers the pool follows the cluster's nodes (pool_sizing.py).
        follow = None if spec.workers else following(spec, gpus_per_worker > 0)
        pool = WorkerPool(spec, sink, size, gpus_per_worker, cpus_per_worker, follow=follow, weights=weights,
                          on_started=lambda placement: progress.log(f"worker started: {placement_text(placement)}"))
        heartbeat.details = lambda: {**_run_counts(progress), "replicas": pool_snapshot(pool)}
        request = ResourceRequest(follow.bundle({}), spec.max_workers) if follow is not None else None
        try:
            heartbeat.phase = "loading the model"
            job_record["weights_id"] = pool.wait_first()["weights_id"]  # the others join as they start
            if runner is not None:
                runner.replicas_started()
            sink.write_job_record(job_record)
            pending += feed.take()  # planned while the model loaded
            so_far = "" if feed.done else " so far (planning goes on)"
            elastic = " (following the cluster)" if follow is not None else ""
            progress.log(f"{len(pending)} shards to do{so_far} on {size} workers{elastic}")
            heartbeat.phase = "running"
            progress.start_clock()
            dispatch(pool, feed, pending, committed, progress, heartbeat,
                     on_lost=exit_lost(lambda message: heartbeat.stop("failed", message)),
                     request=request, metrics=_metrics(job_record["job_id"]))
        finally:
            if request is not None:  # also on failure and Ctrl-C: no nodes held for nobody
                request.clear()
            heartbeat.details = lambda: _run_counts(progress)
            pool.shutdown()
            progress.close()
    else:
        progress.close()
        progress.log("every shard is already committed: nothing to do")

    shards = feed.planned
    _reconcile(sink, committed)
    # Track ids, once per video (kept on a re-run); stitching reads the records' `tracks`.
    stitch_job(spec.output, shards, {k: {"tracks": r.tracks} for k, r in committed.items() if r.tracks is not None})
    errors = sum(r.errors for r in committed.values())
    summary = {
        "job_id": job_record["job_id"],
        "shards": len(shards),
        "frames": sum(r.frames for r in committed.values()),
        "instances": sum(r.instances for r in committed.values()),
        "errors": errors,
        "run": progress.summary(),
    }
    sink.on_write_complete(summary)
    progress.log(
        f"done: {summary['frames']} frames, {summary['instances']} instances, {errors} errors"
        f" in {summary['run']['wall_s']:.1f}s ({summary['run']['frames_per_s']:.1f} frames/s);"
        f" {summary['run']['retries']} retries, {summary['run']['preemptions']} preemptions,"
        f" {summary['run']['requeued_shards']} shards requeued free; output {spec.output}"
    )
    return JobOutcome(3 if errors else 0, summary)


def _run_counts(progress: Progress) -> dict:
    return {"retries": progress.retries, "preemptions": progress.preemptions,
            "requeued_shards": progress.requeued_shards, "nodes_lost": progress.nodes_lost}


def _metrics(job_id: str):
    """The job's Prometheus metrics (metrics.py); None where Ray's metrics cannot be made."""
    from maskray.pipeline.execution.metrics import JobMetrics

    try:
        return JobMetrics(job_id)
    except Exception:  # noqa: BLE001 - metrics are for watching a job, never a reason to fail it
        return None


def repair_line(problems: list, shards: int) -> str:
    """What a resume says about the commits it withdrew because their parts were damaged."""
    first = problems[0]
    return (f"redoing {shards} shard{'s' * (shards != 1)} whose parts are missing or damaged"
            f" ({len(problems)} part{'s' * (len(problems) != 1)}; {first.path}: {first.problem})")


def _reconcile(sink: OutputSink, committed: dict) -> None:
    """Make the stored commits exactly the driver's before `_SUCCESS`: a late attempt (a
    zombie on a partitioned node) may have committed a shard that was bisected meanwhile,
    which would count its frames twice. Once the lease is released no late attempt commits."""
    for shard_id, record in sink.committed().items():
        if shard_id not in committed:
            sink.withdraw(record)
        else:
            committed[shard_id] = record  # the same shard by another attempt: its files win


def _settings(spec, media, job_record: dict) -> PlanSettings:
    """How this job cuts its inputs (the same listing and `plan_workers` give the same shards)."""
    sampling = Sampling(every=spec.every, fps=spec.fps, keyframes=bool(spec.keyframes))
    lookahead = HEAD_FRAMES if getattr(spec, "track", False) else 0
    return plan_settings(media, sampling, spec.segment_seconds, int(job_record["plan_workers"]),
                         lookahead=lookahead, output=spec.output)
