"""A job's track ids on disk: stitched once per video after its segments commit, read by queries.

`OUT/tracks/<video>.parquet` maps each segment's local track numbers to the video's track ids
(columns shard, track, track_id; the shard ids it was made from in its metadata). It is
written whole (atomically) once every segment of the video is committed, and written again
only if that set of segments changed, so a resumed job keeps its ids. Readers join it to the
`instances` parts; until it exists a video's `track_id` reads as null.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pyarrow as pa
import pyarrow.parquet as pq

from maskray.pipeline import storage
from maskray.models.errors import first_line
from maskray.pipeline.output.layout import DamagedOutputError, track_ids_uri, tracks_dir_uri
from maskray.pipeline.tracking.stitch import SegmentTracks, assign_track_ids

TRACK_IDS_SCHEMA = pa.schema([
    pa.field("shard", pa.string(), nullable=False),
    pa.field("track", pa.int32(), nullable=False),
    pa.field("track_id", pa.int64(), nullable=False),
])
_SHARDS_KEY = b"maskray.shards"


def video_key(shard_id: str) -> str:
    """`vid-<digest>` from a segment's shard id `vid-<digest>-f<start>-<end>`."""
    return shard_id.rsplit("-", 2)[0]


def stitch_job(output: str, shards: list, committed: dict) -> int:
    """Write the track ids of every video whose segments are all committed and were tracked.

    `shards`: the job's planned shards; `committed`: {shard id: commit record}. Returns the
    number of files written (0 when every one was already there and current).
    """
    videos: dict[str, list] = defaultdict(list)
    for shard in shards:
        if shard.kind == "video" and not shard.planning_error:
            videos[video_key(shard.id)].append(shard)
    written = 0
    for key, segments in sorted(videos.items()):
        records = [committed.get(s.id) for s in segments]
        if any(r is None or "tracks" not in r for r in records):
            continue  # not all committed yet, or tracking was off
        shard_ids = sorted(s.id for s in segments)
        uri = track_ids_uri(output, key)
        if _stored_shards(uri) == shard_ids:
            continue  # already stitched from these very segments: ids stay as they are
        summaries = [SegmentTracks.from_dict(s.id, r["tracks"]) for s, r in zip(segments, records)]
        rows = assign_track_ids(summaries)
        table = pa.table({
            "shard": pa.array([r[0] for r in rows], pa.string()),
            "track": pa.array([r[1] for r in rows], pa.int32()),
            "track_id": pa.array([r[2] for r in rows], pa.int64()),
        }, schema=TRACK_IDS_SCHEMA.with_metadata({_SHARDS_KEY: json.dumps(shard_ids).encode()}))
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        storage.write_bytes_atomic(uri, sink.getvalue().to_pybytes())
        written += 1
    return written


def read_track_ids(output: str, committed_shards) -> pa.Table:
    """(shard, track, track_id) rows of every stitched video whose segments are all committed."""
    committed_shards = set(committed_shards)
    tables = []
    try:
        found = storage.list_files(tracks_dir_uri(output))
    except FileNotFoundError:
        found = []
    for uri, _ in found:
        if not uri.endswith(".parquet"):
            continue
        try:
            table = pq.read_table(pa.BufferReader(storage.read_bytes(uri)))
        except (OSError, pa.ArrowInvalid) as error:
            raise DamagedOutputError(f"damaged maskray file {uri}: {first_line(error)}; the same `maskray submit`"
                                     " run again writes it anew") from None
        shards = json.loads((table.schema.metadata or {}).get(_SHARDS_KEY, b"[]"))
        if set(shards) <= committed_shards:
            tables.append(table.replace_schema_metadata(None).cast(TRACK_IDS_SCHEMA))
    if not tables:
        return TRACK_IDS_SCHEMA.empty_table()
    return pa.concat_tables(tables)


def _stored_shards(uri: str):
    if not storage.exists(uri):
        return None
    try:
        data = storage.read_bytes(uri)
        metadata = pq.read_schema(pa.BufferReader(data)).metadata or {}
        return json.loads(metadata.get(_SHARDS_KEY, b"null"))
    except (OSError, ValueError, pa.ArrowInvalid):
        return None  # unreadable: write it again
