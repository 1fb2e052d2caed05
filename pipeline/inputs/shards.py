"""Shards: the unit of scheduling, retry and commit (a group of images, or a video segment).

Planning never fails on a bad input: a file that is empty, unrecognised, unnamed (not
UTF-8), or a video whose index cannot be built (also after retries of a store that did not
answer: the message then starts "transient: ") becomes a shard of its own with
`planning_error` set; the worker writes one error row (frame 0) for each of its URIs.

An image file holding several frames (animated GIF, multi-page TIFF: counted here, by
extension, reading headers) is a shard of its own, kind "pages", frames 0..n-1.

Shard ids are stable and filesystem-safe, so a re-run of the same job finds the shards it
already committed: `img-<sha1 of the group's URIs, 10 hex>-<group number>` and
`vid-<sha1 of the URI, 10 hex>-f<start frame>-<end frame>` (frame numbers in the id, so a
different cut of the same video never reuses an id), `img-<sha1 of the URI>-pages`.
"""

from __future__ import annotations

import hashlib
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Union

from maskray.models.errors import first_line
from maskray.pipeline import storage
from maskray.pipeline.inputs.container_index import index_video
from maskray.pipeline.inputs.errors import DecodeError, error_text
from maskray.pipeline.inputs.frame_index import FrameIndex
from maskray.pipeline.inputs.images import count_frames
from maskray.pipeline.inputs.sampling import Sampling, plan_segments, sampled_frames
from maskray.pipeline.inputs.listing import MediaFile
from maskray.pipeline.inputs.video import VideoIndex

SHARDS_PER_WORKER = 4  # enough pieces that a slow shard does not leave other workers idle
MIN_SEGMENT_SECONDS = 2.0  # below this, per-shard overhead (seek, parquet parts) dominates
# Whatever the job size, a shard holds at most about this much video: a worker buffers a
# shard's rows until its commit, so this bounds its memory and the work a retry repeats.
MAX_SEGMENT_SECONDS = 60.0
INDEX_THREADS = 8
PAGED_EXTENSIONS = frozenset({".gif", ".tif", ".tiff"})  # formats often holding several frames

# Index the given videos, in order: each a FrameIndex or the message saying why it has none.
VideoIndexer = Callable[[list[MediaFile]], list[Union[FrameIndex, str]]]


@dataclass(frozen=True)
class Shard:
    """One unit of work.

    kind "images": `uris` are images, one frame each (frame 0, time None); `frames` is empty.
    kind "pages": `uris` is one image file of several frames; `frames` are 0..n-1.
    kind "video": `uris` is one video; frames `[start_frame, end_frame)` form its segment,
    `frames` are the sampled frame numbers to process, `index` the window of the video
    index the segment needs (`video_index()`). `expected_frames` is the number of `frames`
    rows the worker will write. `planning_error`, when set, is the message of the error
    row(s) to write instead of decoding. `lookahead`: the next segment's first sampled frames,
    decoded and tracked (to stitch tracks across the cut) but not written.
    """

    id: str
    kind: str
    uris: tuple[str, ...]
    start_frame: int = 0
    end_frame: int = 0
    frames: tuple[int, ...] = ()
    expected_frames: int = 0
    planning_error: Optional[str] = None
    index: Optional[dict] = field(default=None, hash=False)  # a dict: kept out of hash()
    lookahead: tuple[int, ...] = ()

    def video_index(self) -> VideoIndex:
        return VideoIndex.from_dict(self.index)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["uris"], data["frames"] = list(self.uris), list(self.frames)
        data["lookahead"] = list(self.lookahead)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Shard":
        values = dict(data)
        values["uris"], values["frames"] = tuple(values["uris"]), tuple(values.get("frames", ()))
        values["lookahead"] = tuple(values.get("lookahead", ()))
        return cls(**values)


