"""The output folder's layout: every path name under OUT, and the typed records stored there.

    OUT/_job.json                            spec, job id, model, weights id, version (no secrets)
    OUT/instances/<shard>.<attempt>.parquet  one row per detected instance
    OUT/frames/<shard>.<attempt>.parquet     one row per processed frame
    OUT/_commits/<shard>.json                written last: names the parts of the attempt that won
    OUT/_manifests/<generation>.parquet      the commit log: many commit records in one immutable file
    OUT/_manifest.json                       names the current manifest (written last: the switch)
    OUT/<table>/compacted-<gen>-<n>.parquet  parts merged by `maskray compact` (many shards each)
    OUT/_SUCCESS                             every shard committed (holds the job id)
    OUT/_driver.json                         the driver's state and heartbeat (for `maskray status`)
    OUT/_leases/<owner>.json                 one per driver that holds (or tries to hold) OUT
    OUT/tracks/<video>.parquet               a video's track ids: (shard, track) -> track_id, after stitching
    OUT/retracks/<generation>/<video>.parquet the same, made by `maskray retrack` (`_job.json` names the current one)
    OUT/_index/<key>.npz                     video frame indexes, cached (key: source uri, size, mtime)

Part names are unique per attempt, so a late (zombie) attempt can never overwrite the files of
the attempt whose commit record readers follow; readers read exactly the files a commit names.
Writers and readers build paths through this module only, so the layout changes in one file.

The driver folds commit records into a new manifest every so often (commit_log.py) and then
deletes the folded `_commits/` files, so a finished job is read from `_manifest.json` and one
manifest: a handful of requests whatever the number of shards.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from typing import Optional

from maskray.errors import MaskrayError
from maskray.pipeline import storage
from maskray.pipeline.inputs.index_cache import INDEXES, video_index_uri  # noqa: F401 (OUT names)

TABLE_NAMES = ("instances", "frames")
COMMITS = "_commits"
MANIFESTS = "_manifests"
MANIFEST_POINTER = "_manifest.json"
LEASES = "_leases"
JOB_FILE = "_job.json"
SUCCESS_FILE = "_SUCCESS"
DRIVER_FILE = "_driver.json"
TRACKS_DIR = "tracks"
RETRACKS_DIR = "retracks"
JOB_FILES = (SUCCESS_FILE, DRIVER_FILE, JOB_FILE)  # maskray's own files at OUT's root
_COMPACTED = "compacted-"


class DamagedOutputError(MaskrayError, ValueError):
    """A file maskray wrote cannot be parsed (truncated, edited): its message names the file."""


def part_name(table: str, shard_id: str, attempt: str) -> str:
    """A part's path relative to OUT, unique to one attempt of one shard."""
    return f"{table}/{shard_id}.{attempt}.parquet"


def compacted_part_name(table: str, generation: int, index: int) -> str:
    """A merged part's path relative to OUT: `maskray compact` writes it for manifest `generation`."""
    return f"{table}/{_COMPACTED}{generation:08d}-{index:05d}.parquet"


def is_compacted_part(relative: str) -> bool:
    return relative.rsplit("/", 1)[-1].startswith(_COMPACTED)


def manifest_name(generation: int) -> str:
    """A manifest's path relative to OUT (generations only grow, so names are never reused)."""
    return f"{MANIFESTS}/{generation:010d}.parquet"


def manifest_pointer_uri(output: str) -> str:
    return storage.join(output, MANIFEST_POINTER)


def relative_uri(output: str, relative: str) -> str:
    return storage.join(output, relative)


def commit_uri(output: str, shard_id: str) -> str:
    return storage.join(output, COMMITS, f"{shard_id}.json")


def commits_uri(output: str) -> str:
    return storage.join(output, COMMITS)


def leases_uri(output: str) -> str:
    return storage.join(output, LEASES)


def lease_uri(output: str, owner: str) -> str:
    return storage.join(output, LEASES, f"{owner}.json")


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


