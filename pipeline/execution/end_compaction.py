"""Compaction when a job ends: `submit`'s default (`--no-compact` keeps the parts as committed).

A job writes two small parts per shard, and a query of a job left so opens every one of them
(on S3 a GET or two each). Merged at the end, a finished job is read in a handful of requests
whatever its shard count. The merge is `maskray compact`'s (pipeline/output/compaction.py),
with its guarantees: readers see the parts or the merged files, never a mix; only files a
manifest named are deleted (never `tracks/`, `_index/` or anything maskray did not write); a
crash is finished by the next `compact` or the same `submit`. It runs under the driver's own
lease, still renewed by its heartbeat, so no other writer gets in between the job's end and
the merge. `_SUCCESS` is written before it: the job's results are complete either way, and a
compaction that fails is one line, never a failed job.
"""

from __future__ import annotations

import time
from typing import Callable

from maskray.errors import first_line
from maskray.pipeline.output.compaction import compact


def compact_finished_job(output: str, lease, log: Callable[[str], None]) -> None:
    """Merge the finished job's parts in `output` under the driver's `lease`; `log` gets one line."""
    started = time.monotonic()
    try:
        done = compact(output, held=lease)
    except Exception as error:  # noqa: BLE001 - the job is done; an unmerged OUT is still whole
        log(f"parts left as committed (compaction failed: {first_line(error)}); "
            f"`maskray compact {output}` merges them")
        return
    seconds = time.monotonic() - started
    if done.merged_files:
        log(f"compacted {done.shards} shards: {done.parts_before} files -> {done.parts_after} in {seconds:.1f}s")
