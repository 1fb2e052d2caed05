"""The commit log: manifests that hold many commit records, and what readers make of them.

A worker publishes its shard with one small `_commits/<shard>.json`. The driver (the one
writer: it holds the lease) folds those records, every so often and once more before
`_SUCCESS`, into an immutable manifest `_manifests/<generation>.parquet` (one row per
record), then points `_manifest.json` at it (one atomic write: the switch) and deletes the
`_commits/` files it folded. Readers therefore read

    _manifest.json  ->  the manifest it names  ->  (unless the pointer says `complete`)
    the few `_commits/*.json` not folded yet, which win over the manifest's row of their shard

so a finished job is read in about three requests whatever its number of shards, and a
running one in three plus one LIST and one GET per commit of the last few seconds. A file
always wins because it is never older than the manifest's row: the driver deletes a file
only after a manifest holding that very record is published.

Rows are columns, not JSON, so 10^5 records load in milliseconds and `status` sums columns;
the fields readers never need (row counts, tracks, worker, timings) ride along as one JSON
string per row and are parsed only when whole records are asked for.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Iterable, Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from maskray.pipeline import storage
from maskray.pipeline.output import layout
from maskray.pipeline.output.layout import TABLE_NAMES, CommitRecord, DamagedOutputError

_INTEGERS = ("attempt", "frames", "errors", "instances", "frames_ok", "transient_errors")
_STRINGS = ("shard", "job_id", "planned", "piece", "owner")
_EXTRA = ("rows", "tracks", "worker", "timings")  # kept as one JSON text per row
_PART_FIELDS = ("bytes", "shards", "rows", "sha256")  # of `files[table]`, beside its path
MANIFEST_SCHEMA = pa.schema(
    [pa.field(name, pa.string()) for name in _STRINGS]
    + [pa.field(name, pa.int64()) for name in _INTEGERS]
    + [pa.field("committed_at", pa.float64())]
    + [field for table in TABLE_NAMES for field in (
        pa.field(f"{table}_path", pa.string()), pa.field(f"{table}_bytes", pa.int64()),
        # how many shards a merged part holds (null: the shard's own part)
        pa.field(f"{table}_shards", pa.int64()),
        # the part file's rows and the sha256 of its bytes, recorded at commit (null: an older maskray)
        pa.field(f"{table}_rows", pa.int64()), pa.field(f"{table}_sha256", pa.string()))]
    + [pa.field("extra", pa.string())]
)


def records_to_table(records: Iterable[CommitRecord]) -> pa.Table:
    columns: dict[str, list] = {name: [] for name in MANIFEST_SCHEMA.names}
    for record in records:
        for name in _STRINGS + _INTEGERS + ("committed_at",):
            columns[name].append(getattr(record, name))
        for table in TABLE_NAMES:
            part = record.files.get(table) or {}
            columns[f"{table}_path"].append(part.get("path"))
            for name in _PART_FIELDS:
                columns[f"{table}_{name}"].append(part.get(name))
        columns["extra"].append(json.dumps({name: getattr(record, name) for name in _EXTRA},
                                           separators=(",", ":"), default=str))
    return pa.table(columns, schema=MANIFEST_SCHEMA)


def table_to_records(table: pa.Table) -> dict[str, CommitRecord]:
    records = {}
    for row in table.to_pylist():
        files = {}
        for name in TABLE_NAMES:
            if row[f"{name}_path"] is not None:
                files[name] = {"path": row[f"{name}_path"], "bytes": row[f"{name}_bytes"]}
                for field in _PART_FIELDS[1:]:
                    if row[f"{name}_{field}"] is not None:
                        files[name][field] = row[f"{name}_{field}"]
        extra = json.loads(row["extra"] or "{}")
        fields = {name: row[name] for name in _STRINGS + _INTEGERS + ("committed_at",)}
        records[row["shard"]] = CommitRecord(files=files, **fields, **{k: extra[k] for k in _EXTRA if k in extra})
    return records


class Committed:
    """The commit records a reader sees: a manifest's rows overlaid with newer `_commits/` files.

    `table` holds one row per committed shard (MANIFEST_SCHEMA); `pending` the records read
    from files (already in `table`); `complete` whether the pointer said no file is pending.
    """

    def __init__(self, manifest: pa.Table, pending: dict[str, CommitRecord], *, complete: bool = False,
                 generation: int = 0, pointer: Optional[dict] = None):
        self.manifest = manifest
        self.pending = pending
        self.complete = complete
        self.generation = generation
        self.pointer = pointer
        if pending:
            newer = pc.is_in(manifest["shard"], value_set=pa.array(list(pending), pa.string()))
            manifest = manifest.filter(pc.invert(newer))
            manifest = pa.concat_tables([manifest, records_to_table(pending.values())])
        self.table = manifest

    def __len__(self) -> int:
        return self.table.num_rows

    def without(self, shards: set) -> "Committed":
        """The same log less the records of `shards` (e.g. those whose parts are damaged)."""
        if not shards:
            return self
        dropped = pc.is_in(self.table["shard"], value_set=pa.array(sorted(shards), pa.string()))
        return Committed(self.table.filter(pc.invert(dropped)), {}, complete=self.complete,
                         generation=self.generation, pointer=self.pointer)

    def shards(self) -> list[str]:
        return sorted(self.table["shard"].to_pylist())

    @cached_property
    def records(self) -> dict[str, CommitRecord]:
        """`{shard: CommitRecord}` (built on first use: the slow path at 10^5 records)."""
        return table_to_records(self.table)

    def total(self, column: str) -> int:
        return int(pc.sum(self.table[column]).as_py() or 0)

    def covered_shards(self) -> set[str]:
        """Planned shards fully committed (see layout.covered_shards); whole shards, the
        common case, are counted without building records."""
        whole = pc.equal(self.table["piece"], "")
        covered = set(self.table.filter(whole)["planned"].to_pylist())
        pieces = self.table.filter(pc.invert(whole)).select(["planned", "piece"]).to_pylist()
        return covered | layout.covered_shards(_Piece(**row) for row in pieces)

    def part_paths(self, table: str) -> tuple[list[str], Optional[set[str]]]:
        """`(distinct paths relative to OUT, shards)` of `table`'s committed parts. `shards` is
        None, or the shard ids to keep when a merged part also holds rows of shards that were
        since withdrawn or recommitted elsewhere (read it filtered on its `shard` column)."""
        column = self.table[f"{table}_path"]
        paths = pc.unique(column.filter(pc.is_valid(column))).to_pylist()
        merged = self.table.filter(pc.is_valid(self.table[f"{table}_shards"]))
        if not merged.num_rows:
            return sorted(paths), None
        counts = merged.group_by(f"{table}_path").aggregate([("shard", "count"), (f"{table}_shards", "max")])
        if pc.all(pc.equal(counts["shard_count"], counts[f"{table}_shards_max"])).as_py():
            return sorted(paths), None
        return sorted(paths), set(self.table["shard"].to_pylist())


    def part_sizes(self, table: str) -> dict[str, int]:
        """`{path relative to OUT: bytes}` of `table`'s committed parts, as their records say."""
        paths, sizes = self.table[f"{table}_path"].to_pylist(), self.table[f"{table}_bytes"].to_pylist()
        return {path: size for path, size in zip(paths, sizes) if path is not None and size is not None}


