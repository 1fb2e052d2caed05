"""Planning as cluster work: each video's indexing and cutting is a small Ray task.

The driver reads no media bytes: a task on the cluster reads the container's own index with
ranged reads (or demuxes, for containers without one), writes the compact index to
`OUT/_index/` and returns only the video's shard descriptions; GIF/TIFF files are counted
by tasks too. A resume, or a second job over the same sources, finds the cached indexes.

The tasks ask for no CPU: they mostly wait on storage, and CPU workers take the cluster's
cores, so tasks that needed a core could wait for the job to end while the job waits for
them. `max_in_flight` bounds how many run at once instead. They spread over the nodes.
While the worker replicas start, fewer run (one per 8 cores, at least one): a task may need
a fresh Ray worker process, and on a small machine those processes slow the replicas' own
start (2 cores, 1x scale benchmark: first replica up 13.4 s after submit, not 19 s).

A task that crashes (a decoder fault kills its process) makes its video an error shard
like any unreadable video (`plan_stream.py`): no single input fails the job.
"""

from __future__ import annotations

PLAN_TASK_CPUS = 0
MAX_IN_FLIGHT = 256  # the most planning tasks at once, whatever the cluster
TASKS_PER_CPU = 2    # on a small cluster: a few per core (their time is mostly IO waits)
CPUS_PER_TASK_AT_START = 8  # while the replicas start: one task per this many cores


class ClusterRunner:
    """`plan_stream.Runner` on Ray tasks (Ray must be initialised)."""

    def __init__(self):
        import ray

        cpus = float(ray.cluster_resources().get("CPU", 1))
        self._full_in_flight = int(min(MAX_IN_FLIGHT, max(4, TASKS_PER_CPU * cpus)))
        self.max_in_flight = int(min(self._full_in_flight, max(1, cpus // CPUS_PER_TASK_AT_START)))
        self._tasks: dict = {}

    def replicas_started(self) -> None:
        """A worker replica is up: planning may use its full share of the cluster now."""
        self.max_in_flight = self._full_in_flight

    def submit(self, function, *args):
        task = self._tasks.get(function)
        if task is None:
            import ray

            task = ray.remote(num_cpus=PLAN_TASK_CPUS, max_retries=2, scheduling_strategy="SPREAD")(function)
            self._tasks[function] = task
        return task.remote(*args)

    def wait(self, handles: list, timeout: float) -> list:
        import ray

        ready, rest = ray.wait(handles, num_returns=1, timeout=timeout)
        if ready and rest:  # and whatever else is ready by now
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        return ready

    def result(self, handle):
        import ray

        return ray.get(handle)
