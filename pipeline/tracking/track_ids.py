"""A job's track ids: stitched once per video after its segments commit.

`OUT/tracks/<video>.parquet` (pipeline/output/track_table.py) is written whole once every
segment of the video is committed, and written again only if that set of segments changed,
so a resumed job keeps its ids.
"""

from __future__ import annotations

from collections import defaultdict

from maskray.pipeline.output.layout import track_ids_uri
from maskray.pipeline.output.track_table import stored_shards, video_key, write_track_ids
from maskray.pipeline.tracking.stitch import SegmentTracks, assign_track_ids


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
        if stored_shards(uri) == shard_ids:
            continue  # already stitched from these very segments: ids stay as they are
        summaries = [SegmentTracks.from_dict(s.id, r["tracks"]) for s, r in zip(segments, records)]
        write_track_ids(uri, assign_track_ids(summaries), shard_ids)
        written += 1
    return written
