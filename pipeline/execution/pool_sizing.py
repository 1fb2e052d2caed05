"""How many replicas a job runs, and where: a fixed `--workers N`, or following the cluster.

Without `--workers` the pool follows the cluster's nodes: on GPUs, each node gets one replica
per `--gpus-per-worker` of its GPUs (and a core each for decoding); on CPUs (no GPUs, or
`--cpu`), one replica per node with all of that node's cores. `--max-workers N` caps the total.
Nodes being drained get none: they are about to go.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from maskray.errors import UsageError


@dataclass(frozen=True)
class NodeShare:
    replicas: int
    gpus: float  # per replica
    cpus: float  # per replica


@dataclass(frozen=True)
class FollowCluster:
    """The elastic sizing: replicas per node, from the nodes' own resources."""

    use_gpus: bool
    gpus_per_worker: float
    max_workers: Optional[int] = None

    def shares(self, nodes: dict[str, dict], draining=()) -> dict[str, NodeShare]:
        """`{node id: NodeShare}` for the alive nodes not being drained (uncapped)."""
        found = {}
        for node_id in sorted(nodes):
            if node_id in draining:
                continue
            resources = nodes[node_id]
            cpus = float(resources.get("CPU", 0))
            if self.use_gpus:
                count = int(float(resources.get("GPU", 0)) / self.gpus_per_worker + 1e-9)
                if count:
                    # A core each for decoding where the node has them; GPU nodes with no
                    # CPUs declared still run their replicas.
                    found[node_id] = NodeShare(count, self.gpus_per_worker, min(1.0, cpus / count))
            elif cpus >= 1:
                found[node_id] = NodeShare(1, 0.0, cpus)
        return found

    def total(self, nodes: dict[str, dict], draining=()) -> int:
        count = sum(share.replicas for share in self.shares(nodes, draining).values())
        return min(count, self.max_workers) if self.max_workers else count

    def bundle(self, nodes: dict[str, dict]) -> dict:
        """One replica's resources, as asked of the autoscaler."""
        if self.use_gpus:
            return {"GPU": self.gpus_per_worker, "CPU": 1}
        return {"CPU": 1}


def uses_gpus(spec, cluster_gpus: float) -> bool:
    return not spec.cpu and cluster_gpus > 0 and spec.gpus_per_worker > 0


def pool_size(spec) -> tuple[int, float, float]:
    """(workers, GPUs per worker, CPUs per worker) for the connected cluster, now.

    `--workers N`: N replicas sharing the cluster's cores (each one core with GPUs). Without
    it, what `FollowCluster` gives the cluster as it is now (the pool then follows it).
    """
    import ray

    resources = ray.cluster_resources()
    cluster_gpus = float(resources.get("GPU", 0))
    cluster_cpus = float(resources.get("CPU", 1))
    use_gpus = uses_gpus(spec, cluster_gpus)
    gpus_per_worker = float(spec.gpus_per_worker) if use_gpus else 0.0
    if spec.workers:
        workers = int(spec.workers)
    else:
        workers = max(1, following(spec, use_gpus).total(alive_nodes()))
    if use_gpus and workers * gpus_per_worker > cluster_gpus + 1e-9:
        raise UsageError(
            f"--workers {workers} x --gpus-per-worker {gpus_per_worker:g} needs more GPUs than the"
            f" cluster has ({cluster_gpus:g})"
        )
    cpus_per_worker = 1.0 if use_gpus else max(1.0, cluster_cpus // workers)
    if cpus_per_worker * workers > cluster_cpus:
        cpus_per_worker = max(0.1, cluster_cpus / workers)
    return workers, gpus_per_worker, cpus_per_worker


def following(spec, use_gpus: bool) -> FollowCluster:
    gpus = float(spec.gpus_per_worker) if use_gpus else 0.0
    return FollowCluster(use_gpus, gpus, getattr(spec, "max_workers", None))


def alive_nodes() -> dict[str, dict]:
    """`{node id: total resources}` of the cluster's alive nodes, asked now."""
    import ray

    return {node["NodeID"]: dict(node.get("Resources") or {}) for node in ray.nodes() if node.get("Alive", True)}
