"""The pool of worker actors: starting them, handing them out, replacing or retiring them.

One actor per model replica, `num_gpus=--gpus-per-worker` (fractions share a GPU); without
GPUs (or with --cpu) the replicas share the cluster's CPUs. Ray pins each actor to its GPUs
by setting CUDA_VISIBLE_DEVICES, so a replica's "cuda" is its own device.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Optional

from maskray.errors import MaskrayError, first_line
from maskray.pipeline.execution.pool_sizing import alive_nodes
from maskray.pipeline.execution.replica import DRAINING, IDLE, STARTING, Replica


def predictor_config(spec, weights=None) -> dict:
    """The replicas' `PredictorConfig` fields; `weights` (`ShippedWeights`) adds the sha256 that
    the bytes they are given (the actor's last argument) must have."""
    return {
        "model": spec.model, "weights": spec.weights, "min_size": spec.min_size,
        "weights_sha256": weights.sha256 if weights is not None else None,
        "max_size": spec.max_size, "score_threshold": spec.score_threshold,
        "mask_threshold": spec.mask_threshold, "max_instances": spec.max_instances,
        "precision": spec.precision, "pre_nms_top": spec.pre_nms_top,
        "classes": tuple(spec.classes) if getattr(spec, "classes", None) else None,
        "class_thresholds": tuple(sorted((getattr(spec, "class_thresholds", None) or {}).items())),
    }


def tracking_config(spec) -> Optional[dict]:
    """The tracker's settings for the workers, or None when tracking is off."""
    if not getattr(spec, "track", False):
        return None
    return dict(getattr(spec, "tracker", None) or {})


START_BACKOFF_S = 30.0  # after a replica failed to start on a node, the pool waits this long to try again


class WorkerPool:
    """Worker replicas (`replica.Replica`, each one actor holding a model).

    Fixed (`--workers N`): a dead replica is replaced by a fresh one so the pool keeps its
    size. Following the cluster (`follow`, a `pool_sizing.FollowCluster`): `follow(nodes,
    draining)` starts replicas on nodes that have room for them (each pinned to its node) and
    lets go of those on nodes that went or are being drained; a lost replica is not replaced
    by itself, the next `follow` decides.

    A replica takes shards once it has started (placed on a node, model loaded), each on its
    own: work begins with the first replica up instead of waiting for the slowest (a cluster
    still scaling up, a node busy elsewhere). After a node is lost its replacement may wait for
    resources that no longer exist; a shard handed to it would wait with it while the
    surviving actors sit idle. `on_started(placement)` is told of each replica that starts.
    """

    def __init__(self, spec, sink, size, gpus_per_worker, cpus_per_worker,
                 on_started: Optional[Callable[[dict], None]] = None, follow=None, weights=None):
        import ray

        from maskray.pipeline.execution.worker import ShardWorker

        self.sink = sink  # the output the actors write to (the driver records commits there)
        self._remote = ray.remote(ShardWorker)
        self._options = dict(num_gpus=gpus_per_worker, num_cpus=cpus_per_worker, max_restarts=0)
        # The weights' ObjectRef as a top-level argument: Ray hands each replica the bytes
        # (fetched to its node once), so no replica reads the weights' location itself.
        self._args = (predictor_config(spec, weights), sink, spec.batch_size, bool(spec.cpu), tracking_config(spec),
                      weights.ref if weights is not None else None, bool(getattr(spec, "embeddings", False)))
        self._on_started = on_started or (lambda placement: None)
        self._follow = follow
        self._idle: list[Replica] = []
        self._all: list[Replica] = []
        self._starting: dict = {}  # describe() ref -> replica not yet started
        self.placements: list[dict] = []  # of every replica started so far
        self.started_count = 0
        self._failed_on: dict[str, float] = {}  # node id -> when a replica last failed to start there
        if follow is None:
            for _ in range(size):
                self._start_one(self._options)
        else:
            self.follow(alive_nodes(), {}, limit=size)

    # ---- starting and stopping replicas -----------------------------------------------------
    def _start_one(self, options: dict, node_id: Optional[str] = None) -> Replica:
        actor = self._remote.options(**options).remote(*self._args)
        replica = Replica(actor, node_id)
        self._all.append(replica)
        self._starting[actor.describe.remote()] = replica
        return replica

    def follow(self, nodes: dict[str, dict], draining: dict, limit: Optional[int] = None) -> None:
        """Match an elastic pool to the cluster: replicas on nodes gone or being drained leave
        (`leave_nodes`); nodes with room get new ones, pinned to them, up to `--max-workers`
        and `limit` (the work left), if given. A fixed pool only leaves draining nodes."""
        if self._follow is None:
            self.leave_nodes(lambda node: node in draining)
            return
        self.leave_nodes(lambda node: node in draining or node not in nodes)
        caps = [x for x in (self._follow.max_workers, limit) if x is not None]
        cap = min(caps) if caps else None
        live = [r for r in self._all if r.state != DRAINING]
        for node_id, share in self._follow.shares(nodes, draining).items():
            if time.monotonic() - self._failed_on.get(node_id, -START_BACKOFF_S) < START_BACKOFF_S:
                continue  # a replica just failed to start there: no crash loop
            here = sum(1 for r in live if r.node_id == node_id)
            for _ in range(share.replicas - here):
                if cap is not None and len(live) >= cap:
                    return
                options = dict(self._options, num_gpus=share.gpus, num_cpus=share.cpus,
                               scheduling_strategy=_on_node(node_id))
                live.append(self._start_one(options, node_id))

    def leave_nodes(self, going: Callable[[str], bool]) -> None:
        """Replicas on nodes for which `going(node)`: an idle or starting one is replaced (fixed
        pool) or retired (elastic); a working one is marked draining: no new shards."""
        for replica in list(self._all):
            if replica.node_id is None or replica.state == DRAINING or not going(replica.node_id):
                continue
            if replica.state in (IDLE, STARTING):
                self.replace(replica)
            else:
                replica.state = DRAINING

    def retire(self, replica: Replica) -> None:
        """Kill `replica` for good (its node is going, or the pool is smaller now)."""
        import ray

        try:
            ray.kill(replica.actor, no_restart=True)
        except Exception:  # already gone
            pass
        self._idle = [r for r in self._idle if r is not replica]
        self._all = [r for r in self._all if r is not replica]
        self._starting = {ref: r for ref, r in self._starting.items() if r is not replica}

    def replace(self, old: Replica) -> None:
        """Kill `old` (dead, or alive after a failed task) and start a fresh replica: in a
        fixed pool at once, anywhere; in an elastic one the next `follow` places it."""
        self.retire(old)
        if self._follow is None:
            self._start_one(self._options)

    # ---- handing out replicas ---------------------------------------------------------------
    def wait_first(self) -> dict:
        """Wait until one replica has started; its placement. A usage mistake met while
        loading (weights that cannot be found) is raised as itself: its line, exit code 2."""
        import ray

        while not self._idle:
            if self._starting:
                ray.wait(list(self._starting), num_returns=1, timeout=1.0)
            elif self._follow is not None:  # no node has room yet (an autoscaler is adding one)
                time.sleep(1.0)
                self.follow(alive_nodes(), {})
            self._admit_started()
        return self.placements[0]

    def has_idle(self) -> bool:
        self._admit_started()
        return bool(self._idle)

    def take(self) -> Replica:
        replica = self._idle.pop(0)
        replica.begin_shard()
        return replica

    def give_back(self, replica: Replica, frames: int = 0) -> None:
        """The replica's shard is done; a draining replica leaves instead of taking more."""
        replica.end_shard(frames)
        if replica.state == DRAINING:
            self.replace(replica)
        else:
            self._idle.append(replica)

    @property
    def replicas(self) -> list[Replica]:
        return list(self._all)

    def typical_shard_s(self) -> Optional[float]:
        """The median recent shard time across replicas (for one that has none of its own)."""
        times = [r.expected_shard_s() for r in self._all if r.recent]
        return statistics.median(times) if times else None

    def _admit_started(self) -> None:
        import ray

        if not self._starting:
            return
        ready, _ = ray.wait(list(self._starting), num_returns=len(self._starting), timeout=0)
        for ref in ready:
            replica = self._starting.pop(ref)
            try:
                placement = ray.get(ref)
            except ray.exceptions.RayError as error:
                cause = original_error(error)
                if isinstance(cause, MaskrayError) and not self.placements:
                    raise cause from None  # the user's mistake, the same for every replica
                self._all = [r for r in self._all if r is not replica]  # it could not start: drop it
                if replica.node_id is not None:
                    self._failed_on[replica.node_id] = time.monotonic()
                if not self._all and self._follow is None:
                    raise MaskrayError(f"no worker replica could be started: {error_line(cause or error)}") from None
                continue
            self.placements.append(placement)
            self.started_count += 1
            replica.host = placement.get("host", "")
            if replica.state == STARTING:
                replica.state = IDLE
                self._idle.append(replica)
            self._on_started(placement)

    def shutdown(self) -> None:
        import ray

        for replica in self._all:
            try:
                ray.kill(replica.actor, no_restart=True)
            except Exception:  # already gone
                pass


def _on_node(node_id: str):
    """Pinned to `node_id`, never elsewhere: one replica per node means on that node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


def placement_text(placement: dict) -> str:
    gpus = ",".join(placement["gpu_ids"]) or "-"
    return f"{placement['host']} pid {placement['pid']} {placement['device']} (GPU {gpus})"


def original_error(error: BaseException) -> Optional[BaseException]:
    """The exception raised inside an actor, when Ray kept it."""
    for name in ("cause", "base_exception"):
        cause = getattr(error, name, None)
        if isinstance(cause, BaseException) and cause is not error:
            return original_error(cause) or cause
    return None


def is_ray_error(error: BaseException) -> bool:
    import ray

    return isinstance(error, ray.exceptions.RayError)


def error_line(error: BaseException) -> str:
    """One line about `error`; for Ray's errors, the original exception's own line (the last
    of the remote traceback Ray quotes)."""
    if is_ray_error(error):
        lines = [line for line in str(error).splitlines() if line.strip()]
        if len(lines) > 1:
            return first_line(lines[-1])
    return first_line(error)
