"""Reading a job's output: Arrow datasets over committed parts, SQL with DuckDB, masks.

Only committed shards of the job named in the output's job file are read, and of each only
the files its commit record names (`layout.CommitRecord`), so a query during a running job
never sees a half-written shard, a failed attempt's parts, or another job's commits. Files
are read through pyarrow's filesystems (`storage.resolve`), so a local folder and an `s3://` prefix behave
the same; DuckDB scans the Arrow datasets it is handed and never opens files itself.

    >>> out = open_output("out/")
    >>> out.sql("SELECT category, count(*) AS n FROM instances GROUP BY 1 ORDER BY n DESC")
    >>> masks = decode_masks(out.sql("SELECT * FROM instances WHERE frame = 0 LIMIT 5"))
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import cached_property
from typing import Iterable, Optional, Union

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from maskray.models import rle
from maskray.errors import MaskrayError, UsageError, first_line
from maskray.pipeline import storage
from maskray.pipeline.output import commit_log, layout, part_check, sink
from maskray.pipeline.output.commit_log import Committed
from maskray.pipeline.output.layout import CommitRecord
from maskray.pipeline.output.columns import EMBEDDING
from maskray.pipeline.output.schema import FRAMES_SCHEMA, INSTANCES_SCHEMA
from maskray.pipeline.output.sql_views import INSTANCES_COLUMNS, LOCKED_DOWN, TRACKS_SQL, duckdb_message, needs_track_ids, run_query
from maskray.pipeline.output.track_table import current_tracks_dir, join_keys, read_track_ids

TABLE_SCHEMAS = {"instances": INSTANCES_SCHEMA, "frames": FRAMES_SCHEMA}


class Output:
    """One job's output folder or prefix (local path, `file://`, `s3://`, `gs://`).

    The list of committed shards is read once, when first needed, so every dataset and
    query of one `Output` sees the same snapshot; call `refresh()` to see newer commits.
    """

    def __init__(self, uri: str):
        self.uri = storage.canonical(uri)
        self.filesystem, self.path = storage.resolve(self.uri)

    @cached_property
    def job(self) -> dict:
        """The content of `_job.json` (spec, job id, model, weights id, version); {} if absent."""
        return sink.read_job(self.uri) or {}

    @cached_property
    def committed(self) -> Committed:
        """This job's commit log as read now: the manifest plus records not folded yet (a
        damaged file raises DamagedOutputError naming it)."""
        return commit_log.read_committed(self.uri, self.job.get("job_id"))

    @cached_property
    def commits(self) -> dict[str, CommitRecord]:
        """`{shard id: commit record}` of this job's committed shards."""
        return self.committed.records

    def committed_shards(self) -> list[str]:
        """Ids of the committed shards, sorted."""
        return self.committed.shards()

    def refresh(self) -> "Output":
        """Forget the cached job file and commit list, so newer commits become visible."""
        for name in ("job", "committed", "commits", "track_ids"):
            self.__dict__.pop(name, None)
        return self

    def part_paths(self, table: str) -> list[str]:
        """Filesystem paths of the committed parts of `table` ('instances' or 'frames')."""
        return self._parts(table)[0]

    def _parts(self, table: str) -> tuple[list[str], Optional[set]]:
        if table not in TABLE_SCHEMAS:
            raise ValueError(f"unknown table {table!r}: use 'instances' or 'frames'")
        relative, shards = self.committed.part_paths(table)
        return [self.path.rstrip("/") + "/" + path for path in relative], shards

    def dataset(self, table: str) -> ds.Dataset:
        """A pyarrow dataset over the committed parts of `table`; empty (same schema) if none."""
        paths, shards = self._parts(table)
        if not paths:
            return ds.dataset([], schema=TABLE_SCHEMAS[table], format="parquet", filesystem=self.filesystem)
        # Fragments with the sizes the commit records hold: no request per part to learn its
        # size (a HEAD each on S3) before a query; the first part's schema is the job's.
        sizes = self.committed.part_sizes(table)
        root = self.path.rstrip("/") + "/"
        parquet = ds.ParquetFileFormat()
        with self._reading():
            fragments = [parquet.make_fragment(path, self.filesystem, file_size=sizes.get(path[len(root):]))
                         for path in paths]
            dataset = ds.FileSystemDataset(fragments, fragments[0].physical_schema, parquet, self.filesystem)
        if shards is not None:  # a merged part also holds rows of shards no longer committed to it
            dataset = dataset.filter(ds.field("shard").isin(sorted(shards)))
        return dataset

    def instances(self) -> ds.Dataset:
        """One row per detected instance (committed shards only)."""
        return self.dataset("instances")

    def frames(self) -> ds.Dataset:
        """One row per processed frame, with its status (committed shards only)."""
        return self.dataset("frames")

    @cached_property
    def track_ids(self) -> pa.Table:
        """(shard, track, track_id) of the stitched videos whose segments are all committed,
        from the one generation `_job.json` names (`maskray retrack`), read whole: never a mix."""
        job = self.job
        for _ in range(5):
            try:
                return read_track_ids(self.uri, self.committed_shards(), current_tracks_dir(job))
            except FileNotFoundError:  # a later retrack removed that generation: take the current one
                job = sink.read_job(self.uri) or {}
        raise layout.DamagedOutputError(f"the track ids {current_tracks_dir(job)} that {layout.job_uri(self.uri)}"
                                        " names are missing; run `maskray retrack` again")

    def instances_table(self, columns: Optional[list[str]] = None, filter=None) -> pa.Table:
        """Committed instances as a table, with `track_id` (null where there is none)."""
        wanted = [c for c in (columns or INSTANCES_COLUMNS) if c != "track_id"]
        dataset = self.instances()
        has_track = "track" in dataset.schema.names
        read = wanted + [c for c in ("shard", "track", "frame", "instance") if has_track and c not in wanted]
        with self._reading():
            table = dataset.to_table(columns=read, filter=filter)
        if columns is not None and "track_id" not in columns:
            return table
        return self.attach_track_ids(table).select(wanted + ["track_id"])

    def attach_track_ids(self, table: pa.Table) -> pa.Table:
        """`table` (instance rows, with `shard` and `track` where the job tracked) with a
        `track_id` column appended (null where there is none)."""
        names = join_keys(self.track_ids)
        if "track" not in table.column_names or not self.track_ids.num_rows \
                or any(n not in table.column_names for n in names):
            return table.append_column("track_id", pa.nulls(table.num_rows, pa.int64()))
        # A lookup rather than Table.join, which cannot carry list columns (keypoints).
        def keys(t):
            return pc.binary_join_element_wise(*[pc.cast(t[n], pa.string()) for n in names], ":")

        position = pc.index_in(keys(table), value_set=keys(self.track_ids))
        return table.append_column("track_id", pc.take(self.track_ids["track_id"], position))

    def sql(self, query: str, *, limit: Optional[int] = None, params: Optional[dict] = None) -> pa.Table:
        """Run a DuckDB SQL query over the views `instances`, `frames` and `tracks`.

        The connection is locked down (see `LOCKED_DOWN`): a query sees only the registered
        datasets and the views over them; it cannot read or write files, install or load
        extensions, or change these settings. limit: return at most this many rows. params: values
        of `$name` placeholders, bound by DuckDB (never pasted into the text). Raises UsageError
        (one line) when DuckDB rejects the query.
        """
        generation = self.committed.generation
        try:
            return self._sql(query, limit, params)
        except (UsageError, OSError, layout.DamagedOutputError):
            # A manifest published meanwhile (compaction, a withdrawal) may have removed parts
            # of the snapshot this query read: run it once more on the new one.
            if self.refresh().committed.generation == generation:
                raise
            return self._sql(query, limit, params)

    @contextmanager
    def _reading(self):
        """A failed read of the parts becomes one line naming the missing or damaged file
        (exit 1: OUT is damaged, the user's command was right)."""
        try:
            yield
        except MaskrayError:
            raise
        except (OSError, pa.ArrowInvalid) as error:
            raise part_check.read_failure(self.uri, self.committed.table, error) from None
        except (duckdb.IOException, duckdb.InvalidInputException) as error:  # or the query's own fault
            damage = part_check.read_failure(self.uri, self.committed.table, error)
            if damage.parts_found:
                raise damage from None
            raise

    def _sql(self, query: str, limit: Optional[int], params: Optional[dict] = None) -> pa.Table:
        connection = self.connect(query)
        try:
            return run_query(connection, query, limit=limit, params=params, reading=self._reading)
        finally:
            connection.close()

    def connect(self, query: Optional[str] = None) -> "duckdb.DuckDBPyConnection":
        """A locked-down DuckDB connection (see `sql`) with this snapshot's `instances`, `frames`
        and `tracks` views, for a caller that runs many queries (`run_query`); it closes it.
        Given the `query` it is for, track ids are joined only if that query can see them."""
        connection = duckdb.connect(config=LOCKED_DOWN)
        try:
            connection.register("frames", self.dataset("frames"))
            self._register_instances(connection, query is None or needs_track_ids(connection, query))
            connection.execute(f"CREATE TEMP VIEW tracks AS {TRACKS_SQL}")
        except duckdb.Error as error:
            connection.close()
            raise UsageError(f"query failed: {duckdb_message(error)}") from None
        except BaseException:
            connection.close()
            raise
        return connection

    def _register_instances(self, connection, with_track_ids: bool = True) -> None:
        parts = self.dataset("instances")
        if EMBEDDING in parts.schema.names:  # float16, which DuckDB cannot read from Arrow: kept
            # to the Parquet parts and `instances_table` (docs/tracking.md), out of SQL's view.
            parts = parts.replace_schema(pa.schema([f for f in parts.schema if f.name != EMBEDDING]))
        connection.register("instance_parts", parts)
        if "track" not in parts.schema.names:  # an output written before tracking existed
            connection.execute("CREATE TEMP VIEW instances AS SELECT *, NULL::BIGINT AS track_id FROM instance_parts")
            return
        # Reading the track ids costs a file per video: skipped for a query that cannot see them.
        if not with_track_ids or not self.track_ids.num_rows:  # or images only, tracking off, not stitched yet
            connection.execute("CREATE TEMP VIEW instances AS "
                               "SELECT * EXCLUDE (track), NULL::BIGINT AS track_id FROM instance_parts")
            return
        connection.register("track_ids", self.track_ids)
        connection.execute(
            "CREATE TEMP VIEW instances AS SELECT p.* EXCLUDE (track), t.track_id FROM instance_parts p"
            " LEFT JOIN track_ids t ON " + " AND ".join(f"p.{n} = t.{n}" for n in join_keys(self.track_ids)))


