"""Shards: the unit of scheduling, retry and commit (a group of images, or a video segment).

Planning never fails on a bad input: a file that is empty, unrecognised, or a video whose
index cannot be built becomes a shard of its own with `planning_error` set; the worker
writes one error row (frame 0) for each of its URIs instead of decoding.

Shard ids are stable and filesystem-safe, so a re-run of the same job finds the shards it
already committed: `img-<sha1 of the group's URIs, 10 hex>-<group number>` and
`vid-<sha1 of the URI, 10 hex>-f<start frame>-<end frame>` (frame numbers in the id, so a
different cut of the same video never reuses an id).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Optional

from maskray.pipeline.inputs.errors import DecodeError
from maskray.pipeline.inputs.sampling import Sampling, plan_segments, sampled_frames
from maskray.pipeline.inputs.listing import MediaFile
from maskray.pipeline.inputs.video import VideoIndex, build_index

SHARDS_PER_WORKER = 4  # enough pieces that a slow shard does not leave other workers idle
MIN_SEGMENT_SECONDS = 2.0
INDEX_THREADS = 8  # below this, per-shard overhead (seek, parquet parts) dominates


@dataclass(frozen=True)
class Shard:
    """One unit of work.

    kind "images": `uris` are images, one frame each (frame 0, time None); `frames` is empty.
    kind "video": `uris` is one video; frames `[start_frame, end_frame)` form its segment,
    `frames` are the sampled frame numbers to process, `index` the window of the video
    index the segment needs (`video_index()`). `expected_frames` is the number of `frames`
    rows the worker will write. `planning_error`, when set, is the message of the error
    row(s) to write instead of decoding.
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

    def video_index(self) -> VideoIndex:
        return VideoIndex.from_dict(self.index)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["uris"], data["frames"] = list(self.uris), list(self.frames)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Shard":
        values = dict(data)
        values["uris"], values["frames"] = tuple(values["uris"]), tuple(values.get("frames", ()))
        return cls(**values)


def plan_shards(media: list[MediaFile], sampling: Sampling, segment_seconds: Optional[float],
                workers: int, images_per_shard: int = 64) -> list[Shard]:
    """Cut the listed media into shards: image groups, bad inputs, then video segments; stable order.

    Without `segment_seconds`, videos are cut so the whole job gives about
    SHARDS_PER_WORKER shards per worker (never segments under MIN_SEGMENT_SECONDS, and
    never shorter than a keyframe interval since cuts fall on keyframes only).
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
    for item, index_or_error in zip(video_files, _build_indexes(video_files)):
        if isinstance(index_or_error, VideoIndex):
            videos.append((item.uri, index_or_error))
        else:
            error_shards.append(_error_shard(item, index_or_error))
    shards = _image_shards(images, max(1, images_per_shard)) + error_shards
    if segment_seconds is None:
        segment_seconds = _default_segment_seconds([index for _, index in videos], workers)
    for uri, index in videos:
        shards.extend(_video_shards(uri, index, sampling, segment_seconds))
    return shards


def _build_indexes(videos: list[MediaFile]) -> list:
    """Each video's index, or the message saying why it has none (threads: mostly IO waits)."""

    def index_or_error(item: MediaFile):
        try:
            return build_index(item.uri)
        except DecodeError as error:
            return str(error)

    if len(videos) <= 1:
        return [index_or_error(item) for item in videos]
    with ThreadPoolExecutor(max_workers=min(INDEX_THREADS, len(videos))) as pool:
        return list(pool.map(index_or_error, videos))


def _cheap_problem(item: MediaFile) -> Optional[str]:
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


def _video_shards(uri: str, index: VideoIndex, sampling: Sampling, segment_seconds: float) -> list[Shard]:
    sampled = sampled_frames(index, sampling)
    shards = []
    for start, end in plan_segments(index, segment_seconds):
        frames = tuple(f for f in sampled if start <= f < end)
        if not frames:
            continue  # nothing sampled here (sparse --fps): no work, no shard
        shards.append(Shard(id=f"vid-{_digest(uri)}-f{start:06d}-{end:06d}", kind="video", uris=(uri,),
                            start_frame=start, end_frame=end, frames=frames, expected_frames=len(frames),
                            index=index.window(start, end).to_dict()))
    return shards


def _default_segment_seconds(indexes: list[VideoIndex], workers: int) -> float:
    total = sum(index.duration for index in indexes)
    return max(MIN_SEGMENT_SECONDS, total / (SHARDS_PER_WORKER * max(1, workers)))


def _digest(*uris: str) -> str:
    return hashlib.sha1("\n".join(uris).encode("utf-8")).hexdigest()[:10]


def shard_frame_count(shard: Shard) -> int:
    """How many `frames` rows the shard will produce (for progress and totals)."""
    return shard.expected_frames
