"""A video's frame index the cheap way: the container's own index, else demuxing; cached in OUT.

Order of attempts for one video:
  1. the cache: `OUT/_index/<key>.npz`, key = digest of (uri, size, mtime), so a resume or a
     second job over the same, unchanged source reads a few KB instead of the video;
  2. the container's index read with ranged reads: MP4/MOV sample tables (mp4_index.py),
     Matroska/WebM block headers located through the cluster layout (mkv_index.py);
  3. demuxing every packet (video.py `build_index`), for everything else (MPEG-TS, AVI,
     fragmented or unusual files). All three give the same frames, pts and keyframes.

Bad videos raise DecodeError exactly as `build_index` does; errors are never cached.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import pyarrow.fs as pafs

from maskray.pipeline import storage
from maskray.pipeline.inputs.errors import DecodeError, missing_is_transient, read_problem
from maskray.pipeline.inputs.frame_index import FrameIndex
from maskray.pipeline.inputs.index_cache import video_index_uri
from maskray.pipeline.inputs.mkv_index import EBML_MAGIC, mkv_frame_index
from maskray.pipeline.inputs.mp4_index import mp4_frame_index
from maskray.pipeline.inputs.range_reader import RangeReader
from maskray.pipeline.inputs.video import build_index

# Top-level ISO BMFF boxes a file may start with (MP4, MOV, 3GP, M4V).
_MP4_FIRST_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid")


@dataclass(frozen=True)
class IndexReport:
    """How an index was obtained: for logs, tests and the benchmark."""

    how: str          # "cache" | "mp4" | "mkv" | "demux"
    bytes_read: int   # bytes of the video read by ranged reads (0 for cache; demux not counted)
    key: Optional[str] = None  # the cache key of this version of the source (None: not cacheable)


def cache_key(uri: str, size: int, mtime_ns: Optional[int]) -> Optional[str]:
    """The key of one version of a source, or None when its version cannot be told."""
    if mtime_ns is None:
        return None
    text = f"{storage.canonical(uri)}\n{size}\n{mtime_ns}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def source_version(uri: str) -> tuple[int, Optional[int]]:
    """(size, mtime in ns or None) of a file: one metadata request."""
    filesystem, path = storage.resolve(uri)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound:  # it was listed: deleted since, or the store is out
        raise DecodeError(f"cannot read video: {read_problem(FileNotFoundError(uri))}", transient=True)
    if info.type != pafs.FileType.File:
        raise DecodeError("cannot read video: not a file any more")
    return int(info.size or 0), info.mtime_ns


def index_video(uri: str, output: Optional[str] = None) -> tuple[FrameIndex, IndexReport]:
    """The frame index of the video at `uri`, using and filling the cache under `output`.

    The report's `key` names the cache entry; a shard carries it so its worker reads the very
    index it was planned from (`index_of_shard`)."""
    try:
        size, mtime_ns = source_version(uri)
    except OSError as error:
        raise DecodeError(f"cannot read video: {read_problem(error)}", transient=missing_is_transient(error)) from None
    key = cache_key(uri, size, mtime_ns) if output else None
    if key:
        cached = _read_cached(video_index_uri(output, key))
        if cached is not None:
            return cached, IndexReport("cache", 0, key)
    index, report = _index_from_source(uri)
    report = IndexReport(report.how, report.bytes_read, key)
    if key:
        try:
            storage.write_bytes_atomic(video_index_uri(output, key), index.to_bytes())
        except OSError:
            pass  # a cache that cannot be written costs a rebuild next time, nothing more
    return index, report


def cached_index(uri: str, output: str) -> Optional[tuple[FrameIndex, str]]:
    """(index, key) from the cache under `output` only, or None (not cached, or the source's
    version cannot be told): reads a few KB, never the video."""
    try:
        size, mtime_ns = source_version(uri)
    except (OSError, DecodeError):
        return None
    key = cache_key(uri, size, mtime_ns)
    index = _read_cached(video_index_uri(output, key)) if key else None
    return (index, key) if index is not None else None


# A worker runs the segments of one video one after another: keep its last few indexes.
_RECENT: "OrderedDict[tuple, FrameIndex]" = OrderedDict()
_RECENT_SIZE = 4


def index_of_shard(uri: str, key: Optional[str], output: Optional[str]) -> FrameIndex:
    """The index a video shard was planned from: the cache entry `key` under `output`, else
    built again (and cached). DecodeError when the source changed since it was planned (its
    frame numbers could differ), as when it cannot be read."""
    remembered = (uri, key, output)
    if key is not None and remembered in _RECENT:
        _RECENT.move_to_end(remembered)
        return _RECENT[remembered]
    index = _read_cached(video_index_uri(output, key)) if key and output else None
    if index is None:
        try:
            index, report = storage.retrying(index_video, uri, output)
        except OSError as error:
            raise DecodeError(f"cannot read video: {read_problem(error)}", transient=missing_is_transient(error)) from None
        if key is not None and report.key != key:
            raise DecodeError("the video changed after the job was planned: run the job again with --overwrite")
    if key is not None:
        _RECENT[remembered] = index
        while len(_RECENT) > _RECENT_SIZE:
            _RECENT.popitem(last=False)
    return index


def read_container_index(uri: str) -> tuple[Optional[FrameIndex], int]:
    """The index from the container's own tables, or None; and the bytes read trying."""
    try:
        with RangeReader(uri) as reader:
            head = reader.read_at(0, 16)
            index = None
            if head[:4] == EBML_MAGIC:
                index = mkv_frame_index(reader)
            elif len(head) >= 8 and head[4:8] in _MP4_FIRST_BOXES:
                index = mp4_frame_index(reader)
            return index, reader.bytes_read
    except OSError:
        return None, 0


def _index_from_source(uri: str) -> tuple[FrameIndex, IndexReport]:
    index, bytes_read = read_container_index(uri)
    if index is not None:
        return index, IndexReport(index.source, bytes_read)
    return FrameIndex.from_video_index(build_index(uri)), IndexReport("demux", bytes_read)


def _read_cached(uri: str) -> Optional[FrameIndex]:
    try:
        return FrameIndex.from_bytes(storage.read_bytes(uri))
    except (OSError, FileNotFoundError):
        return None