# DuckDB settings for user SQL: the Arrow datasets are handed in by `register`, so a query needs
# no file access of its own; without these it could read any local file (`read_text`), write
# one (`COPY ... TO`), or fetch and run extension code. The lock keeps a query from undoing them.
def open_output(uri: str) -> Output:
    """Open a job's output for reading; UsageError if `uri` holds no maskray output."""
    try:
        output = Output(uri)
        found = storage.exists(layout.job_uri(output.uri)) or storage.exists(layout.commits_uri(output.uri))
        present = found or storage.exists(output.uri)
    except (ValueError, OSError) as error:  # a bad scheme, an unreachable store, no access
        raise UsageError(f"cannot read {uri}: {first_line(error)}") from None
    if not present:
        raise UsageError(f"no output at {uri}")
    if not found:
        raise UsageError(f"{uri} is not a maskray output (no {layout.JOB_FILE} and no {layout.COMMITS}/)")
    return output


@contextmanager
def damage_named(uri: str):
    """Around a tool that reads OUT's parts (export, eval, render): a read that fails on a
    missing or damaged part becomes one line naming it (exit 1), as in `Output.sql`."""
    try:
        yield
    except MaskrayError:
        raise
    except (OSError, pa.ArrowInvalid) as error:
        output = Output(uri)
        damage = part_check.read_failure(output.uri, output.committed.table, error)
        if damage.parts_found or output.path in str(error):
            raise damage from None
        raise  # not OUT's parts (a --source, a ground truth): the tool's own error


