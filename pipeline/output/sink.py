"""The output folder: atomic Parquet parts per shard, commit records, job files.

Layout (DESIGN.md, "Output contract"):
    OUT/_job.json                  spec, job id, model, weights id, version (no secrets)
    OUT/instances/<shard>.parquet  zstd, metadata maskray.job_id / maskray.model / maskray.weights_id
    OUT/frames/<shard>.parquet
    OUT/_commits/<shard>.json      written last: a shard counts as done only once this exists
    OUT/_SUCCESS                   every shard committed
    OUT/_driver.json               the driver's state and heartbeat (for `maskray status`)

Every file is written whole through `storage.write_bytes_atomic` (local temp + rename, one
PUT on object stores), so a reader sees a part entirely or not at all, and a retried shard
simply rewrites the same names.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from maskray.pipeline import storage
from maskray.pipeline.output.layout import (
    COMMITS, DRIVER_FILE, JOB_FILE, SUCCESS_FILE, TRACKS_DIR, commit_uri, part_uri,
)
from maskray.pipeline.output.schema import FRAMES_SCHEMA, INSTANCES_SCHEMA

TABLES = {"instances": INSTANCES_SCHEMA, "frames": FRAMES_SCHEMA}
# Rows buffered before a row group is written, so a long shard does not sit in Arrow form.
ROW_GROUP_ROWS = 20_000


class ShardWriter:
    """Collects one shard's record batches as compressed Parquet in memory, then commits.

    `add()` as batches come; `commit()` writes both parts, then the commit record, and
    returns that record. Nothing is visible to readers before the commit record exists.
    """

    def __init__(self, output: str, shard_id: str, metadata: dict[str, str]):
        self.output = output
        self.shard_id = shard_id
        meta = {key: str(value) for key, value in metadata.items()}
        meta["maskray.shard"] = shard_id
        self._buffers: dict[str, pa.BufferOutputStream] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._pending: dict[str, list[pa.RecordBatch]] = {}
        self._pending_rows: dict[str, int] = {}
        self.rows: dict[str, int] = {}
        for table, schema in TABLES.items():
            schema = schema.with_metadata(meta)
            self._buffers[table] = pa.BufferOutputStream()
            self._writers[table] = pq.ParquetWriter(self._buffers[table], schema, compression="zstd")
            self._pending[table] = []
            self._pending_rows[table] = 0
            self.rows[table] = 0

    def add(self, instances: pa.RecordBatch, frames: pa.RecordBatch) -> None:
        for table, batch in (("instances", instances), ("frames", frames)):
            if batch.num_rows:
                self._pending[table].append(batch)
                self._pending_rows[table] += batch.num_rows  # a running count: no re-summing
                self.rows[table] += batch.num_rows
                if self._pending_rows[table] >= ROW_GROUP_ROWS:
                    self._flush(table)

    def _flush(self, table: str) -> None:
        if self._pending[table]:
            schema = self._writers[table].schema
            self._writers[table].write_table(pa.Table.from_batches(self._pending[table], schema=schema))
            self._pending[table] = []
            self._pending_rows[table] = 0

    def commit(self, record: dict) -> dict:
        """Write the parts, then `_commits/<shard>.json` with `record` plus files and row counts."""
        started = time.time()
        files = {}
        for table in TABLES:
            self._flush(table)
            self._writers[table].close()
            data = self._buffers[table].getvalue().to_pybytes()
            uri = part_uri(self.output, table, self.shard_id)
            storage.write_bytes_atomic(uri, data)
            files[table] = {"path": f"{table}/{self.shard_id}.parquet", "bytes": len(data)}
        record = dict(record)
        record.update(
            shard=self.shard_id,
            files=files,
            rows={table: self.rows[table] for table in TABLES},
            committed_at=time.time(),
        )
        record.setdefault("timings", {})["write_s"] = round(time.time() - started, 3)
        storage.write_bytes_atomic(commit_uri(self.output, self.shard_id), _dumps(record))
        return record


# ---- job-level files ----------------------------------------------------------------------

def read_json(uri: str) -> Optional[dict]:
    """A JSON file's content, or None when it does not exist."""
    try:
        return json.loads(storage.read_bytes(uri))
    except (FileNotFoundError, OSError) as error:
        if storage.exists(uri):
            raise error
        return None


def read_job(output: str) -> Optional[dict]:
    return read_json(storage.join(output, JOB_FILE))


def write_job(output: str, manifest: dict) -> None:
    storage.write_bytes_atomic(storage.join(output, JOB_FILE), _dumps(manifest))


def write_driver_state(output: str, state: dict) -> None:
    storage.write_bytes_atomic(storage.join(output, DRIVER_FILE), _dumps(state))


def read_driver_state(output: str) -> Optional[dict]:
    return read_json(storage.join(output, DRIVER_FILE))


def write_success(output: str, summary: dict) -> None:
    storage.write_bytes_atomic(storage.join(output, SUCCESS_FILE), _dumps(summary))


def has_success(output: str) -> bool:
    return storage.exists(storage.join(output, SUCCESS_FILE))


def read_commits(output: str) -> dict[str, dict]:
    """`{shard id: commit record}` of every committed shard (reads in parallel on object stores)."""
    try:
        found = storage.list_files(storage.join(output, COMMITS))
    except FileNotFoundError:
        return {}
    uris = [uri for uri, _ in found if uri.endswith(".json") and not uri.rsplit("/", 1)[-1].startswith(".")]
    workers = 1 if storage.is_local(output) else 16
    with ThreadPoolExecutor(max_workers=workers) as pool:
        records = list(pool.map(lambda uri: json.loads(storage.read_bytes(uri)), uris))
    return {record["shard"]: record for record in records}


def clear_output(output: str) -> None:
    """Remove a previous job's files (for `--overwrite`): commits first, so no reader sees
    a commit whose parts are gone."""
    filesystem, path = storage.resolve(output)
    for folder in (COMMITS, "instances", "frames", TRACKS_DIR):
        target = path.rstrip("/") + "/" + folder
        if filesystem.get_file_info(target).type == pafs.FileType.Directory:
            filesystem.delete_dir_contents(target, missing_dir_ok=True)
    for name in (SUCCESS_FILE, DRIVER_FILE, JOB_FILE):
        _delete_file(storage.join(output, name))


def uncommit(output: str, shard_id: str) -> None:
    """Withdraw a shard: its commit record first (readers stop seeing it), then its parts."""
    for uri in [commit_uri(output, shard_id)] + [part_uri(output, t, shard_id) for t in TABLES]:
        _delete_file(uri)


def remove_success(output: str) -> None:
    _delete_file(storage.join(output, SUCCESS_FILE))


def _delete_file(uri: str) -> None:
    filesystem, path = storage.resolve(uri)
    if filesystem.get_file_info(path).type == pafs.FileType.File:
        filesystem.delete_file(path)


def _dumps(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()
