"""`maskray compact OUT`: merge a finished job's small parts into larger Parquet files.

A job writes two small parts per shard; at 10^5 shards a query opens 2 x 10^5 files. Compaction
rewrites them, per table and in shard order, into files of about `target_bytes` each, and
switches readers over in one step:

1. take OUT's lease (a running or resuming `submit` holds it: refused) and check the job
   finished (`_SUCCESS` of the job in `_job.json`); finish an earlier compaction's clean-up;
2. write the merged files under names of the next manifest generation (readers never look
   at them: no manifest names them yet);
3. publish that manifest, in which every record names its merged file (the switch: one
   atomic write of `_manifest.json`); readers see the old parts or the new ones, never both;
4. delete the parts the previous manifest named and the new one does not, then that
   manifest.

A crash before 3 leaves the old view whole (the half-done files are rewritten by the next
run, under the same names); a crash after 3 leaves only old files, which the next run deletes
in its step 1. Only files a manifest named are deleted. The commit records of merged shards
name the merged file and how many shards it holds, so a shard withdrawn later (a resume
whose sources changed) is filtered out of it by readers (commit_log.Committed.part_paths).
"""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from maskray.errors import UsageError, first_line
from maskray.pipeline import storage
from maskray.pipeline.output import commit_log, layout, sink
from maskray.pipeline.output.layout import TABLE_NAMES
from maskray.pipeline.output.lease import Lease
from maskray.pipeline.output.commit_log_writer import CommitLogWriter, delete_file

TARGET_BYTES = 128 * 2**20
ROW_GROUP_ROWS = 65_536
IN_FLIGHT = 16  # part reads and deletes at once
LEASE_TTL_S = 120.0  # as a driver's: compaction of a large job takes minutes, not hours


@dataclass
class Compaction:
    output: str
    parts_before: int  # distinct part files the job's tables were read from
    parts_after: int
    merged_files: int  # files written
    shards: int
    generation: int  # the manifest readers use now


def compact(output: str, target_bytes: int = TARGET_BYTES, held: Optional[Lease] = None) -> Compaction:
    """Merge the committed parts of the finished job in `output`; UsageError (one line) if
    there is no job, it is still running, or it has not finished.

    held: OUT's lease when the caller holds it already (a driver at the end of its job: no
    other writer gets in between); compaction then neither takes nor gives back a lease."""
    job = sink.require_job(output)
    try:
        lease = held or Lease(output, LEASE_TTL_S, command="compact").acquire()
    except OSError as error:
        raise UsageError(f"cannot write to output {output}: {first_line(error)}") from None
    try:
        success = sink.read_success(output)
        if success is None or success.get("job_id", job["job_id"]) != job["job_id"]:
            raise UsageError(f"job {job['job_id']} in {output} has not finished: run the same"
                             " `maskray submit` to finish it, then compact")
        pointer = _complete_log(output, job["job_id"])
        finish_cleanup(output, pointer)
        table = commit_log.read_manifest(output, pointer["manifest"])
        before = _distinct_parts(table)
        generation = int(pointer["generation"]) + 1
        merged = 0
        for name in TABLE_NAMES:
            for index, group in enumerate(_plan(table, name, target_bytes)):
                table = _merge(output, table, name, group, layout.compacted_part_name(name, generation, index))
                merged += 1
        if not merged:
            return Compaction(output, before, before, 0, table.num_rows, int(pointer["generation"]))
        pointer = commit_log.publish(output, job["job_id"], generation, table, complete=True,
                                     previous=pointer["manifest"])
        finish_cleanup(output, pointer)
        return Compaction(output, before, _distinct_parts(table), merged, table.num_rows, generation)
    finally:
        if held is None:
            lease.release()


def finish_cleanup(output: str, pointer: dict) -> None:
    """Delete the parts the previous manifest named that the current one does not, then the
    previous manifest (only for a complete log: then no `_commits/` file names a part)."""
    previous = pointer.get("previous")
    if not previous or not pointer.get("complete"):
        return
    try:
        old = commit_log.read_manifest(output, previous)
    except FileNotFoundError:
        return
    current = commit_log.read_manifest(output, pointer["manifest"])
    gone = [layout.relative_uri(output, path) for path in sorted(_paths(old) - _paths(current))]
    with ThreadPoolExecutor(IN_FLIGHT) as pool:  # on S3 a request each: in parallel
        list(pool.map(delete_file, gone))
    delete_file(layout.relative_uri(output, previous))


def _complete_log(output: str, job_id: str) -> dict:
    """The pointer of the job's complete log; an output finished before manifests existed
    (records in `_commits/` only) is folded into one first."""
    pointer = commit_log.read_pointer(output)
    if pointer is not None and pointer.get("job_id") == job_id and pointer.get("complete"):
        return pointer
    log = CommitLogWriter(output, job_id).open()
    log.load(commit_log.read_committed(output, job_id))
    return log.publish(complete=True)


