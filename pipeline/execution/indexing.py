"""Video indexing as cluster work: one small Ray task per video, each index cached in OUT.

The driver reads no media bytes: a task on the cluster reads the container's own index
with ranged reads (or demuxes, for containers without one) and writes the compact index to
`OUT/_index/`; the driver receives the compact arrays (8 bytes a frame). A resume, or a
planning pass before Ray is started, finds the cache and reads a few KB per video.

A video that crashes its task (a decoder fault kills the worker process) becomes an error
shard like any unreadable video: no single input fails the job.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from maskray.pipeline.execution.cluster_watch import ClusterWatch
from maskray.pipeline.inputs.listing import MediaFile
from maskray.pipeline.inputs.shards import INDEX_THREADS, VideoIndexer, index_or_error

INDEX_TASK_CPUS = 0.25  # mostly waiting on storage; several run beside each other per core
MAX_IN_FLIGHT = 256     # tasks submitted at once: bounded so a huge listing does not flood Ray


def video_indexer(output: Optional[str]) -> VideoIndexer:
    """Cluster tasks when Ray is up; else threads here, reading (and filling) the cache."""
    import ray

    if ray.is_initialized():
        return lambda videos: index_on_cluster(videos, output)
    return lambda videos: _index_here(videos, output)


def index_on_cluster(videos: list[MediaFile], output: Optional[str]) -> list:
    import ray

    if not videos:
        return []
    task = ray.remote(num_cpus=INDEX_TASK_CPUS, max_retries=2)(index_or_error)
    watch = ClusterWatch()
    try:
        return _collect(task, videos, output, watch)
    finally:
        watch.stop()


def _collect(task, videos: list[MediaFile], output: Optional[str], watch: ClusterWatch) -> list:
    import ray

    results: list = [None] * len(videos)
    in_flight: dict = {}
    submitted = 0
    while submitted < len(videos) or in_flight:
        while submitted < len(videos) and len(in_flight) < MAX_IN_FLIGHT:
            in_flight[task.remote(videos[submitted].uri, output)] = submitted
            submitted += 1
        done, _ = ray.wait(list(in_flight), num_returns=min(len(in_flight), 64), timeout=1.0)
        for ref in done:
            position = in_flight.pop(ref)
            try:
                results[position] = ray.get(ref)
            except ray.exceptions.RayError as error:
                results[position] = f"cannot index video: {_first_line(error)}"
        watch.raise_if_lost()
    return results


def _index_here(videos: list[MediaFile], output: Optional[str]) -> list:
    uris = [item.uri for item in videos]
    if len(uris) <= 1:
        return [index_or_error(uri, output) for uri in uris]
    with ThreadPoolExecutor(max_workers=min(INDEX_THREADS, len(uris))) as pool:
        return list(pool.map(lambda uri: index_or_error(uri, output), uris))


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:200]