class _Piece:
    def __init__(self, planned: str, piece: str):
        self.planned, self.piece = planned, piece


# ---- reading ------------------------------------------------------------------------------------

def read_pointer(output: str) -> Optional[dict]:
    uri = layout.manifest_pointer_uri(output)
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        return None
    return layout.parse_json(data, uri)


def read_manifest(output: str, name: str) -> pa.Table:
    uri = layout.relative_uri(output, name)
    data = storage.read_bytes(uri)  # FileNotFoundError: replaced while we read the pointer
    try:
        table = pq.read_table(pa.BufferReader(data))
        for field in MANIFEST_SCHEMA:  # columns an older maskray did not write (checksums): null
            if field.name not in table.column_names and field.name.endswith(("_rows", "_sha256")):
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
        return table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
    except (pa.ArrowInvalid, KeyError, ValueError) as error:
        raise DamagedOutputError(f"damaged maskray file {uri}: {str(error).splitlines()[0]}") from None


def read_committed(output: str, job_id: Optional[str] = None, damaged: str = "raise") -> Committed:
    """What is committed in `output` (of `job_id` only, when given); see the module's note.

    A damaged file raises DamagedOutputError naming it (`damaged="skip"` leaves a damaged
    commit record out: its shard is redone).
    """
    for _ in range(5):
        pointer = read_pointer(output)
        if pointer is None or (job_id is not None and pointer.get("job_id") != job_id):
            manifest, pointer = MANIFEST_SCHEMA.empty_table(), None
            break
        try:
            manifest = read_manifest(output, str(pointer["manifest"]))
            break
        except FileNotFoundError:  # a newer manifest replaced it meanwhile: read the pointer again
            continue
    else:
        raise OSError(f"the manifest of {output} kept changing while it was read; try again")
    complete = bool(pointer and pointer.get("complete"))
    pending = {} if complete else read_commit_files(output, job_id, damaged)
    return Committed(manifest, pending, complete=complete, pointer=pointer,
                     generation=int(pointer["generation"]) if pointer else 0)


