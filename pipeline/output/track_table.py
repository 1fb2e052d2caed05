"""A job's track ids on disk: `OUT/tracks/<video>.parquet`, written whole, read by queries.

Each file maps a video's segments' local track numbers to the video's track ids (columns
shard, track, track_id; the shard ids it was made from in its metadata). Stitching
(pipeline/tracking/track_ids.py) decides the ids; this module only stores and reads them.
Readers join them to the `instances` parts; until a video's file exists its `track_id` is null.

`maskray retrack` writes a whole new set of these files, a *generation*, under
`OUT/retracks/<generation>/`, and then names it in `_job.json` (`tracks.dir`): readers take
the folder `_job.json` names when they open OUT (the job's own `tracks/` when it names none),
so a query reads one generation whole, the old or the new.
"""

from __future__ import annotations

import json
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from maskray.pipeline import storage
from maskray.errors import first_line
from maskray.pipeline.output.commit_log_writer import delete_file
from maskray.pipeline.output.layout import RETRACKS_DIR, DamagedOutputError, is_retrack_dir_name, tracks_dir_uri

TRACK_IDS_SCHEMA = pa.schema([
    pa.field("shard", pa.string(), nullable=False),
    pa.field("track", pa.int32(), nullable=False),
    pa.field("track_id", pa.int64(), nullable=False),
])
# A retrack's files name each instance: its new tracks may split or merge the job's local ones.
INSTANCE_TRACK_IDS_SCHEMA = pa.schema([
    pa.field("shard", pa.string(), nullable=False),
    pa.field("frame", pa.int64(), nullable=False),
    pa.field("instance", pa.int32(), nullable=False),
    pa.field("track_id", pa.int64(), nullable=False),
])
_SHARDS_KEY = b"maskray.shards"


def join_keys(track_ids: pa.Table) -> list[str]:
    """The instance columns that a track ids table is joined on."""
    return [name for name in track_ids.column_names if name != "track_id"]


def video_key(shard_id: str) -> str:
    """`vid-<digest>` from a segment's shard id `vid-<digest>-f<start>-<end>`."""
    return shard_id.rsplit("-", 2)[0]


def write_track_ids(uri: str, rows: list[tuple[str, int, int]], shard_ids: list[str]) -> None:
    """(shard, track, track_id) rows of one video, made from segments `shard_ids`, written whole."""
    table = pa.table({
        "shard": pa.array([r[0] for r in rows], pa.string()),
        "track": pa.array([r[1] for r in rows], pa.int32()),
        "track_id": pa.array([r[2] for r in rows], pa.int64()),
    }, schema=TRACK_IDS_SCHEMA.with_metadata({_SHARDS_KEY: json.dumps(shard_ids).encode()}))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    storage.write_bytes_atomic(uri, sink.getvalue().to_pybytes())


def write_instance_track_ids(uri: str, rows: pa.Table, shard_ids: list[str]) -> None:
    """A retrack's (shard, frame, instance, track_id) rows of one video, written whole."""
    table = rows.select(INSTANCE_TRACK_IDS_SCHEMA.names).cast(INSTANCE_TRACK_IDS_SCHEMA)
    table = table.replace_schema_metadata({_SHARDS_KEY: json.dumps(shard_ids).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    storage.write_bytes_atomic(uri, sink.getvalue().to_pybytes())


def stored_shards(uri: str) -> Optional[list[str]]:
    """The segments a stored file was made from; None when it is missing or unreadable."""
    if not storage.exists(uri):
        return None
    try:
        data = storage.read_bytes(uri)
        metadata = pq.read_schema(pa.BufferReader(data)).metadata or {}
        return json.loads(metadata.get(_SHARDS_KEY, b"null"))
    except (OSError, ValueError, pa.ArrowInvalid):
        return None  # unreadable: write it again


def current_tracks_dir(job: dict) -> Optional[str]:
    """The retrack generation `_job.json` names (relative to OUT), None for the job's own `tracks/`."""
    name = ((job or {}).get("tracks") or {}).get("dir")
    return name if name and is_retrack_dir_name(name) else None


def read_track_ids(output: str, committed_shards, generation_dir: Optional[str] = None) -> pa.Table:
    """(shard, track, track_id) rows of every stitched video whose segments are all committed,
    from the job's `tracks/` or, when given, the retrack generation `generation_dir` (relative
    to OUT). FileNotFoundError when that generation is gone (a newer retrack removed it)."""
    committed_shards = set(committed_shards)
    tables = []
    folder = storage.join(output, generation_dir) if generation_dir else tracks_dir_uri(output)
    try:
        found = storage.list_files(folder)
    except FileNotFoundError:
        if generation_dir:
            raise
        found = []
    for uri, _ in found:
        if not uri.endswith(".parquet") or uri.rsplit("/", 2)[-2] != folder.rstrip("/").rsplit("/", 1)[-1]:
            continue  # only the folder's own files, not those of a folder inside it
        try:
            table = pq.read_table(pa.BufferReader(storage.read_bytes(uri)))
        except FileNotFoundError:
            if generation_dir:
                raise
            continue
        except (OSError, pa.ArrowInvalid) as error:
            raise DamagedOutputError(f"damaged maskray file {uri}: {first_line(error)}; the same `maskray submit`"
                                     " run again writes it anew") from None
        shards = json.loads((table.schema.metadata or {}).get(_SHARDS_KEY, b"[]"))
        if set(shards) <= committed_shards:
            schema = INSTANCE_TRACK_IDS_SCHEMA if "instance" in table.column_names else TRACK_IDS_SCHEMA
            tables.append(table.replace_schema_metadata(None).select(schema.names).cast(schema))
    if not tables:
        return (INSTANCE_TRACK_IDS_SCHEMA if generation_dir else TRACK_IDS_SCHEMA).empty_table()
    return pa.concat_tables(tables)


def delete_generations(output: str, keep=frozenset()) -> None:
    """Delete the track files of retrack generations other than `keep` (folders relative to
    OUT); only files of maskray's own names in its own folders."""
    try:
        found = storage.list_files(storage.join(output, RETRACKS_DIR))
    except FileNotFoundError:
        return
    for uri, _ in found:
        folder, name = uri.rsplit("/", 2)[-2:]
        relative = f"{RETRACKS_DIR}/{folder}"
        if is_retrack_dir_name(relative) and relative not in keep \
                and name.startswith("vid-") and name.endswith(".parquet"):
            delete_file(uri)
            if storage.is_local(uri):
                _remove_empty_folder(uri.rsplit("/", 1)[0])


def _remove_empty_folder(folder: str) -> None:
    import os

    try:
        os.rmdir(folder)
    except OSError:
        pass  # not empty (a file someone else put there), or gone
