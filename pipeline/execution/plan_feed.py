"""Between planning and dispatch: planned shards become tasks, unless already committed.

The driver's loop takes tasks from the feed while workers run, so the first shards run
before planning ends. For each shard as it is planned, the commits an earlier run left for
it decide: fully committed shards are skipped (a resume); commits that cannot stand are
withdrawn with their parts (pieces that do not tile it, or transient errors, which are
retried now). Commits naming shards outside the plan (the sources changed, so groups moved)
can only be told once the plan is complete: they are withdrawn then. At that moment the
totals (shards, frames) go into `_job.json`, with `planned_at`, for `maskray status`.
"""

from __future__ import annotations

import time
from collections import defaultdict

from maskray.pipeline.execution.tasks import ShardTask, planned_task
from maskray.pipeline.output.layout import covered_shards
from maskray.pipeline.output.sink import OutputSink


class PlanFeed:
    def __init__(self, stream, sink, job_record: dict, committed: dict, progress, started: float):
        """`stream`: a `ShardStream` (or anything with `poll(timeout)` and `done`);
        `committed`: this job's commit records, kept current (withdrawn ones leave it)."""
        self.stream, self.sink, self.job_record = stream, sink, job_record
        self.committed, self.progress, self.started = committed, progress, started
        self.planned: list = []  # every shard planned so far: small descriptions only
        self.complete = False
        self.resumed = 0  # planned shards an earlier run committed
        self._earlier: dict[str, list] = defaultdict(list)  # planned id -> an earlier run's commits
        for record in committed.values():
            self._earlier[record.planned].append(record)

    @property
    def done(self) -> bool:
        return self.complete

    def take(self, timeout: float = 0.0) -> list[ShardTask]:
        """Tasks for the shards planned since the last call (waits up to `timeout` for some)."""
        tasks = []
        for shard in self.stream.poll(timeout) if not self.complete else []:
            self.planned.append(shard)
            if not self._already_done(shard.id):
                tasks.append(planned_task(shard))
        if not self.complete and self.stream.done:
            self._finish()
        return tasks

    def _already_done(self, shard_id: str) -> bool:
        records = self._earlier.pop(shard_id, [])
        if not records:
            return False
        if shard_id in covered_shards(records) and not any(r.transient_errors for r in records):
            self.progress.resumed(sum(int(r.frames) for r in records))
            self.resumed += 1
            return True
        self._withdraw(records)
        return False

    def _finish(self) -> None:
        self.complete = True
        for records in self._earlier.values():  # commits of shards this plan does not have
            self._withdraw(records)
        self._earlier.clear()
        frames = sum(s.expected_frames for s in self.planned)
        self.job_record.update(shards=len(self.planned), frames=frames, planned_at=time.time())
        self.sink.write_job_record(self.job_record)
        self.progress.set_totals(frames, len(self.planned))
        self.progress.log(f"planned {len(self.planned)} shards ({frames} frames) in"
                          f" {time.time() - self.started:.1f}s")
        if self.resumed:
            self.progress.log(f"resuming: {self.resumed}/{len(self.planned)} shards already committed")

    def _withdraw(self, records: list) -> None:
        for record in records:
            self.sink.withdraw(record)
            self.committed.pop(record.shard, None)


def committed_in_plan(sink: OutputSink, planned: set) -> dict:
    """This job's commit records that cover the shards of a complete plan.

    Withdrawn with their parts (so their frames are redone, never counted twice): commits
    outside the plan (the sources changed, so image groups moved), pieces that do not tile
    their shard (a bisection cut short), and shards with transient errors (retried now).
    """
    committed = sink.committed(repair=True)
    covered = covered_shards(committed.values())
    transient = {r.planned for r in committed.values() if r.transient_errors}
    for record in list(committed.values()):
        if record.planned not in planned or record.planned not in covered or record.planned in transient:
            sink.withdraw(record)
            del committed[record.shard]
    return committed


class CompletePlan:
    """A plan already made in full, fed like a stream."""

    def __init__(self, shards: list):
        self._shards, self.done = list(shards), False

    def poll(self, timeout: float = 0.0) -> list:
        self.done = True
        shards, self._shards = self._shards, []
        return shards
