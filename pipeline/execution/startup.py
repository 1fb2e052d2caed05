"""A job's first seconds: Ray comes up while the sources are listed.

Starting Ray takes seconds (its GCS, raylet and agents), and so does listing a big source
(2.5 s for 100,000 local files, longer on an object store). A new job always needs Ray, so
its start is not made to wait for the listing: the listing runs on a thread while `connect()`
starts Ray on the main thread (Ray sets its SIGTERM handler only there).

Mistakes still fail in a second, before Ray is touched: a missing source, an unsupported URI,
an output under a file. Only a source that exists but holds no media is found after Ray
started (Ray is then stopped again by the caller). A job resuming in OUT lists first, as
before: with every shard committed it needs no Ray at all.
"""

from __future__ import annotations

import os
import threading
from concurrent import futures
from typing import Callable

from maskray.pipeline import storage
from maskray.pipeline.inputs.listing import MediaFile, check_sources, list_media
from maskray.pipeline.output import layout


class Once:
    """`function` called at most once, however many times this is (Ray's start-up)."""

    def __init__(self, function: Callable[[], None]):
        self._function, self._lock, self.called = function, threading.Lock(), False

    def __call__(self) -> None:
        with self._lock:
            if not self.called:
                self._function()
                self.called = True


def list_sources(spec, connect: Once, overwrite: bool) -> list[MediaFile]:
    """`spec`'s media files; for a new job, Ray is started (`connect`) meanwhile."""
    if not is_new_job(spec.output, overwrite):
        return list_media(spec.sources, output=spec.output)
    check_sources(spec.sources)
    with futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="maskray-listing") as pool:
        listing = pool.submit(list_media, spec.sources, output=spec.output)
        try:
            connect()
        except BaseException:
            listing.cancel()
            raise
        return listing.result()


def is_new_job(output: str, overwrite: bool) -> bool:
    """True when OUT holds no job to resume (or `--overwrite` replaces it) and looks writable:
    such a job certainly needs Ray. Anything unclear is False (list first, as a resume does)."""
    try:
        if not overwrite and storage.exists(layout.job_uri(output)):
            return False
    except Exception:  # noqa: BLE001 - the lease step reports what is wrong with OUT
        return False
    return _writable_local_parent(output) if storage.is_local(output) else True


def _writable_local_parent(output: str) -> bool:
    """The nearest existing folder at or above a local OUT is a folder we may write to."""
    path = storage.canonical(output)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)