def retrack_dir_name(generation: int) -> str:
    """A retrack generation's folder relative to OUT (generations only grow: never reused)."""
    return f"{RETRACKS_DIR}/{generation:06d}"


def is_retrack_dir_name(relative: str) -> bool:
    head, _, number = str(relative).partition("/")
    return head == RETRACKS_DIR and len(number) == 6 and number.isdigit()


def is_commit_file(uri: str) -> bool:
    name = uri.rsplit("/", 1)[-1]
    return name.endswith(".json") and not name.startswith(".")


def dumps(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()


def parse_json(data: bytes, uri: str) -> dict:
    """The JSON object in `data`, or DamagedOutputError naming `uri`."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise DamagedOutputError(f"damaged maskray file {uri}: {str(error).splitlines()[0]}") from None
    if not isinstance(value, dict):
        raise DamagedOutputError(f"damaged maskray file {uri}: not a JSON object")
    return value


@dataclass
class CommitRecord:
    """`_commits/<shard>.json`: one committed shard (or bisected piece of a planned shard).

    `files` maps a table to `{"path": relative to OUT, "bytes": n, "rows": n, "sha256": hex}`
    (rows and checksum of the file as written; records of an older maskray lack them); readers
    read these files only. `planned` is the id of the planned shard this covers and `piece` its position in
    the bisection ("" for a whole shard, "0"/"1" for halves, "01" for a half of the first half).
    `transient_errors` counts error rows whose cause may go away (a resume redoes the shard).
    """

    shard: str
    job_id: str
    attempt: int
    frames: int
    errors: int
    instances: int
    files: dict
    rows: dict = field(default_factory=dict)
    frames_ok: int = 0
    transient_errors: int = 0
    planned: str = ""
    piece: str = ""
    owner: str = ""
    tracks: Optional[dict] = None  # a tracked video segment's summary, for stitching
    worker: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    committed_at: float = 0.0

    def __post_init__(self):
        self.planned = self.planned or self.shard

    def paths(self) -> dict[str, str]:
        """`{table: path relative to OUT}` of this commit's parts."""
        return {table: str(self.files[table]["path"]) for table in TABLE_NAMES if table in self.files}

    def to_json(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes, uri: str = "commit record") -> "CommitRecord":
        raw = parse_json(data, uri)
        known = {f.name for f in fields(cls)}
        try:
            record = cls(**{key: value for key, value in raw.items() if key in known})
            record.paths()
            int(record.frames), int(record.errors), int(record.instances)
        except (TypeError, KeyError, ValueError) as error:
            raise DamagedOutputError(f"damaged maskray file {uri}: {error}") from None
        return record


def covered_shards(records) -> set[str]:
    """Planned shard ids whose work is fully committed: the whole shard, or bisected pieces
    that tile it (piece paths form a complete binary prefix code: their 2^-depth sum to 1)."""
    tiles: dict[str, Fraction] = {}
    for record in records:
        share = Fraction(1, 2 ** len(record.piece))
        tiles[record.planned] = tiles.get(record.planned, Fraction(0)) + share
    return {planned for planned, total in tiles.items() if total == 1}


@dataclass
class LeaseRecord:
    """`_leases/<owner>.json`: a driver's claim on OUT, renewed by its heartbeat.

    Times are the holder's wall clock; readers judge expiry with a skew margin (lease.py).
    """

    owner: str
    host: str
    pid: int
    acquired: float
    renewed: float
    ttl_s: float
    job_id: str = ""
    command: str = "submit"  # what holds OUT: a job's driver, or `compact`

    def silent_s(self, now: Optional[float] = None) -> float:
        """Seconds since the last renewal by our clock (never negative: the holder's clock
        may run ahead of ours)."""
        return max(0.0, (time.time() if now is None else now) - self.renewed)

    def to_json(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes, uri: str = "lease") -> "LeaseRecord":
        raw = parse_json(data, uri)
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{key: value for key, value in raw.items() if key in known})
        except TypeError as error:
            raise DamagedOutputError(f"damaged maskray file {uri}: {error}") from None
