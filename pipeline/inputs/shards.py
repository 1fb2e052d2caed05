"""Shards: the unit of scheduling, retry and commit (a group of images, or a video segment).

A shard is a small description, never a list of frames or pts: a video segment names its
frame range `[start_frame, end_frame)`, the job's sampling and the key of the video's index
cached in `OUT/_index/`, and the worker reads that index to find the segment's frames and
pts (`shard_frames.py`). So a job of any length plans into descriptions of a few hundred
bytes each.

Planning never fails on a bad input: a file that is empty, unrecognised, unnamed (not
UTF-8), or a video whose index cannot be built (also after retries of a store that did not
answer: the message then starts "transient: ") becomes a shard of its own with
`planning_error` set; the worker writes one error row (frame 0) for each of its URIs.

What needs no reading is planned at once (`split_listing`: image groups, error shards);
what needs a file's headers is planned where the file is read, as cluster work
(`plan_video`, `count_pages`; `plan_stream.py` runs them). An image file of a format that
may hold several frames (GIF, TIFF) is counted first: several frames make a shard of kind
"pages" (frames 0..n-1); single ones are grouped like other images, in groups of their own.

Shard ids are stable and filesystem-safe, so a re-run of the same job finds the shards it
already committed: `img-<sha1 of the group's URIs, 10 hex>-<group number>` (`-t<number>`
for groups of single-frame GIF/TIFF files), `vid-<sha1 of the URI, 10 hex>-f<start
frame>-<end frame>` (frame numbers in the id, so a different cut of the same video never
reuses an id), `img-<sha1 of the URI>-pages`.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from dataclasses import asdict, dataclass
from typing import Optional, Union

import numpy as np

from maskray.pipeline import storage
from maskray.pipeline.inputs.container_index import index_video
from maskray.pipeline.inputs.errors import DecodeError, error_text, missing_is_transient, read_problem
from maskray.pipeline.inputs.frame_index import FrameIndex
from maskray.pipeline.inputs.images import count_frames
from maskray.pipeline.inputs.listing import MediaFile
from maskray.pipeline.inputs.sampling import Sampling, sampled_positions, segment_bounds

SHARDS_PER_WORKER = 4  # enough pieces that a slow shard does not leave other workers idle
MIN_SEGMENT_SECONDS = 2.0  # below this, per-shard overhead (seek, parquet parts) dominates
# Whatever the job size, a shard holds at most about this much video: a worker buffers a
# shard's rows until its commit, so this bounds its memory and the work a retry repeats.
MAX_SEGMENT_SECONDS = 60.0
PAGED_EXTENSIONS = frozenset({".gif", ".tif", ".tiff"})  # formats often holding several frames
PAGE_COUNT_BUFFER_BYTES = 64 << 20  # a GIF/TIFF up to this size is counted from memory


@dataclass(frozen=True)
class Shard:
    """One unit of work.

    kind "images": `uris` are images, one frame each (frame 0, time None).
    kind "pages": `uris` is one image file of several frames; frames `[start_frame, end_frame)`.
    kind "video": `uris` is one video; the segment is frames `[start_frame, end_frame)`, of
    which those `sampling` keeps are processed; `index_key` names the video's index in
    `OUT/_index/` (None: the source's version cannot be told, the worker indexes it again).
    `expected_frames` is the number of `frames` rows the worker will write.
    `planning_error`, when set, is the message of the error row(s) to write instead of
    decoding. `lookahead`: the next segment's first sampled frames (a few), decoded and
    tracked (to stitch tracks across the cut) but not written.
    """

    id: str
    kind: str
    uris: tuple[str, ...]
    start_frame: int = 0
    end_frame: int = 0
    expected_frames: int = 0
    planning_error: Optional[str] = None
    index_key: Optional[str] = None
    sampling: Sampling = Sampling()
    lookahead: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        data = asdict(self)
        data["uris"], data["lookahead"] = list(self.uris), list(self.lookahead)
        data["sampling"] = self.sampling.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Shard":
        values = dict(data)
        values["uris"], values["lookahead"] = tuple(values["uris"]), tuple(values.get("lookahead", ()))
        values["sampling"] = Sampling.from_dict(values.get("sampling") or {})
        return cls(**values)


@dataclass(frozen=True)
class PlanSettings:
    """What cutting needs besides the file itself; small, so each planning task carries it.

    `video_bytes`: the listed videos' total size. Without `segment_seconds` a video is cut
    into its share (by bytes) of SHARDS_PER_WORKER shards per worker, so each video's cut is
    known from the listing and its own index alone: it can be planned, and run, before the
    other videos are indexed, and a resume cuts it the same way.
    """

    sampling: Sampling = Sampling()
    segment_seconds: Optional[float] = None
    workers: int = 1
    video_bytes: int = 0
    lookahead: int = 0
    images_per_shard: int = 64
    output: Optional[str] = None  # where indexes are cached (OUT); None: not cached

    def seconds_for(self, duration: float, size: int) -> float:
        seconds = self.segment_seconds
        if seconds is None:
            share = size / self.video_bytes if self.video_bytes > 0 and size > 0 else 1.0
            job_seconds = duration / min(1.0, share)  # the job's video time, if all are alike
            seconds = max(MIN_SEGMENT_SECONDS, job_seconds / (SHARDS_PER_WORKER * max(1, self.workers)))
        return min(seconds, MAX_SEGMENT_SECONDS)


@dataclass
class Listing:
    """The listing sorted for planning: `ready` shards need no reading; `videos` and `paged`
    files are planned by reading their headers."""

    ready: list[Shard]
    videos: list[MediaFile]
    paged: list[MediaFile]


def split_listing(media: list[MediaFile], images_per_shard: int = 64) -> Listing:
    ready_errors: list[Shard] = []
    images: list[str] = []
    videos: list[MediaFile] = []
    paged: list[MediaFile] = []
    for item in media:
        problem = _cheap_problem(item)
        if problem:
            ready_errors.append(error_shard(item, problem))
        elif item.kind == "video":
            videos.append(item)
        elif posixpath.splitext(item.uri)[1].lower() in PAGED_EXTENSIONS:
            paged.append(item)
        else:
            images.append(item.uri)
    return Listing(image_shards(images, images_per_shard) + ready_errors, videos, paged)


def video_bytes(media: list[MediaFile]) -> int:
    return sum(item.size for item in media if item.kind == "video" and not _cheap_problem(item))


def plan_video(item: MediaFile, settings: PlanSettings) -> list[Shard]:
    """The shards of one video (runs where the video is read: a planning task): its index
    (cached under `settings.output`), cut into segments; one error shard if it has none."""
    try:
        index, report = storage.retrying(index_video, item.uri, settings.output)
    except DecodeError as error:
        return [error_shard(item, error_text(str(error), error.transient))]
    except OSError as error:  # the store failed mid-read (PyAV re-raises the stream's error)
        message = error_text(f"cannot read video: {read_problem(error)}", missing_is_transient(error))
        return [error_shard(item, message)]
    return cut_video(item.uri, index, report.key, settings, item.size)


def cut_video(uri: str, index: FrameIndex, key: Optional[str], settings: PlanSettings, size: int = 0) -> list[Shard]:
    """Segments of a video (only those holding a sampled frame), each but the last with the
    next one's first `settings.lookahead` sampled frames."""
    times = index.times()
    sampled = sampled_positions(times, 0, index.keyframes, settings.sampling)
    seconds = settings.seconds_for(index.duration, size)
    shards = []
    for start, end in segment_bounds(times, 0, index.keyframes, index.duration, seconds):
        first, last = np.searchsorted(sampled, [start, end])
        if first == last:
            continue  # nothing sampled here (sparse --fps): no work, no shard
        ahead = tuple(int(f) for f in sampled[last:last + settings.lookahead])
        shards.append(Shard(id=f"vid-{_digest(uri)}-f{start:06d}-{end:06d}", kind="video", uris=(uri,),
                            start_frame=start, end_frame=end, expected_frames=int(last - first),
                            index_key=key, sampling=settings.sampling, lookahead=ahead))
    return shards


def count_pages(uris: list[str]) -> list[Union[int, str]]:
    """Frames in each image file, or the message of the error row of a file whose count
    cannot be told (never a guess: a guessed 1 would silently drop pages)."""
    return [_page_count(uri) for uri in uris]


def paged_shards(counts: dict[str, Union[int, str]], per_shard: int = 64) -> list[Shard]:
    """Shards of the counted GIF/TIFF files: one per file of several frames, single-frame
    files grouped (in URI order, so the groups and their ids are stable), an error shard
    for each file that could not be counted."""
    shards = [pages_shard(uri, count) for uri, count in sorted(counts.items()) if _is_count(count) and count > 1]
    errors = [error_shard(MediaFile(uri, "image", 0), count) for uri, count in sorted(counts.items())
              if not _is_count(count)]
    single = sorted(uri for uri, count in counts.items() if _is_count(count) and count <= 1)
    return image_shards(single, per_shard, tag="t") + shards + errors


def _is_count(count) -> bool:
    return isinstance(count, int) and not isinstance(count, bool)


def _page_count(uri: str) -> Union[int, str]:
    try:
        return storage.retrying(_count_file, uri)
    except DecodeError as error:
        return error_text(str(error), error.transient)
    except Exception as error:  # noqa: BLE001 - any failure is this file's error row, never the job's
        return error_text(f"cannot count the frames: {read_problem(error)}", missing_is_transient(error))


def _count_file(uri: str) -> int:
    """Pillow reads a small file from memory (a buffer it fully supports); a large one from
    the store in ranges, through its own format's plugin only (see `images.count_frames`)."""
    with storage.open_input(uri) as stream:
        size = int(stream.size())
        if size <= PAGE_COUNT_BUFFER_BYTES:
            data = stream.read()
            return count_frames(io.BytesIO(data), data[:16])
        head = stream.read(16)
        stream.seek(0)
        return count_frames(stream, head)


def pages_shard(uri: str, count: int) -> Shard:
    return Shard(id=f"img-{_digest(uri)}-pages", kind="pages", uris=(uri,), start_frame=0, end_frame=count,
                 expected_frames=count)


def _cheap_problem(item: MediaFile) -> Optional[str]:
    if item.problem:
        return item.problem
    if item.size == 0:
        return "empty file (0 bytes)"
    if item.kind == "unknown":
        return "not an image or video (unrecognised content)"
    return None


def error_shard(item: MediaFile, message: str) -> Shard:
    kind = "video" if item.kind == "video" else "images"
    prefix = "vid" if kind == "video" else "img"
    return Shard(id=f"{prefix}-{_digest(item.uri)}-error", kind=kind, uris=(item.uri,),
                 end_frame=1, expected_frames=1, planning_error=message)


def image_shards(uris: list[str], per_shard: int = 64, tag: str = "") -> list[Shard]:
    per_shard = max(1, per_shard)
    shards = []
    for number, first in enumerate(range(0, len(uris), per_shard)):
        group = tuple(uris[first:first + per_shard])
        shards.append(Shard(id=f"img-{_digest(*group)}-{tag}{number:05d}", kind="images", uris=group,
                            start_frame=0, end_frame=1, expected_frames=len(group)))
    return shards


def _digest(*uris: str) -> str:
    return hashlib.sha1("\n".join(uris).encode("utf-8")).hexdigest()[:10]
