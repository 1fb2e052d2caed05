"""The dispatch loop: shards to free replicas, commits recorded, the pool kept matched to the cluster.

Each turn: take newly planned shards; let the pool follow the cluster's nodes (`worker_pool.
follow`); ask the autoscaler for what the queue needs (`autoscale_request.py`); act on drain
notices; hand shards to idle replicas; collect what finished; sort out lost replicas.

A drain notice (the node is being preempted or scaled down, `cluster_watch.py`): that node's
replicas get no new shards; an in-flight shard its replica will finish before the deadline
(judged from the replica's recent shard times) finishes, any other goes back to the queue at
once. Shards lost to a drained or dead node go back to the queue without using up an attempt;
a shard that fails on a healthy node uses one (and is bisected once its attempts are used up,
`tasks.py`), so a poison input still ends as error rows.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Optional

from maskray.errors import MaskrayError
from maskray.pipeline.execution.cluster_watch import NODE_LOST, ClusterWatch
from maskray.pipeline.execution.replica import DRAINING, finishes_before
from maskray.pipeline.execution.tasks import ShardTask, bisect
from maskray.pipeline.execution.worker_pool import WorkerPool, error_line, original_error
from maskray.pipeline.output.layout import covered_shards
from maskray.pipeline.output.sink import StaleWriterError
from maskray.pipeline.storage import WriteError


def dispatch(pool: WorkerPool, feed, pending: list[ShardTask], committed: dict, progress, heartbeat,
             on_lost=None, request=None, metrics=None) -> None:
    """Hand tasks to free replicas until the plan is complete and every shard is covered by commits.

    Shards planned meanwhile join the end of the queue; retries and requeued shards go to its
    front. `request`: an `autoscale_request.ResourceRequest` (cleared by the caller at the
    end); `metrics`: a `metrics.JobMetrics`.
    """
    import ray

    sink = pool.sink
    queue = deque(pending)
    running: dict = {}  # ObjectRef -> (task, replica)
    lost: dict = {}  # id(task) -> (task, replica, error, since): replica gone, cause not yet known
    watch = ClusterWatch(on_lost=on_lost)
    noticed: set = set()  # draining nodes already reported
    progress.replicas_text = lambda: _replicas_text(pool)
    try:
        while queue or running or lost or not feed.done:
            if heartbeat.lost is not None:
                raise heartbeat.lost
            if not feed.done:  # waits a little only when nothing else is going on
                queue.extend(feed.take(timeout=0.0 if queue or running or lost else 0.5))
                heartbeat.phase = "running" if feed.done else "running, planning"
            _report_drain_notices(pool, watch, noticed, progress, metrics)
            _follow_cluster(pool, watch, feed, queue, running)
            if request is not None:
                request.update(len(queue), len(running))
            _act_on_drain_notices(pool, watch, running, queue, progress, metrics)
            while queue and pool.has_idle():
                task = queue.popleft()
                task.attempts += 1
                replica = pool.take()
                watch.watch_actor(replica.actor)
                ref = replica.actor.process.remote(task.shard, task.attempts, task.planned, task.piece, task.failure)
                running[ref] = (task, replica)
            if metrics is not None:
                metrics.pool(len(queue), pool.replicas)
            if running:
                ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0 if feed.done else 0.25)
            else:  # waiting for replicas to start, for a verdict on lost ones, or for the plan
                ready = []
                if feed.done or queue or lost:  # (otherwise `feed.take` has just waited)
                    time.sleep(0.5)
            for ref in ready:
                task, replica = running.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayActorError as error:
                    pool.replace(replica)
                    lost[id(task)] = (task, replica, error, time.monotonic())
                    continue
                except ray.exceptions.RayTaskError as error:
                    if isinstance(original_error(error), StaleWriterError):
                        raise MaskrayError(f"job stopped: {error_line(error)}") from error
                    cause = original_error(error)
                    if isinstance(cause, WriteError) and not cause.transient:
                        raise cause from None  # a full disk or a read-only OUT: every shard would fail alike
                    # A fresh replica for whatever comes next: the failed one may be a zombie, or
                    # hold a broken CUDA context.
                    pool.replace(replica)
                    _retry_or_bisect(task, queue, progress, f"task failed: {error_line(error)}", metrics)
                    continue
                shard_s = replica.in_flight_s()
                pool.give_back(replica, record.frames)
                committed[record.shard] = record
                sink.record(record)  # into the next manifest of the commit log
                if metrics is not None:
                    metrics.committed(record, shard_s)
                progress.committed(record, completes_shard=task.planned in covered_shards(
                    [r for r in committed.values() if r.planned == task.planned]))
            for ref, (task, replica) in list(running.items()):
                if watch.on_dead_node(replica.actor):  # Ray may never answer for a task on a vanished node
                    del running[ref]
                    pool.replace(replica)
                    lost[id(task)] = (task, replica, None, time.monotonic())
            for key, (task, replica, error, since) in list(lost.items()):
                verdict = watch.verdict(replica.actor, error, since)
                if verdict is None:
                    continue
                del lost[key]
                watch.forget_actor(replica.actor)
                if verdict == NODE_LOST:
                    # Not the shard's fault: it keeps its attempts.
                    task.attempts -= 1
                    preempted = getattr(error, "preempted", False) or watch.was_draining(
                        replica.node_id or watch.actor_node(replica.actor))
                    why = "its node was preempted" if preempted else "its node was lost"
                    _requeue(task, queue, progress, metrics, why, preempted)
                else:
                    reason = f"worker died: {error_line(error)}" if error is not None else "worker died"
                    _retry_or_bisect(task, queue, progress, reason, metrics)
            watch.raise_if_lost()
            progress.tick()
    finally:
        watch.stop()


def _follow_cluster(pool: WorkerPool, watch: ClusterWatch, feed, queue: deque, running: dict) -> None:
    """Replicas follow the nodes (elastic pools), and leave draining nodes (any pool)."""
    nodes = watch.alive_nodes()
    if not nodes:  # no answer from the GCS yet: nothing to follow
        return
    for replica in pool.replicas:
        watch.watch_actor(replica.actor)
        if replica.node_id is None:  # a fixed pool's replica: where Ray placed it
            replica.node_id = watch.actor_node(replica.actor)
    limit = len(queue) + len(running) if feed.done else None  # no replicas for work that is not there
    pool.follow(nodes, watch.draining(), limit=limit)


def _report_drain_notices(pool: WorkerPool, watch: ClusterWatch, noticed: set, progress, metrics) -> None:
    """Count each drain notice for a node that runs replicas of ours, once."""
    for node_id, deadline in watch.draining().items():
        if node_id in noticed:
            continue
        ours = [r for r in pool.replicas if r.node_id == node_id]
        if not ours:
            continue
        noticed.add(node_id)
        when = f"deadline in {deadline - time.time():.0f}s" if deadline else "no deadline"
        progress.preempted(node_id, when, len(ours))
        if metrics is not None:
            metrics.preempted()


def _act_on_drain_notices(pool: WorkerPool, watch: ClusterWatch, running: dict, queue: deque, progress,
                          metrics) -> None:
    """In-flight shards on draining nodes: keep those that finish before the deadline, requeue the rest."""
    draining = watch.draining()
    if not draining:
        return
    typical = pool.typical_shard_s()
    for ref, (task, replica) in list(running.items()):
        if replica.state != DRAINING or replica.node_id not in draining:
            continue
        if finishes_before(replica, draining[replica.node_id], typical):
            continue
        del running[ref]
        pool.replace(replica)  # killed now: its node is going and so is the shard it held
        task.attempts -= 1
        _requeue(task, queue, progress, metrics, "its node is being preempted (drained) and the shard would not"
                 " finish before the deadline", True)


def _requeue(task: ShardTask, queue: deque, progress, metrics, reason: str, preempted: bool) -> None:
    progress.requeued(task.shard.id, reason, preempted)
    if metrics is not None:
        metrics.requeued_shard()
    queue.appendleft(task)


def _retry_or_bisect(task: ShardTask, queue: deque, progress, reason: str, metrics=None) -> None:
    if not task.exhausted():
        if metrics is not None:
            metrics.retried()
        progress.retried(task.shard.id, task.attempts + 1, reason)
        queue.appendleft(task)
        return
    replacements = bisect(task, f"this input failed the worker: {reason}")
    if not replacements:
        raise MaskrayError(f"shard {task.shard.id} failed {task.attempts} times ({reason})")
    what = ("its inputs become error rows" if replacements[0].failure
            else f"split into {len(replacements)} pieces")
    progress.log(f"shard {task.shard.id} failed {task.attempts} times ({reason}); {what}")
    queue.extendleft(reversed(replacements))


def _replicas_text(pool: WorkerPool) -> str:
    from maskray.pipeline.execution.replica import nodes_text

    return nodes_text(pool.replicas)


def pool_snapshot(pool: Optional[WorkerPool]) -> list[dict]:
    """Replicas per node for `_driver.json` (read by `maskray status`)."""
    from maskray.pipeline.execution.replica import nodes_summary

    return nodes_summary(pool.replicas) if pool is not None else []
