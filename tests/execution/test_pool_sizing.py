"""How many replicas a pool that follows the cluster wants per node (no Ray started)."""

from __future__ import annotations

import pytest

from maskray.jobs.spec import JobSpec
from maskray.errors import UsageError
from maskray.pipeline.execution.pool_sizing import FollowCluster, NodeShare

GPU_NODE = {"CPU": 8.0, "GPU": 2.0}
CPU_NODE = {"CPU": 4.0}


def test_gpu_nodes_get_a_replica_per_gpu_share_and_cpu_nodes_none():
    follow = FollowCluster(use_gpus=True, gpus_per_worker=0.5)
    shares = follow.shares({"a": GPU_NODE, "b": CPU_NODE})
    assert shares == {"a": NodeShare(4, 0.5, 1.0)}
    assert follow.bundle({}) == {"GPU": 0.5, "CPU": 1}


def test_cpu_clusters_get_one_replica_per_node_with_all_its_cores():
    follow = FollowCluster(use_gpus=False, gpus_per_worker=0.0)
    shares = follow.shares({"a": CPU_NODE, "b": {"CPU": 2.0}, "head": {"CPU": 0.0}})
    assert shares == {"a": NodeShare(1, 0.0, 4.0), "b": NodeShare(1, 0.0, 2.0)}
    assert follow.total({"a": CPU_NODE, "b": CPU_NODE}) == 2


def test_draining_nodes_get_none_and_max_workers_caps_the_total():
    follow = FollowCluster(use_gpus=True, gpus_per_worker=1.0, max_workers=3)
    nodes = {"a": GPU_NODE, "b": GPU_NODE, "c": GPU_NODE}
    assert set(follow.shares(nodes, draining={"b": None})) == {"a", "c"}
    assert follow.total(nodes) == 3 and follow.total(nodes, draining={"a": 0, "b": 0}) == 2


def test_max_workers_is_checked_and_excludes_workers():
    with pytest.raises(UsageError, match="--max-workers must be a positive integer"):
        JobSpec(sources=["x"], output="y", max_workers=0).validate(check_local_device=False)
    with pytest.raises(UsageError, match="choose one of --workers"):
        JobSpec(sources=["x"], output="y", workers=2, max_workers=4).validate(check_local_device=False)
    JobSpec(sources=["x"], output="y", max_workers=4).validate(check_local_device=False)
