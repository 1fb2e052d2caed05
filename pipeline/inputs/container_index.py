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
from dataclasses import dataclass
from typing import Optional

import pyarrow.fs as pafs

from maskray.models.errors import first_line
from maskray.pipeline import storage
from maskray.pipeline.inputs.errors import DecodeError
from maskray.pipeline.inputs.frame_index import FrameIndex
from maskray.pipeline.inputs.mkv_index import EBML_MAGIC, mkv_frame_index
from maskray.pipeline.inputs.mp4_index import mp4_frame_index
from maskray.pipeline.inputs.range_reader import RangeReader
from maskray.pipeline.inputs.video import build_index
from maskray.pipeline.output import layout

# Top-level ISO BMFF boxes a file may start with (MP4, MOV, 3GP, M4V).
_MP4_FIRST_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid")


@dataclass(frozen=True)
class IndexReport:
    """How an index was obtained: for logs, tests and the benchmark."""

    how: str          # "cache" | "mp4" | "mkv" | "demux"
    bytes_read: int   # bytes of the video read by ranged reads (0 for cache; demux not counted)


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
    if info.type != pafs.FileType.File:
        raise DecodeError("cannot read video: not a file any more")
    return int(info.size or 0), info.mtime_ns


def index_video(uri: str, output: Optional[str] = None) -> tuple[FrameIndex, IndexReport]:
    """The frame index of the video at `uri`, using and filling the cache under `output`."""
    try:
        size, mtime_ns = source_version(uri)
    except OSError as error:
        raise DecodeError(f"cannot read video: {first_line(error)}", transient=storage.is_transient(error)) from None
    key = cache_key(uri, size, mtime_ns) if output else None
    if key:
        cached = _read_cached(layout.video_index_uri(output, key))
        if cached is not None:
            return cached, IndexReport("cache", 0)
    index, report = _index_from_source(uri)
    if key:
        try:
            storage.write_bytes_atomic(layout.video_index_uri(output, key), index.to_bytes())
        except OSError:
            pass  # a cache that cannot be written costs a rebuild next time, nothing more
    return index, report


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
