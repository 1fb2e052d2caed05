"""A frame index from an MP4/MOV file's own sample tables, read with a few ranged reads.

An MP4 carries, in its `moov` box, where and when every sample is: `stts` (decode-time
deltas), `ctts` (presentation offsets: B-frames), `stss` (sync samples = keyframes), `stsz`
(sizes), `stsc` + `stco`/`co64` (chunk offsets), `mdhd` (the track's timescale) and `elst`
(the edit list: where presentation starts in the media). Reading the top-level box headers
and then `moov` itself is a handful of requests and a small fraction of the file, wherever
`moov` sits (front after faststart, or after `mdat`).

The result must equal what demuxing gives (video.py `build_index`, FFmpeg's mov demuxer):
pts = dts + ctts offset - edit media time (+ a leading empty edit), frames outside the edit
dropped, zero-size samples skipped, average rate = frames * timescale / sum of durations.
Anything outside what is modelled here (fragmented files, several edits, a table past the
end of a truncated file) gives None, and the caller demuxes instead: never a wrong index.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from typing import Iterator, Optional

import numpy as np

from maskray.pipeline.inputs.frame_index import FrameIndex
from maskray.pipeline.inputs.range_reader import RangeReader

_MAX_MOOV_BYTES = 512 * 1024 * 1024  # a moov larger than this is not a sane header
_CONTAINERS = (b"trak", b"mdia", b"minf", b"stbl", b"edts")


def mp4_frame_index(reader: RangeReader) -> Optional[FrameIndex]:
    """The first video track's frame index, or None when this file needs demuxing."""
    moov = _read_moov(reader)
    if moov is None:
        return None
    movie_timescale = None
    stream_index = 0
    for kind, body in _children(moov):
        if kind == b"mvhd":
            movie_timescale = _timescale(body)
        elif kind == b"mvex":
            return None  # fragmented: samples live in moof boxes
        elif kind == b"trak":
            tables = _track_tables(body)
            if tables.get(b"hdlr", b"")[8:12] == b"vide":
                return _frame_index(tables, movie_timescale, stream_index, reader.size)
            stream_index += 1
    return None


def _read_moov(reader: RangeReader) -> Optional[memoryview]:
    offset = 0
    while offset + 8 <= reader.size:
        header = reader.read_at(offset, 16)
        if len(header) < 8:
            return None
        size, kind = struct.unpack(">I4s", header[:8])
        header_size = 8
        if size == 1:
            if len(header) < 16:
                return None
            size, header_size = struct.unpack(">Q", header[8:16])[0], 16
        elif size == 0:
            size = reader.size - offset
        if size < header_size:
            return None
        if kind == b"moof":
            return None
        if kind == b"moov":
            if size > _MAX_MOOV_BYTES or offset + size > reader.size:
                return None
            return memoryview(reader.read_at(offset + header_size, size - header_size))
        offset += size
    return None


def _children(data: memoryview) -> Iterator[tuple[bytes, memoryview]]:
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        header_size = 8
        if size == 1:
            size, header_size = struct.unpack(">Q", data[offset + 8:offset + 16])[0], 16
        elif size == 0:
            size = len(data) - offset
        if size < header_size or offset + size > len(data):
            return
        yield bytes(kind), data[offset + header_size:offset + size]
        offset += size


def _track_tables(trak: memoryview) -> dict[bytes, memoryview]:
    """The leaf boxes of one track that matter here, by type (first of each)."""
    found: dict[bytes, memoryview] = {}
    pending = [trak]
    while pending:
        for kind, body in _children(pending.pop()):
            if kind in _CONTAINERS:
                pending.append(body)
            else:
                found.setdefault(kind, body)
    return found


def _timescale(body: memoryview) -> int:
    version = body[0]
    return struct.unpack(">I", body[20:24] if version == 1 else body[12:16])[0]


def _table(body: memoryview, dtype: str, columns: int) -> np.ndarray:
    """The entries of a full box `version/flags, entry_count, entries...` as an array."""
    count = struct.unpack(">I", body[4:8])[0]
    width = np.dtype(dtype).itemsize * columns
    if 8 + count * width > len(body):
        raise ValueError("table shorter than its entry count")
    values = np.frombuffer(body[8:8 + count * width], dtype=dtype).astype(np.int64)
    return values.reshape(count, columns) if columns > 1 else values


def _frame_index(tables: dict, movie_timescale: Optional[int], stream_index: int,
                 file_size: int) -> Optional[FrameIndex]:
    try:
        return _frame_index_or_raise(tables, movie_timescale, stream_index, file_size)
    except (ValueError, struct.error, IndexError, ZeroDivisionError):
        return None