def plan_shards(media: list[MediaFile], sampling: Sampling, segment_seconds: Optional[float],
                workers: int, images_per_shard: int = 64, lookahead: int = 0,
                index_videos: Optional[VideoIndexer] = None) -> list[Shard]:
    """Cut the listed media into shards: image groups, bad inputs, then video segments; stable order.

    Without `segment_seconds`, videos are cut so the whole job gives about
    SHARDS_PER_WORKER shards per worker (never segments under MIN_SEGMENT_SECONDS, and
    never shorter than a keyframe interval since cuts fall on keyframes only). Either way
    a segment is at most MAX_SEGMENT_SECONDS long (longer ones are cut at keyframes). Each
    video segment but the last also gets the next one's first `lookahead` sampled frames.

    `index_videos` builds the videos' indexes (the driver passes one that runs them as
    cluster tasks); by default threads here read each container's own index, or demux.
    """
    error_shards: list[Shard] = []
    images: list[str] = []
    video_files: list[MediaFile] = []
    for item in media:
        problem = _cheap_problem(item)
        if problem:
            error_shards.append(_error_shard(item, problem))
        elif item.kind == "image":
            images.append(item.uri)
        else:
            video_files.append(item)
    videos: list[tuple[str, VideoIndex]] = []
    indexes = (index_videos or _index_in_threads)(video_files)
    for item, index_or_error in zip(video_files, indexes):
        if isinstance(index_or_error, FrameIndex):
            videos.append((item.uri, index_or_error.to_video_index()))
        else:
            error_shards.append(_error_shard(item, index_or_error))
    paged = [uri for uri in images if posixpath.splitext(uri)[1].lower() in PAGED_EXTENSIONS]
    pages = {uri: count for uri, count in zip(paged, _in_threads(_page_count, paged)) if count > 1}
    single = [uri for uri in images if uri not in pages]
    shards = _image_shards(single, max(1, images_per_shard)) + error_shards
    shards.extend(_pages_shard(uri, count) for uri, count in pages.items())
    if segment_seconds is None:
        segment_seconds = _default_segment_seconds([index for _, index in videos], workers)
    segment_seconds = min(segment_seconds, MAX_SEGMENT_SECONDS)
    for uri, index in videos:
        shards.extend(_video_shards(uri, index, sampling, segment_seconds, lookahead))
    return shards


def _in_threads(function, items: list) -> list:
    """`[function(item) ...]` on a few threads: planning reads are mostly IO waits."""
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(INDEX_THREADS, len(items))) as pool:
        return list(pool.map(function, items))


def index_or_error(uri: str, output: Optional[str] = None) -> Union[FrameIndex, str]:
    """The video's index (cached under `output` when given), or the message saying why it
    has none (transient failures retried)."""
    try:
        return storage.retrying(index_video, uri, output)[0]
    except DecodeError as error:
        return error_text(str(error), error.transient)
    except OSError as error:  # the store failed mid-read (PyAV re-raises the stream's error)
        return error_text(f"cannot read video: {first_line(error)}", storage.is_transient(error))


def _index_in_threads(videos: list[MediaFile]) -> list:
    return _in_threads(index_or_error, [item.uri for item in videos])


def _page_count(uri: str) -> int:
    """Frames in an image file; 1 when it cannot be read here (the worker then reads it and
    records what is wrong)."""
    try:
        with storage.open_input(uri) as stream:
            return count_frames(stream)
    except Exception:  # noqa: BLE001 - a broken file is the worker's to report, as an error row
        return 1


def _pages_shard(uri: str, count: int) -> Shard:
    return Shard(id=f"img-{_digest(uri)}-pages", kind="pages", uris=(uri,), start_frame=0, end_frame=count,
                 frames=tuple(range(count)), expected_frames=count)


def _cheap_problem(item: MediaFile) -> Optional[str]:
    if item.problem:
        return item.problem
    if item.size == 0:
        return "empty file (0 bytes)"
    if item.kind == "unknown":
        return "not an image or video (unrecognised content)"
    return None


def _error_shard(item: MediaFile, message: str) -> Shard:
    kind = "video" if item.kind == "video" else "images"
    prefix = "vid" if kind == "video" else "img"
    return Shard(id=f"{prefix}-{_digest(item.uri)}-error", kind=kind, uris=(item.uri,),
                 end_frame=1, expected_frames=1, planning_error=message)


def _image_shards(uris: list[str], per_shard: int) -> list[Shard]:
    shards = []
    for number, first in enumerate(range(0, len(uris), per_shard)):
        group = tuple(uris[first:first + per_shard])
        shards.append(Shard(id=f"img-{_digest(*group)}-{number:05d}", kind="images", uris=group,
                            start_frame=0, end_frame=1, expected_frames=len(group)))
    return shards


def _video_shards(uri: str, index: VideoIndex, sampling: Sampling, segment_seconds: float,
                  lookahead: int = 0) -> list[Shard]:
    sampled = sampled_frames(index, sampling)
    shards = []
    for start, end in plan_segments(index, segment_seconds):
        frames = tuple(f for f in sampled if start <= f < end)
        if not frames:
            continue  # nothing sampled here (sparse --fps): no work, no shard
        ahead = tuple(f for f in sampled if f >= end)[:lookahead]
        # The lookahead is decoded straight on from the segment's end: no second seek.
        window_end = ahead[-1] + 1 if ahead else end
        shards.append(Shard(id=f"vid-{_digest(uri)}-f{start:06d}-{end:06d}", kind="video", uris=(uri,),
                            start_frame=start, end_frame=end, frames=frames, expected_frames=len(frames),
                            index=index.window(start, window_end).to_dict(), lookahead=ahead))
    return shards


def _default_segment_seconds(indexes: list[VideoIndex], workers: int) -> float:
    total = sum(index.duration for index in indexes)
    return max(MIN_SEGMENT_SECONDS, total / (SHARDS_PER_WORKER * max(1, workers)))


def _digest(*uris: str) -> str:
    return hashlib.sha1("\n".join(uris).encode("utf-8")).hexdigest()[:10]