def read_commit_files(output: str, job_id: Optional[str] = None, damaged: str = "raise") -> dict[str, CommitRecord]:
    """`{shard: record}` of the `_commits/*.json` files (of `job_id` only, when given)."""
    try:
        found = storage.list_files(layout.commits_uri(output))
    except FileNotFoundError:
        return {}
    uris = [uri for uri, _ in found if layout.is_commit_file(uri)]

    def load(uri: str):
        try:
            return CommitRecord.from_json(storage.read_bytes(uri), uri)
        except DamagedOutputError:
            if damaged == "skip":
                return None
            raise
        except FileNotFoundError:  # folded or withdrawn while we listed
            return None

    with ThreadPoolExecutor(max_workers=1 if storage.is_local(output) or len(uris) < 2 else 16) as pool:
        records = [r for r in pool.map(load, uris) if r is not None]
    return {r.shard: r for r in records if job_id is None or r.job_id == job_id}


# ---- writing (the driver, or `maskray compact`, holding the lease) --------------------------------

def publish(output: str, job_id: str, generation: int, table: pa.Table, *, complete: bool,
            previous: Optional[str] = None) -> dict:
    """Write manifest `generation`, then point `_manifest.json` at it; returns the pointer."""
    buffer = pa.BufferOutputStream()
    pq.write_table(table.cast(MANIFEST_SCHEMA), buffer, compression="zstd")
    name = layout.manifest_name(generation)
    storage.write_bytes_atomic(layout.relative_uri(output, name), buffer.getvalue().to_pybytes())
    pointer = {"job_id": job_id, "generation": generation, "manifest": name, "complete": complete,
               "previous": previous, "shards": table.num_rows, "written_at": time.time()}
    write_pointer(output, pointer)
    return pointer


def write_pointer(output: str, pointer: dict) -> None:
    storage.write_bytes_atomic(layout.manifest_pointer_uri(output), layout.dumps(pointer))


def record_names_parts(output: str, record: CommitRecord) -> bool:
    """True when `_commits/<shard>.json` still holds `record` (a later attempt may have replaced it)."""
    uri = layout.commit_uri(output, record.shard)
    try:
        stored = CommitRecord.from_json(storage.read_bytes(uri), uri)
    except (FileNotFoundError, DamagedOutputError):
        return False
    return stored.paths() == record.paths() and stored.job_id == record.job_id