def _frame_index_or_raise(tables, movie_timescale, stream_index, file_size) -> Optional[FrameIndex]:
    needed = (b"mdhd", b"stts", b"stsz", b"stsc")
    if any(name not in tables for name in needed) or not (b"stco" in tables or b"co64" in tables):
        return None
    timescale = _timescale(tables[b"mdhd"])
    sizes = _sample_sizes(tables[b"stsz"])
    stts = _table(tables[b"stts"], ">u4", 2)
    count = sizes.shape[0]
    if timescale <= 0 or count == 0 or int(stts[:, 0].sum()) != count:
        return None
    if _data_end(tables, sizes) > file_size:
        return None  # samples past the end of the file: truncated, demuxing says where it breaks
    dts = np.zeros(count, dtype=np.int64)
    np.cumsum(np.repeat(stts[:, 1], stts[:, 0])[:-1], out=dts[1:])
    pts = dts.copy()
    if b"ctts" in tables:
        ctts = _table(tables[b"ctts"], ">i4", 2)
        offsets = np.repeat(ctts[:, 1], ctts[:, 0])
        if offsets.shape[0] < count:
            return None
        pts += offsets[:count]
    keep = sizes > 0
    edit = _edit(tables.get(b"elst"), movie_timescale, timescale)
    if edit is None:
        return None
    media_time, duration, empty_offset = edit
    if media_time > 0 or duration is not None:
        keep &= pts >= media_time
        if duration is not None:
            keep &= pts < media_time + duration
    pts = pts - media_time + empty_offset
    if b"stss" in tables:
        is_key = np.zeros(count, dtype=bool)
        sync = _table(tables[b"stss"], ">u4", 1) - 1
        is_key[sync[(sync >= 0) & (sync < count)]] = True
    else:
        is_key = np.ones(count, dtype=bool)
    pts, is_key = pts[keep], is_key[keep]
    if pts.size == 0:
        return None
    order = np.argsort(pts, kind="stable")
    pts, is_key = pts[order], is_key[order]
    if np.any(np.diff(pts) <= 0):
        return None  # repeated pts: demuxing decides which packet stands for the frame
    keyframes = np.flatnonzero(is_key).astype(np.int32)
    if keyframes.size == 0:
        keyframes = np.zeros(1, dtype=np.int32)
    width, height = _dimensions(tables.get(b"stsd"))
    return FrameIndex(pts=pts, keyframes=keyframes, time_base=Fraction(1, timescale),
                      fps=_average_rate(stts, timescale, pts), width=width, height=height,
                      stream_index=stream_index, source="mp4")


def _sample_sizes(body: memoryview) -> np.ndarray:
    uniform, count = struct.unpack(">II", body[4:12])
    if uniform:
        return np.full(count, uniform, dtype=np.int64)
    if 12 + 4 * count > len(body):
        raise ValueError("stsz shorter than its sample count")
    return np.frombuffer(body[12:12 + 4 * count], dtype=">u4").astype(np.int64)


def _data_end(tables: dict, sizes: np.ndarray) -> int:
    """One past the last byte any sample occupies (from stsc, stco/co64 and the sizes)."""
    offsets = (_table(tables[b"co64"], ">u8", 1) if b"co64" in tables
               else _table(tables[b"stco"], ">u4", 1))
    runs = _table(tables[b"stsc"], ">u4", 3)  # first chunk (1-based), samples per chunk, description
    if offsets.size == 0 or runs.size == 0:
        raise ValueError("no chunks")
    firsts = np.append(runs[:, 0] - 1, offsets.size)
    per_chunk = np.repeat(runs[:, 1], np.diff(firsts).clip(min=0))
    chunk_of = np.repeat(np.arange(per_chunk.size), per_chunk)[:sizes.size]
    if chunk_of.size < sizes.size:
        raise ValueError("chunks hold fewer samples than stsz lists")
    ends = np.cumsum(sizes)
    chunk_first_sample = np.cumsum(per_chunk) - per_chunk
    before_chunk = np.where(chunk_first_sample[chunk_of] > 0, ends[chunk_first_sample[chunk_of] - 1], 0)
    sample_ends = offsets[chunk_of] + ends - before_chunk
    return int(sample_ends.max())


def _edit(body: Optional[memoryview], movie_timescale: Optional[int], timescale: int):
    """(media time, edit duration or None, leading empty-edit offset) in the track's timescale.

    None when the edit list is more than one empty edit followed by one media edit.
    """
    if body is None:
        return 0, None, 0
    version, count = body[0], struct.unpack(">I", body[4:8])[0]
    entry, fmt = (20, ">QqI") if version == 1 else (12, ">IiI")
    edits = [struct.unpack(fmt, body[8 + i * entry:8 + (i + 1) * entry]) for i in range(count)]
    empty_offset = 0
    if edits and edits[0][1] == -1:
        if not movie_timescale:
            return None
        empty_offset = _rescale(edits[0][0], timescale, movie_timescale)
        edits = edits[1:]
    if len(edits) != 1 or edits[0][2] != 0x00010000:
        return None if edits or empty_offset else (0, None, 0)
    segment, media_time, _rate = edits[0]
    duration = _rescale(segment, timescale, movie_timescale) if (movie_timescale and segment) else None
    return max(0, media_time), duration, empty_offset


def _rescale(value: int, to_scale: int, from_scale: int) -> int:
    """value * to_scale / from_scale rounded half up, as FFmpeg's av_rescale."""
    return (value * to_scale + from_scale // 2) // from_scale


def _average_rate(stts: np.ndarray, timescale: int, pts: np.ndarray) -> float:
    """FFmpeg's average frame rate for a mov track: samples * timescale / summed durations."""
    total = int((stts[:, 0] * stts[:, 1]).sum())
    if total > 0:
        return float(Fraction(int(stts[:, 0].sum()) * timescale, total))
    if pts.size > 1:
        return (pts.size - 1) / float(int(pts[-1] - pts[0]) * Fraction(1, timescale))
    return 25.0


def _dimensions(stsd: Optional[memoryview]) -> tuple[int, int]:
    # stsd: version/flags, count, then the first VisualSampleEntry: width and height at 32..36.
    if stsd is None or len(stsd) < 8 + 36:
        return 0, 0
    return struct.unpack(">HH", stsd[8 + 32:8 + 36])
