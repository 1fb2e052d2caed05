"""One shard's parts: record batches collected as compressed Parquet, then committed.

The writer names its parts for its attempt (`layout.part_name`), writes them whole, and hands
the commit record to its `OutputSink`, which checks that OUT still belongs to the job first.
"""

from __future__ import annotations

import hashlib
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from maskray.pipeline import storage
from maskray.pipeline.output import layout
from maskray.pipeline.output.layout import CommitRecord
from maskray.pipeline.output.schema import FRAMES_SCHEMA, INSTANCES_SCHEMA

TABLES = {"instances": INSTANCES_SCHEMA, "frames": FRAMES_SCHEMA}
# Rows buffered before a row group is written, so a long shard does not sit in Arrow form.
ROW_GROUP_ROWS = 20_000


class ShardWriter:
    """Collects one shard's record batches as compressed Parquet in memory, then commits.

    `add()` as batches come; `commit(**fields)` writes both parts, then the commit record, and
    returns it. Nothing is visible to readers before the commit record exists.
    """

    def __init__(self, sink, shard_id: str, attempt: int, metadata: dict,
                 instances_schema: pa.Schema = INSTANCES_SCHEMA):
        self.sink = sink
        self.shard_id = shard_id
        self.attempt = attempt
        self.token = f"a{attempt}-{uuid.uuid4().hex[:8]}"
        meta = {key: str(value) for key, value in metadata.items()}
        meta.update({"maskray.shard": shard_id, "maskray.job_id": sink.job_id})
        self._buffers: dict[str, pa.BufferOutputStream] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._pending: dict[str, list[pa.RecordBatch]] = {}
        self._pending_rows: dict[str, int] = {}
        self.rows: dict[str, int] = {}
        for table, schema in dict(TABLES, instances=instances_schema).items():
            self._buffers[table] = pa.BufferOutputStream()
            self._writers[table] = pq.ParquetWriter(self._buffers[table], schema.with_metadata(meta),
                                                    compression="zstd")
            self._pending[table], self._pending_rows[table], self.rows[table] = [], 0, 0

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
            self._pending[table], self._pending_rows[table] = [], 0

    def commit(self, **fields) -> CommitRecord:
        """Write the parts, then `_commits/<shard>.json`; `fields` are CommitRecord's counts,
        worker, timings, planned and piece."""
        started = time.time()
        self.sink.check_owner()
        files = {}
        for table in TABLES:
            self._flush(table)
            self._writers[table].close()
            data = self._buffers[table].getvalue().to_pybytes()
            relative = layout.part_name(table, self.shard_id, self.token)
            storage.write_bytes_atomic(layout.relative_uri(self.sink.output, relative), data)
            # What `maskray verify` and a resume check the stored file against.
            files[table] = {"path": relative, "bytes": len(data), "rows": self.rows[table],
                            "sha256": hashlib.sha256(data).hexdigest()}
        timings = dict(fields.pop("timings", {}), write_s=round(time.time() - started, 3))
        record = CommitRecord(
            shard=self.shard_id, job_id=self.sink.job_id, attempt=self.attempt, files=files,
            rows=dict(self.rows), owner=self.sink.owner, timings=timings, committed_at=time.time(), **fields,
        )
        return self.sink.commit(record)
