"""The driver: plans shards, keeps a pool of worker actors busy, records commits.

It runs where `maskray submit` runs, with Ray already initialised by the caller. It holds
only shard descriptions and small commit records, never frames or instances, so its memory
does not grow with the job. Shards go to whichever actor is free (long and short shards
balance); a shard whose actor died, or whose task failed, is retried on a fresh actor a
bounded number of times. Committed shards (`_commits/`) are skipped, which is how a
re-run resumes.

`spec` is a `jobs.spec.JobSpec` (read through its attributes; pipeline does not import jobs).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Callable, Optional, TextIO

from maskray.models.errors import MaskrayError, UsageError
from maskray.pipeline.output import sink
from maskray.pipeline.execution.cluster_watch import NODE_LOST, ClusterWatch, exit_lost
from maskray.pipeline.execution.indexing import video_indexer
from maskray.pipeline.execution.progress import Progress
from maskray.pipeline.inputs.shards import plan_shards
from maskray.pipeline.inputs.listing import list_media
from maskray.pipeline.inputs.video import Sampling
from maskray.pipeline.tracking.segment import HEAD_FRAMES
from maskray.pipeline.tracking.track_ids import stitch_job
from maskray.pipeline.execution.worker_pool import WorkerPool, error_line, is_ray_error, placement_text, pool_size

MAX_ATTEMPTS = 3
HEARTBEAT_S = 30.0


@dataclass
class JobOutcome:
    exit_code: int  # 0 every frame done, 3 some inputs recorded as errors
    summary: dict


def run(spec, *, overwrite: bool = False, connect: Optional[Callable[[], None]] = None,
        preflight: Optional[Callable[[], None]] = None, stream: Optional[TextIO] = None,
        terminal: Optional[bool] = None, maskray_version: str = "") -> JobOutcome:
    """Run `spec` to completion; returns the exit code (0, or 3 with input errors) and a summary.

    Sources, `preflight()` (the caller's own checks) and OUT are checked before Ray is
    touched, so usage mistakes fail fast. `connect()` is called once Ray is needed (never,
    when a re-run finds every shard committed); without it, Ray must already be initialised.
    """
    media = list_media(spec.sources, output=spec.output)  # UsageError for a missing or empty source
    if preflight:
        preflight()
    manifest = _prepare_output(spec, overwrite, maskray_version)
    try:
        return _run(spec, media, manifest, connect or (lambda: None), stream, terminal)
    except BaseException as error:
        _record_failure(spec.output, manifest, error)
        if isinstance(error, Exception) and not isinstance(error, MaskrayError) and is_ray_error(error):
            raise MaskrayError(f"job failed: {error_line(error)}") from error
        raise


def _run(spec, media, manifest, connect, stream, terminal) -> JobOutcome:
    output = spec.output
    shards = committed = None
    if manifest.get("plan_workers"):
        # A re-run plans exactly as the first run did (automatic segment lengths depend on
        # the worker count; the same cut gives the same shard ids, so committed work is found).
        shards = _plan(spec, media, manifest)
        committed = _committed_in_plan(output, {s.id for s in shards})
    if shards is None or len(committed) < len(shards):
        connect()
        workers, gpus_per_worker, cpus_per_worker = pool_size(spec)
        if shards is None:
            manifest["plan_workers"] = workers
            shards = _plan(spec, media, manifest)
            committed = _committed_in_plan(output, {s.id for s in shards})
    total_frames = manifest["frames"]
    pending = [s for s in shards if s.id not in committed]
    progress = Progress(
        total_frames, len(shards), done_frames=sum(r.get("frames", 0) for r in committed.values()),
        done_shards=len(committed), stream=stream, terminal=terminal,
    )
    heartbeat = _Heartbeat(output, manifest["job_id"], progress)
    heartbeat.beat(force=True)
    if pending:
        workers = min(workers, len(pending))
        pool = WorkerPool(spec, manifest["job_id"], workers, gpus_per_worker, cpus_per_worker)
        try:
            placement = pool.describe()
            manifest["weights_id"] = placement[0]["weights_id"]
            sink.write_job(output, manifest)
            progress.log(
                f"{len(pending)} of {len(shards)} shards to do ({total_frames} frames in all) on"
                f" {workers} workers: " + ", ".join(placement_text(p) for p in placement)
            )
            progress.start_clock()
            _dispatch(pool, pending, committed, progress, heartbeat,
                      on_lost=exit_lost(lambda message: heartbeat.finish("failed", message)))
        finally:
            pool.shutdown()
            progress.close()
    else:
        progress.close()
        progress.log("every shard is already committed: nothing to do")

    stitch_job(output, shards, committed)  # track ids, once per video (kept on a re-run)
    errors = sum(r.get("errors", 0) for r in committed.values())
    summary = {
        "job_id": manifest["job_id"],
        "shards": len(shards),
        "frames": sum(r.get("frames", 0) for r in committed.values()),
        "instances": sum(r.get("instances", 0) for r in committed.values()),
        "errors": errors,
        "run": progress.summary(),
    }
    sink.write_success(output, summary)
    heartbeat.finish("done")
    progress.log(
        f"done: {summary['frames']} frames, {summary['instances']} instances, {errors} errors"
        f" in {summary['run']['wall_s']:.1f}s ({summary['run']['frames_per_s']:.1f} frames/s); output {output}"
    )
    return JobOutcome(3 if errors else 0, summary)


def _dispatch(pool: "WorkerPool", pending: list, committed: dict, progress: Progress, heartbeat,
              on_lost=None) -> None:
    """Hand shards to free actors until all are committed; retry lost ones (bounded).

    A shard whose actor was on a node that died is retried without using up an attempt;
    a driver that lost its cluster fails with one line (see cluster_watch.py).
    """
    import ray

    queue = list(reversed(pending))  # pop() from the end keeps the planned order
    attempts: dict[str, int] = {}
    running: dict = {}  # ObjectRef -> (shard, actor)
    lost: dict = {}  # shard id -> (shard, actor, error, since): actor gone, cause not yet known
    watch = ClusterWatch(on_lost=on_lost)
    try:
        while queue or running or lost:
            while queue and pool.has_idle():
                shard = queue.pop()
                attempts[shard.id] = attempts.get(shard.id, 0) + 1
                actor = pool.take()
                watch.watch_actor(actor)
                running[actor.process.remote(shard, attempts[shard.id])] = (shard, actor)
            if running:
                done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            else:  # waiting for replacements to start, or for a verdict on lost actors
                done = []
                time.sleep(0.5)
            for ref in done:
                shard, actor = running.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayActorError as error:
                    pool.replace(actor)
                    lost[shard.id] = (shard, actor, error, time.monotonic())
                    continue
                except ray.exceptions.RayTaskError as error:
                    pool.give_back(actor)
                    _retry_or_fail(shard, attempts, queue, progress, "task failed", error)
                    continue
                pool.give_back(actor)
                committed[shard.id] = record
                progress.committed(record)
            for ref, (shard, actor) in list(running.items()):
                if watch.on_dead_node(actor):  # Ray may never answer for a task on a vanished node
                    del running[ref]
                    pool.replace(actor)
                    lost[shard.id] = (shard, actor, None, time.monotonic())
            for shard_id, (shard, actor, error, since) in list(lost.items()):
                verdict = watch.verdict(actor, error, since)
                if verdict is None:
                    continue
                del lost[shard_id]
                watch.forget_actor(actor)
                if verdict == NODE_LOST:
                    _requeue_node_lost(shard, attempts, queue, progress)
                else:
                    _retry_or_fail(shard, attempts, queue, progress, "worker died", error)
            watch.raise_if_lost()
            progress.tick()
            heartbeat.beat()
    finally:
        watch.stop()


def _requeue_node_lost(shard, attempts, queue, progress) -> None:
    attempts[shard.id] -= 1  # a lost node is not the shard's fault: it keeps its retries
    progress.retried(shard.id, attempts[shard.id] + 1, "its node was lost")
    queue.append(shard)


def _retry_or_fail(shard, attempts, queue, progress, what, error) -> None:
    if attempts[shard.id] >= MAX_ATTEMPTS:
        raise MaskrayError(
            f"shard {shard.id} failed {attempts[shard.id]} times ({what}): {error_line(error)}"
        ) from error
    progress.retried(shard.id, attempts[shard.id] + 1, f"{what}: {error_line(error)}")
    queue.append(shard)


def _plan(spec, media, manifest: dict) -> list:
    """Shards of the job (the same inputs and `plan_workers` give the same shards); records
    their count and total frames in `_job.json`."""
    sampling = Sampling(every=spec.every, fps=spec.fps, keyframes=bool(spec.keyframes))
    lookahead = HEAD_FRAMES if getattr(spec, "track", False) else 0
    shards = plan_shards(media, sampling, spec.segment_seconds, int(manifest["plan_workers"]),
                         lookahead=lookahead, index_videos=video_indexer(spec.output))
    manifest.update(shards=len(shards), frames=sum(s.expected_frames for s in shards))
    sink.write_job(spec.output, manifest)
    return shards


def _committed_in_plan(output: str, planned: set) -> dict:
    """Commit records of planned shards. A commit outside the plan (the sources changed since
    the first run, so image groups moved) is withdrawn with its parts: its frames are redone in
    the new shards, never counted twice."""
    committed = sink.read_commits(output)
    for shard_id in [k for k in committed if k not in planned]:
        sink.uncommit(output, shard_id)
        del committed[shard_id]
    return committed


def _prepare_output(spec, overwrite: bool, maskray_version: str) -> dict:
    """Check OUT against an earlier job there and write `_job.json`; returns the manifest.

    The same spec resumes (same job id); a different one is refused unless `overwrite`,
    which removes the old job's files first. An unwritable OUT is a usage error.
    """
    output = spec.output
    try:
        previous = sink.read_job(output)
    except OSError as error:
        raise UsageError(f"cannot read output {output}: {error_line(error)}") from None
    except ValueError:
        previous = {"fingerprint": "unreadable"}
    fingerprint = spec.fingerprint()
    job_id = None
    if previous is not None:
        if overwrite:
            sink.clear_output(output)
        elif previous.get("fingerprint") != fingerprint:
            changed = _changed_fields(previous.get("spec") or {}, spec)
            detail = f" (differs in {', '.join(changed)})" if changed else ""
            raise UsageError(
                f"{output} holds a different job{detail}; use --overwrite to replace it,"
                " or choose another --output"
            )
        else:
            job_id = previous.get("job_id")
    manifest = {
        "job_id": job_id or uuid.uuid4().hex[:12],
        "fingerprint": fingerprint,
        "spec": spec.to_dict(),
        "model": spec.model,
        "weights": spec.weights,
        "maskray_version": maskray_version,
        "created": (previous or {}).get("created") if job_id else _now(),
    }
    if job_id:  # resuming: keep what the first run learnt (its plan, the weights it loaded)
        for key in ("plan_workers", "weights_id"):
            if previous.get(key):
                manifest[key] = previous[key]
    try:
        sink.write_job(output, manifest)
        sink.remove_success(output)
    except OSError as error:
        raise UsageError(f"cannot write to output {output}: {error_line(error)}") from None
    return manifest


def _changed_fields(previous_spec: dict, spec) -> list[str]:
    compare = getattr(spec, "differences_from_dict", None)
    return compare(previous_spec) if compare else []


class _Heartbeat:
    """`_driver.json`: the driver's state, refreshed every HEARTBEAT_S, for `maskray status`."""

    def __init__(self, output: str, job_id: str, progress: Progress):
        self.output, self.job_id, self.progress = output, job_id, progress
        self._last = 0.0

    def beat(self, force: bool = False, state: str = "running", message: str = "") -> None:
        now = time.monotonic()
        if not force and now - self._last < HEARTBEAT_S:
            return
        self._last = now
        sink.write_driver_state(self.output, {
            "job_id": self.job_id, "state": state, "message": message, "updated": time.time(),
            "frames_per_s": round(self.progress.rate, 3), "heartbeat_s": HEARTBEAT_S,
        })

    def finish(self, state: str, message: str = "") -> None:
        self.beat(force=True, state=state, message=message)


def _record_failure(output: str, manifest: dict, error: BaseException) -> None:
    """Leave `state: failed` for `maskray status`; never hides the original error."""
    try:
        sink.write_driver_state(output, {
            "job_id": manifest["job_id"], "state": "failed", "updated": time.time(),
            "message": error_line(error) or type(error).__name__, "heartbeat_s": HEARTBEAT_S,
        })
    except Exception:
        pass


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
