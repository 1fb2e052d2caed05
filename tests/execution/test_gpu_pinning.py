"""One model replica per GPU: actors land on distinct GPU ids (declared GPUs on a CPU machine,
so the replicas themselves still run on the CPU)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("ray")  # worker_pool imports Ray itself
pytestmark = pytest.mark.ray  # a real local Ray with declared GPUs

from maskray.jobs.launch import run_job  # noqa: E402
from maskray.jobs.spec import JobSpec  # noqa: E402
from maskray.errors import UsageError  # noqa: E402
from maskray.pipeline.execution.pool_sizing import pool_size  # noqa: E402
from submit_helpers import commits, frame_keys, local_ray, read_table, small_spec  # noqa: E402


@pytest.fixture(scope="module")
def two_gpu_ray():
    with local_ray(num_gpus=2) as ray:
        yield ray


def test_two_workers_are_pinned_to_two_distinct_gpus(two_gpu_ray, data_dir, tmp_path):
    output = tmp_path / "out"
    # bikes cut at >= 2 s gives 4 shards; with 2 idle workers each gets one at once.
    spec = small_spec([data_dir / "videos" / "bikes.mp4"], output, every=50, segment_seconds=2.0,
                      gpus_per_worker=1.0)
    assert run_job(spec) == 0  # --workers defaults to the cluster's 2 GPUs / 1 per worker

    workers = {}
    for record in commits(str(output)).values():
        worker = record["worker"]
        workers.setdefault(worker["pid"], set()).add(tuple(worker["gpu_ids"]))
        assert worker["cuda_visible_devices"] == ",".join(worker["gpu_ids"])
        if not torch.cuda.is_available():  # declared GPUs only: the replica runs on the CPU
            assert worker["device"] == "cpu"
    assert len(workers) == 2
    gpu_of = [ids for ids in workers.values()]
    assert all(len(ids) == 1 and len(next(iter(ids))) == 1 for ids in gpu_of)
    assert {next(iter(ids))[0] for ids in gpu_of} == {"0", "1"}
    keys = frame_keys(read_table(str(output), "frames"))
    assert sorted(f for _, f in keys) == [0, 50, 100, 150, 200] and set(keys.values()) == {1}


def test_pool_size_follows_the_cluster_gpus(two_gpu_ray):
    def sizes(**changes):
        return pool_size(JobSpec(sources=["x"], output="y", **changes))

    assert sizes()[:2] == (2, 1.0)  # one replica per GPU
    assert sizes(gpus_per_worker=0.5)[:2] == (4, 0.5)  # fractions share a GPU
    assert sizes(cpu=True)[:2] == (1, 0.0)  # --cpu: no GPUs asked for
    with pytest.raises(UsageError, match="more GPUs"):
        sizes(workers=3, gpus_per_worker=1.0)
