"""The pool of worker actors: how many, with which resources, and replacing dead ones.

One actor per model replica, `num_gpus=--gpus-per-worker` (fractions share a GPU); without
GPUs (or with --cpu) the replicas share the cluster's CPUs. Ray pins each actor to its GPUs
by setting CUDA_VISIBLE_DEVICES, so a replica's "cuda" is its own device.
"""

from __future__ import annotations

from typing import Callable, Optional

from maskray.models.errors import MaskrayError, UsageError, first_line


def pool_size(spec) -> tuple[int, float, float]:
    """(workers, GPUs per worker, CPUs per worker) for the connected cluster.

    Workers default to the cluster's GPUs // --gpus-per-worker, or 1 without GPUs. On CPUs
    the workers share the cluster's cores; with GPUs each takes one core for decoding.
    """
    import ray

    resources = ray.cluster_resources()
    cluster_gpus = float(resources.get("GPU", 0))
    cluster_cpus = float(resources.get("CPU", 1))
    use_gpus = not spec.cpu and cluster_gpus > 0 and spec.gpus_per_worker > 0
    gpus_per_worker = float(spec.gpus_per_worker) if use_gpus else 0.0
    if spec.workers:
        workers = int(spec.workers)
    elif use_gpus:
        workers = max(1, int(cluster_gpus // gpus_per_worker))
    else:
        workers = 1
    if use_gpus and workers * gpus_per_worker > cluster_gpus + 1e-9:
        raise UsageError(
            f"--workers {workers} x --gpus-per-worker {gpus_per_worker:g} needs more GPUs than the"
            f" cluster has ({cluster_gpus:g})"
        )
    cpus_per_worker = 1.0 if use_gpus else max(1.0, cluster_cpus // workers)
    if cpus_per_worker * workers > cluster_cpus:
        cpus_per_worker = max(0.1, cluster_cpus / workers)
    return workers, gpus_per_worker, cpus_per_worker


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


class WorkerPool:
    """Worker actors; a dead one is replaced by a fresh one so the pool keeps its size.

    A replica takes shards once it has started (placed on a node, model loaded), each on its
    own: work begins with the first replica up instead of waiting for the slowest (a cluster
    still scaling up, a node busy elsewhere). After a node is lost its replacement may wait for
    resources that no longer exist; a shard handed to it would wait with it while the
    surviving actors sit idle. `on_started(placement)` is told of each replica that starts.
    """

    def __init__(self, spec, sink, size, gpus_per_worker, cpus_per_worker,
                 on_started: Optional[Callable[[dict], None]] = None, weights=None):
        import ray

        from maskray.pipeline.execution.worker import ShardWorker

        self.sink = sink  # the output the actors write to (the driver records commits there)
        options = dict(num_gpus=gpus_per_worker, num_cpus=cpus_per_worker, max_restarts=0)
        self._cls = ray.remote(ShardWorker).options(**options)
        # The weights' ObjectRef as a top-level argument: Ray hands each replica the bytes
        # (fetched to its node once), so no replica reads the weights' location itself.
        self._args = (predictor_config(spec, weights), sink, spec.batch_size, bool(spec.cpu), tracking_config(spec),
                      weights.ref if weights is not None else None)
        self._on_started = on_started or (lambda placement: None)
        self._idle: list = []
        self._all: list = []
        self._starting: dict = {}  # describe() ref -> actor not yet started
        self.placements: list[dict] = []  # of every replica started so far
        for _ in range(size):
            self._start_one()

    def _start_one(self) -> None:
        actor = self._cls.remote(*self._args)
        self._all.append(actor)
        self._starting[actor.describe.remote()] = actor

    def wait_first(self) -> dict:
        """Wait until one replica has started; its placement. A usage mistake met while
        loading (weights that cannot be found) is raised as itself: its line, exit code 2."""
        import ray

        while not self._idle:
            ray.wait(list(self._starting), num_returns=1)
            self._admit_started()
        return self.placements[0]

    def has_idle(self) -> bool:
        self._admit_started()
        return bool(self._idle)

    def take(self):
        return self._idle.pop(0)

    def give_back(self, actor) -> None:
        self._idle.append(actor)

    def replace(self, old) -> None:
        """Kill `old` (dead, or alive after a failed task) and start a fresh actor."""
        import ray

        try:
            ray.kill(old, no_restart=True)
        except Exception:  # already gone
            pass
        self._idle = [a for a in self._idle if a is not old]
        self._all = [a for a in self._all if a is not old]
        self._start_one()

    def _admit_started(self) -> None:
        import ray

        if not self._starting:
            return
        ready, _ = ray.wait(list(self._starting), num_returns=len(self._starting), timeout=0)
        for ref in ready:
            actor = self._starting.pop(ref)
            try:
                placement = ray.get(ref)
            except ray.exceptions.RayError as error:
                cause = original_error(error)
                if isinstance(cause, MaskrayError) and not self.placements:
                    raise cause from None  # the user's mistake, the same for every replica
                self._all = [a for a in self._all if a is not actor]  # it could not start: drop it
                if not self._all:
                    raise MaskrayError(f"no worker replica could be started: {error_line(cause or error)}") from None
                continue
            self.placements.append(placement)
            self._idle.append(actor)
            self._on_started(placement)

    def shutdown(self) -> None:
        import ray

        for actor in self._all:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass


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