def write_file(uri: str, data: bytes) -> None:
    """Write a result file (a path or object-store URI) whole; UsageError when it cannot be."""
    try:
        storage.write_bytes_atomic(uri, data)
    except (ValueError, OSError) as error:
        raise UsageError(f"cannot write {uri}: {first_line(error)}") from None


Rows = Union[pa.Table, pa.RecordBatch, Iterable[dict]]


def decode_masks(rows: Rows) -> np.ndarray:
    """Masks of instances as an (N, H, W) uint8 array of 0/1.

    `rows`: a pyarrow Table or RecordBatch, or dicts, with `mask_rle`, `height` and `width`
    (all rows from frames of one size, e.g. the instances of one frame or one video).
    """
    if isinstance(rows, (pa.Table, pa.RecordBatch)):
        rows = rows.select(["mask_rle", "height", "width"]).to_pylist()
    rows = list(rows)
    if not rows:
        return np.zeros((0, 0, 0), dtype=np.uint8)
    sizes = {(int(r["height"]), int(r["width"])) for r in rows}
    if len(sizes) > 1:
        raise ValueError(f"decode_masks needs frames of one size, got {sorted(sizes)}; decode per frame")
    height, width = sizes.pop()
    masks = np.zeros((len(rows), height, width), dtype=np.uint8)
    for index, row in enumerate(rows):
        if row["mask_rle"] is None:
            raise ValueError(f"row {index} has no mask (the model has no mask head)")
        masks[index] = rle.decode(row["mask_rle"], height, width)
    return masks
