"""`maskray retrack OUT`: a finished job's track ids made again, with other tracker settings,
from what the job stored: no model, no Ray.

Each video is tracked as the job tracked it: segment by segment, each segment's tracker
(`SegmentTracking`) fed its own `ok` frames and then its lookahead (the next segment's first
`HEAD_FRAMES` frames, which the next segment stored), and the segments stitched
(`assign_track_ids`). So retracking with the job's own settings gives the job's ids, and a
video's ids do not depend on how many workers made it. (Where the job tracked with appearance
embeddings it did not store, the retrack tracks without them.)

The new ids are a new *generation* of track files, `OUT/retracks/<generation>/<video>.parquet`,
one row per instance (a new tracker may split or join the job's own tracks). The switch is one
atomic write of `_job.json`, whose `tracks` names the generation and the settings that made it;
readers take the generation `_job.json` names when they open OUT, so a query sees the old ids or
the new, never a mix. The previous generation stays until the next retrack (a reader that opened
OUT before the switch finishes on it; one that finds it gone reads `_job.json` again); older
ones are deleted then. The job's own `tracks/` files are never touched (a resumed job compares
its segments with them), and the job's fingerprint never changes: the same `submit` resumes and
keeps the retracked ids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyarrow as pa

from maskray.errors import UsageError, first_line
from maskray.pipeline import storage
from maskray.pipeline.output import layout, sink
from maskray.pipeline.output.lease import Lease
from maskray.pipeline.output.reader import Output
from maskray.pipeline.output.track_table import delete_generations, write_instance_track_ids
from maskray.pipeline.tracking.segment import HEAD_FRAMES, SegmentTracking
from maskray.pipeline.tracking.settings import TrackerConfig, check_settings
from maskray.pipeline.tracking.stitch import SegmentTracks, assign_track_ids
from maskray.pipeline.tracking.stored_frames import StoredVideo, segment_bounds, videos_of

LEASE_TTL_S = 120.0
RENEW_EVERY_S = 30.0


@dataclass
class Retrack:
    output: str
    generation: int
    settings: dict  # the settings that differ from the defaults
    videos: int
    tracks_before: int
    tracks_after: int
    left_out: list = field(default_factory=list)  # videos with bisected segments: no ids, as in the job


def current_settings(job: dict) -> dict:
    """The tracker settings (changed from the defaults) that made OUT's current track ids."""
    tracks = job.get("tracks") or {}
    if "tracker" in tracks:
        return dict(tracks["tracker"])
    return dict((job.get("spec") or {}).get("tracker") or {})


def retrack(output: str, changes: dict) -> Retrack:
    """Make every video's track ids again with the current settings updated by `changes`;
    UsageError (one line, nothing changed) for a bad setting or an OUT that holds no finished
    job with videos."""
    job = sink.require_job(output)
    try:
        config = check_settings({**current_settings(job), **changes})
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    try:
        lease = Lease(output, LEASE_TTL_S, command="retrack").acquire()
    except OSError as error:
        raise UsageError(f"cannot write to output {output}: {first_line(error)}") from None
    try:
        job = sink.require_job(output)  # under the lease: no driver changes it now
        success = sink.read_success(output)
        if success is None or success.get("job_id", job["job_id"]) != job["job_id"]:
            raise UsageError(f"job {job['job_id']} in {output} has not finished: run the same"
                             " `maskray submit` to finish it, then retrack")
        reader = Output(output)
        videos, left_out = videos_of(reader.commits)
        if not videos:
            raise UsageError(f"job {job['job_id']} in {output} has no videos to track")
        before = _count_tracks(reader)
        previous = job.get("tracks") or {}
        generation = int(previous.get("generation", 0)) + 1
        folder = layout.retrack_dir_name(generation)
        renewed = time.monotonic()
        for key, segments in videos.items():
            rows = track_video(reader, segments, config)
            write_instance_track_ids(storage.join(output, folder, f"{key}.parquet"), rows,
                                     sorted(r.shard for r in segments))
            if time.monotonic() - renewed > RENEW_EVERY_S:
                lease.renew(job["job_id"])
                renewed = time.monotonic()
        job["tracks"] = {"generation": generation, "dir": folder, "previous": previous.get("dir"),
                         "tracker": config.changed(), "made_by": "maskray retrack",
                         "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        sink.write_job(output, job)  # the switch: readers now open the new generation
        delete_generations(output, keep={folder, previous.get("dir")})
        after = _count_tracks(Output(output))
        return Retrack(output, generation, config.changed(), len(videos), before, after, left_out)
    finally:
        lease.release()


def track_video(reader: Output, segments: list, config: TrackerConfig) -> pa.Table:
    """(shard, frame, instance, track_id) of one video's stored instances, tracked with `config`
    segment by segment as the job's workers did, then stitched."""
    stored = StoredVideo(reader, segments)
    summaries, rows = [], {"shard": [], "frame": [], "instance": [], "track": []}
    for index, segment in enumerate(segments):
        start, end = segment_bounds(segment)
        tracking = SegmentTracking(segment.shard, start, end, config)
        later = [f for s in segments[index + 1:] for f in stored.frames_of.get(s.shard, [])]
        for frame in stored.frames_of.get(segment.shard, []) + later[:HEAD_FRAMES]:
            if frame not in stored.ok:
                continue  # an error row: the worker tracked no such frame
            numbers = tracking.track(frame, stored.prediction(frame))
            if frame < end:
                rows["shard"] += [segment.shard] * len(numbers)
                rows["frame"] += [frame] * len(numbers)
                rows["instance"] += list(range(len(numbers)))
                rows["track"] += [int(n) for n in numbers]
        summaries.append(SegmentTracks.from_dict(segment.shard, tracking.record()))
    ids = {(shard, track): track_id for shard, track, track_id in assign_track_ids(summaries)}
    # An instance whose track stitching does not know (none, or one never confirmed) gets no row:
    # its track_id reads as null, as in the job.
    known = [i for i, key in enumerate(zip(rows["shard"], rows["track"])) if key in ids]
    return pa.table({"shard": [rows["shard"][i] for i in known],
                     "frame": pa.array([rows["frame"][i] for i in known], pa.int64()),
                     "instance": pa.array([rows["instance"][i] for i in known], pa.int32()),
                     "track_id": pa.array([ids[(rows["shard"][i], rows["track"][i])] for i in known], pa.int64())})


def _count_tracks(reader: Output) -> int:
    """Tracks in all videos (ids are numbered per video)."""
    counted = reader.sql("SELECT count(*) AS n FROM (SELECT DISTINCT source, track_id FROM instances"
                         " WHERE track_id IS NOT NULL)")
    return int(counted.column("n")[0].as_py())


