"""The output folder's layout: every path name under OUT, in one place.

    OUT/_job.json                  spec, job id, model, weights id, version (no secrets)
    OUT/instances/<shard>.parquet  one row per detected instance
    OUT/frames/<shard>.parquet     one row per processed frame
    OUT/_commits/<shard>.json      written last: a shard counts as done only once this exists
    OUT/_SUCCESS                   every shard committed
    OUT/_driver.json               the driver's state and heartbeat (for `maskray status`)
    OUT/tracks/<video>.parquet     a video's track ids: (shard, track) -> track_id, after stitching
    OUT/_index/<key>.npz           video frame indexes, cached (key: source uri, size, mtime)

Writers and readers build paths through these functions only, so the layout can change in
one file.
"""

from __future__ import annotations

from maskray.pipeline import storage

TABLE_NAMES = ("instances", "frames")
COMMITS = "_commits"
JOB_FILE = "_job.json"
SUCCESS_FILE = "_SUCCESS"
DRIVER_FILE = "_driver.json"
TRACKS_DIR = "tracks"
INDEXES = "_index"


def part_uri(output: str, table: str, shard_id: str) -> str:
    return storage.join(output, table, f"{shard_id}.parquet")


def commit_uri(output: str, shard_id: str) -> str:
    return storage.join(output, COMMITS, f"{shard_id}.json")


def commits_uri(output: str) -> str:
    return storage.join(output, COMMITS)


def job_uri(output: str) -> str:
    return storage.join(output, JOB_FILE)


def success_uri(output: str) -> str:
    return storage.join(output, SUCCESS_FILE)


def driver_uri(output: str) -> str:
    return storage.join(output, DRIVER_FILE)


def track_ids_uri(output: str, video_key: str) -> str:
    return storage.join(output, TRACKS_DIR, f"{video_key}.parquet")


def tracks_dir_uri(output: str) -> str:
    return storage.join(output, TRACKS_DIR)


def video_index_uri(output: str, key: str) -> str:
    """Where the frame index of one source version (`key`) is cached."""
    return storage.join(output, INDEXES, f"{key}.npz")
