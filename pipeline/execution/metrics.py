"""A job's Prometheus metrics, through Ray's own metrics (`ray.util.metrics`).

The driver records them; Ray's metrics agent on the driver's node exports them with Ray's own
(`ray_maskray_*` on that node's `--metrics-export-port`, scraped by the Prometheus that
scrapes Ray, shown by the Ray dashboard and Grafana). Every series carries the job id.

- `maskray_frames` / `maskray_instances` / `maskray_errors`: counters of committed work;
- `maskray_shard_seconds`, `maskray_decode_wait_seconds`: histograms per committed shard;
- `maskray_queue_length`, `maskray_replicas` (by state): gauges;
- `maskray_preemptions` (drain notices for nodes with replicas), `maskray_requeued_shards`
  (put back from drained or lost nodes, not charged), `maskray_retries` (charged): counters.
"""

from __future__ import annotations

from collections import Counter as Tally

SHARD_SECONDS_BOUNDARIES = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800]
STATES = ("starting", "idle", "working", "draining")


class JobMetrics:
    def __init__(self, job_id: str):
        from ray.util import metrics

        tags = ("job_id",)
        self._tags = {"job_id": job_id}

        def counter(name, text):
            return metrics.Counter(name, description=text, tag_keys=tags)

        self.frames = counter("maskray_frames", "Frames committed (processed and written).")
        self.instances = counter("maskray_instances", "Instances committed.")
        self.errors = counter("maskray_errors", "Frames recorded as errors.")
        self.preemptions = counter("maskray_preemptions", "Drain notices (preemptions) for nodes running replicas.")
        self.retries = counter("maskray_retries", "Shard attempts retried after a failure (charged to the budget).")
        self.requeued = counter("maskray_requeued_shards", "Shards put back from drained or lost nodes (not charged).")
        self.shard_seconds = metrics.Histogram(
            "maskray_shard_seconds", description="Wall time of a committed shard on its replica.",
            boundaries=SHARD_SECONDS_BOUNDARIES, tag_keys=tags)
        self.decode_wait = metrics.Histogram(
            "maskray_decode_wait_seconds", description="Time a shard's inference waited for decoded frames.",
            boundaries=SHARD_SECONDS_BOUNDARIES, tag_keys=tags)
        self.queue = metrics.Gauge("maskray_queue_length", description="Shards waiting for a replica.",
                                   tag_keys=tags)
        self.replicas = metrics.Gauge("maskray_replicas", description="Worker replicas by state.",
                                      tag_keys=("job_id", "state"))

    def committed(self, record, shard_s: float) -> None:
        self.frames.inc(int(record.frames), tags=self._tags)
        if record.instances:
            self.instances.inc(int(record.instances), tags=self._tags)
        if record.errors:
            self.errors.inc(int(record.errors), tags=self._tags)
        self.shard_seconds.observe(max(0.0, float(shard_s)), tags=self._tags)
        wait = (record.timings or {}).get("decode_wait_s")
        if wait is not None:
            self.decode_wait.observe(max(0.0, float(wait)), tags=self._tags)

    def requeued_shard(self) -> None:
        self.requeued.inc(1, tags=self._tags)

    def preempted(self) -> None:
        self.preemptions.inc(1, tags=self._tags)

    def retried(self) -> None:
        self.retries.inc(1, tags=self._tags)

    def pool(self, queue_length: int, replicas) -> None:
        self.queue.set(queue_length, tags=self._tags)
        states = Tally(replica.state for replica in replicas)
        for state in STATES:
            self.replicas.set(states.get(state, 0), tags={**self._tags, "state": state})
