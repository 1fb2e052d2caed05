"""Planning as a stream: a job's shards become known file by file, and run as they do.

`ShardStream` hands out what needs no reading at once (image groups, bad inputs), and each
video's segments as soon as that video's index arrives. Reading headers is the work of a
`Runner`: Ray tasks on the cluster in a job (`execution/planning_tasks.py`), threads here for
tools and tests (`ThreadRunner`). At most `runner.max_in_flight` files are being read at
once, so a listing of millions of files never floods the runner; a video is one piece of
work, GIF/TIFF files are counted in batches.

`plan_shards` collects a whole plan (threads), in a stable order, for callers that need it
all at once.
"""

from __future__ import annotations

from collections import deque
from concurrent import futures
from typing import Optional, Protocol

from maskray.pipeline.inputs.container_index import cached_index
from maskray.pipeline.inputs.listing import MediaFile
from maskray.pipeline.inputs.sampling import Sampling
from maskray.pipeline.inputs.shards import (
    PlanSettings, Shard, count_pages, cut_video, error_shard, paged_shards, plan_video, split_listing, video_bytes,
)

PAGES_PER_TASK = 64  # GIF/TIFF files counted by one piece of work
THREADS = 8          # planning reads are mostly IO waits


class Runner(Protocol):
    max_in_flight: int

    def submit(self, function, *args): ...

    def wait(self, handles: list, timeout: float) -> list: ...

    def result(self, handle): ...


class ThreadRunner:
    """Planning work on threads of this process."""

    def __init__(self, threads: int = THREADS):
        self.max_in_flight = 2 * threads
        self._pool = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="maskray-plan")

    def submit(self, function, *args):
        return self._pool.submit(function, *args)

    def wait(self, handles: list, timeout: float) -> list:
        done, _ = futures.wait(handles, timeout=timeout, return_when=futures.FIRST_COMPLETED)
        return list(done)

    def result(self, handle):
        return handle.result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class ShardStream:
    """The shards of `media`, as they become known; `done` once every file is planned."""

    def __init__(self, media: list[MediaFile], settings: PlanSettings, runner: Runner):
        listing = split_listing(media, settings.images_per_shard)
        self.settings, self.runner = settings, runner
        self._ready: deque = deque(listing.ready)
        self._work: deque = deque((plan_video, item) for item in listing.videos)
        for first in range(0, len(listing.paged), PAGES_PER_TASK):
            batch = [item.uri for item in listing.paged[first:first + PAGES_PER_TASK]]
            self._work.append((count_pages, batch))
        self._has_paged = bool(listing.paged)
        self._page_counts: dict[str, int] = {}
        self._in_flight: dict = {}  # handle -> (function, argument)
        self.files_to_read = len(listing.videos) + len(listing.paged)

    @property
    def done(self) -> bool:
        return not (self._ready or self._work or self._in_flight)

    def poll(self, timeout: float = 0.0) -> list[Shard]:
        """Shards that became known since the last call (waits up to `timeout` for one)."""
        self._submit()
        if self._in_flight and not self._ready:
            for handle in self.runner.wait(list(self._in_flight), timeout):
                self._receive(handle)
            self._submit()
        if not self._in_flight and not self._work and self._has_paged:
            self._has_paged = False  # every GIF/TIFF counted: their shards, grouped
            self._ready.extend(paged_shards(self._page_counts, self.settings.images_per_shard))
        shards = list(self._ready)
        self._ready.clear()
        return shards

    def _submit(self) -> None:
        while self._work and len(self._in_flight) < self.runner.max_in_flight:
            function, argument = self._work.popleft()
            self._in_flight[self.runner.submit(function, argument, *self._extra(function))] = (function, argument)

    def _extra(self, function) -> tuple:
        return (self.settings,) if function is plan_video else ()

    def _receive(self, handle) -> None:
        function, argument = self._in_flight.pop(handle)
        try:
            result = self.runner.result(handle)
        except Exception as error:  # noqa: BLE001 - the task itself died (a decoder crash): its input fails
            result = _failed(function, argument, error)
        if function is plan_video:
            self._ready.extend(result)
        else:
            self._page_counts.update(zip(argument, result))


def _failed(function, argument, error: BaseException):
    """What a piece of planning work that crashed gives: the video's error shard, or for
    each file of a batch being counted the message of its error row (never a guessed count)."""
    if function is plan_video:
        return [error_shard(argument, f"cannot index video: {_last_line(error)}")]
    return [f"cannot count the frames: {_last_line(error)}"] * len(argument)


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:200]


def plan_from_cache(media: list[MediaFile], settings: PlanSettings) -> Optional[list[Shard]]:
    """The whole plan from indexes cached under `settings.output`, reading no media; None
    when something needs reading (a video not indexed yet, GIF/TIFF files to count)."""
    listing = split_listing(media, settings.images_per_shard)
    if listing.paged or settings.output is None:
        return None

    def cut(item: MediaFile):
        found = cached_index(item.uri, settings.output)
        return None if found is None else cut_video(item.uri, found[0], found[1], settings, item.size)

    with futures.ThreadPoolExecutor(max_workers=THREADS) as pool:
        videos = list(pool.map(cut, listing.videos))
    if any(shards is None for shards in videos):
        return None
    return listing.ready + [shard for shards in videos for shard in shards]


def plan_settings(media: list[MediaFile], sampling: Sampling, segment_seconds: Optional[float], workers: int,
                  images_per_shard: int = 64, lookahead: int = 0, output: Optional[str] = None) -> PlanSettings:
    return PlanSettings(sampling=sampling, segment_seconds=segment_seconds, workers=int(workers),
                        video_bytes=video_bytes(media), lookahead=lookahead,
                        images_per_shard=images_per_shard, output=output)


def plan_shards(media: list[MediaFile], sampling: Sampling, segment_seconds: Optional[float],
                workers: int, images_per_shard: int = 64, lookahead: int = 0,
                output: Optional[str] = None) -> list[Shard]:
    """Every shard of `media` (read on threads here): image groups and inputs known to be
    bad first, then what reading found, each file's shards in listing order."""
    settings = plan_settings(media, sampling, segment_seconds, workers, images_per_shard, lookahead, output)
    runner = ThreadRunner()
    try:
        stream = ShardStream(media, settings, runner)
        shards: list[Shard] = []
        while True:
            shards.extend(stream.poll(timeout=1.0))
            if stream.done:
                break
    finally:
        runner.close()
    position = {item.uri: number for number, item in enumerate(media)}
    ready = len(split_listing(media, images_per_shard).ready)
    return shards[:ready] + sorted(shards[ready:], key=lambda s: (position.get(s.uris[0], -1), s.start_frame))