def _paths(table: pa.Table) -> set[str]:
    return {p for name in TABLE_NAMES for p in table[f"{name}_path"].to_pylist() if p}


def _distinct_parts(table: pa.Table) -> int:
    return len(_paths(table))


def _write_committed(writer: pq.ParquetWriter, parts: list[pa.Table], shards: pa.Array) -> int:
    """Write the rows of `parts` whose shard is one of `shards` (a merged part may hold rows of
    shards withdrawn since); returns how many."""
    rows = pa.concat_tables(parts)
    rows = rows.filter(pc.is_in(rows["shard"], value_set=shards))
    writer.write_table(rows, row_group_size=ROW_GROUP_ROWS)
    return rows.num_rows


def _plan(table: pa.Table, name: str, target_bytes: int) -> list[list[str]]:
    """Groups of part paths (in shard order) of about `target_bytes` each; a part as large as
    the target, or a group of one, stays as it is (unless it holds rows no longer committed)."""
    sizes: dict[str, int] = {}
    naming: dict[str, int] = {}
    declared: dict[str, int] = {}
    columns = (table[f"{name}_path"].to_pylist(), table[f"{name}_bytes"].to_pylist(), table[f"{name}_shards"].to_pylist())
    for path, size, shards in zip(*columns):
        if path:
            sizes.setdefault(path, int(size or 0))
            naming[path] = naming.get(path, 0) + 1
            declared[path] = int(shards or 1)
    # A merged file that still holds rows of shards withdrawn since is rewritten even alone.
    stale = {path for path in sizes if naming[path] < declared[path]}
    groups, current, total = [], [], 0
    for path in sorted(sizes):
        if sizes[path] >= target_bytes:
            if path in stale:
                groups.append([path])
            continue
        if current and total + sizes[path] > target_bytes:
            groups.append(current)
            current, total = [], 0
        current.append(path)
        total += sizes[path]
    groups.append(current)
    return [group for group in groups if len(group) > 1 or (group and group[0] in stale)]


def _read_ahead(uris: list[str]) -> Iterator[pa.Table]:
    """The parts at `uris`, in order, up to IN_FLIGHT read and parsed ahead in threads (on S3 a
    GET each: thousands read one after another would take most of a large job's compaction)."""
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        pending: deque = deque()
        for uri in uris:
            pending.append(pool.submit(_read_part, uri))
            if len(pending) >= IN_FLIGHT:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _read_part(uri: str) -> pa.Table:
    # ParquetFile rather than pq.read_table, which builds a dataset per file: half the time.
    return pq.ParquetFile(pa.BufferReader(storage.read_bytes(uri))).read()


def _merge(output: str, table: pa.Table, name: str, group: list[str], merged_name: str) -> pa.Table:
    """Write the rows of `group`'s parts that belong to their committed shards into one file;
    returns the manifest table with those shards' records naming it."""
    column = table[f"{name}_path"]
    naming = pc.is_in(column, value_set=pa.array(group, pa.string()))
    shards = table.filter(naming)["shard"]
    buffer = pa.BufferOutputStream()
    writer, pending, pending_rows, rows = None, [], 0, 0
    for part in _read_ahead([layout.relative_uri(output, path) for path in group]):
        if writer is None:
            metadata = {k: v for k, v in (part.schema.metadata or {}).items() if k != b"maskray.shard"}
            writer = pq.ParquetWriter(buffer, part.schema.with_metadata(metadata), compression="zstd")
        pending.append(part.cast(writer.schema))
        pending_rows += part.num_rows
        if pending_rows >= ROW_GROUP_ROWS:
            rows += _write_committed(writer, pending, shards)
            pending, pending_rows = [], 0
    if pending:
        rows += _write_committed(writer, pending, shards)
    writer.close()
    data = buffer.getvalue().to_pybytes()
    storage.write_bytes_atomic(layout.relative_uri(output, merged_name), data)
    count = len(shards)
    replace = {
        f"{name}_path": pc.if_else(naming, merged_name, column),
        f"{name}_bytes": pc.if_else(naming, pa.scalar(len(data), pa.int64()), table[f"{name}_bytes"]),
        f"{name}_shards": pc.if_else(naming, pa.scalar(count, pa.int64()), table[f"{name}_shards"]),
        f"{name}_rows": pc.if_else(naming, pa.scalar(rows, pa.int64()), table[f"{name}_rows"]),
        f"{name}_sha256": pc.if_else(naming, pa.scalar(hashlib.sha256(data).hexdigest(), pa.string()),
                                     table[f"{name}_sha256"]),
    }
    for field, values in replace.items():
        table = table.set_column(table.schema.get_field_index(field), field, values)
    return table
