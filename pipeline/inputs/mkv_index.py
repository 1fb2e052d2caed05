"""A frame index from a Matroska/WebM file's element headers, skipping the frame data.

Matroska's Cues name keyframes only, so they cannot give every frame's pts. What can: each
Cluster says its start time, and each SimpleBlock/Block begins with a few header bytes
(track number, time relative to the cluster, flags). Walking element headers and seeking
over the payloads reads tens of bytes a frame: a small fraction of the file, in one small
ranged read per block (reads that fall in the window already fetched cost no request).

Matches FFmpeg's matroska demuxer (video.py `build_index`): time base = TimecodeScale / 1e9,
pts = cluster time + block time, keyframe = SimpleBlock flag 0x80 or a BlockGroup without
ReferenceBlock, average rate = 1e9 / DefaultDuration reduced as FFmpeg's av_reduce(30000).
A track without DefaultDuration, laced blocks, clusters of unknown size, a track time
scale or data past the end of the file give None, and the caller demuxes instead.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Optional

import numpy as np

from maskray.pipeline.inputs.frame_index import FrameIndex
from maskray.pipeline.inputs.range_reader import RangeReader

EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_SEGMENT, _INFO, _TRACKS, _CLUSTER = 0x18538067, 0x1549A966, 0x1654AE6B, 0x1F43B675
_TIMECODE_SCALE, _TRACK_ENTRY, _TRACK_NUMBER, _TRACK_TYPE = 0x2AD7B1, 0xAE, 0xD7, 0x83
_DEFAULT_DURATION, _TRACK_TIMECODE_SCALE, _VIDEO, _WIDTH, _HEIGHT = 0x23E383, 0x23314F, 0xE0, 0xB0, 0xBA
_CLUSTER_TIME, _SIMPLE_BLOCK, _BLOCK_GROUP, _BLOCK, _REFERENCE = 0xE7, 0xA3, 0xA0, 0xA1, 0xFB
_UNKNOWN = -1
_WINDOW = 32  # bytes fetched per header read: one element header and a block header


class _Unsupported(Exception):
    """Something this reader does not model: demux instead."""


def mkv_frame_index(reader: RangeReader) -> Optional[FrameIndex]:
    try:
        return _Walker(reader).frame_index()
    except (_Unsupported, ValueError, IndexError):
        return None


class _Walker:
    def __init__(self, reader: RangeReader):
        self._reader = reader
        self._window_start, self._window = 0, b""

    def _bytes(self, offset: int, length: int) -> bytes:
        end = offset + length
        if not (self._window_start <= offset and end <= self._window_start + len(self._window)):
            self._window_start = offset
            self._window = self._reader.read_at(offset, max(length, _WINDOW))
        start = offset - self._window_start
        data = self._window[start:start + length]
        if len(data) < length:
            raise _Unsupported("element past the end of the file")
        return data

    def _header(self, offset: int) -> tuple[int, int, int]:
        """(element id, payload offset, payload size or _UNKNOWN) of the element at `offset`."""
        head = self._bytes(offset, min(12, self._reader.size - offset))
        element, id_length = _vint(head, 0, keep_marker=True)
        size, size_length = _vint(head, id_length, keep_marker=False)
        return element, offset + id_length + size_length, size

    def _children(self, start: int, end: int):
        offset = start
        while offset < end:
            element, payload, size = self._header(offset)
            if size == _UNKNOWN:
                raise _Unsupported("element of unknown size")
            yield element, payload, size
            offset = payload + size

    def frame_index(self) -> Optional[FrameIndex]:
        element, payload, size = self._header(0)
        segment_offset = payload + size
        element, segment_start, segment_size = self._header(segment_offset)
        if element != _SEGMENT:
            return None
        segment_end = self._reader.size if segment_size == _UNKNOWN else segment_start + segment_size
        if segment_end > self._reader.size:
            raise _Unsupported("segment past the end of the file")
        timecode_scale, track = 1_000_000, None
        pts, keys = [], []
        for element, payload, size in self._children(segment_start, segment_end):
            if element == _INFO:
                timecode_scale = self._uint_child(payload, size, _TIMECODE_SCALE, 1_000_000)
            elif element == _TRACKS:
                track = self._video_track(payload, size)
            elif element == _CLUSTER:
                if track is None:
                    raise _Unsupported("clusters before the track list")
                self._cluster(payload, size, track[0], pts, keys)
        if track is None or not pts:
            return None
        number, default_duration, width, height, stream_index = track
        order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
        sorted_pts = np.asarray(pts, dtype=np.int64)[order]
        if np.any(np.diff(sorted_pts) <= 0):
            return None
        keyframes = np.flatnonzero(np.asarray(keys, dtype=bool)[order]).astype(np.int32)
        fps = _av_reduce(1_000_000_000, default_duration, 30000)
        return FrameIndex(pts=sorted_pts, keyframes=keyframes if keyframes.size else np.zeros(1, np.int32),
                          time_base=Fraction(timecode_scale, 1_000_000_000), fps=float(fps),
                          width=width, height=height, stream_index=stream_index, source="mkv")

    def _uint(self, payload: int, size: int) -> int:
        return int.from_bytes(self._bytes(payload, size), "big") if size else 0

    def _uint_child(self, start: int, size: int, wanted: int, default: int) -> int:
        for element, payload, length in self._children(start, start + size):
            if element == wanted:
                return self._uint(payload, length)
        return default

    def _video_track(self, start: int, size: int):
        """(track number, default duration ns, width, height, stream index) of the first video track."""
        entries = [(payload, length) for element, payload, length in self._children(start, start + size)
                   if element == _TRACK_ENTRY]  # (Tracks also holds CRC-32 and Void elements)
        for stream_index, (payload, length) in enumerate(entries):
            fields = {child: (child_payload, child_size)
                      for child, child_payload, child_size in self._children(payload, payload + length)}
            if _TRACK_TYPE not in fields or self._uint(*fields[_TRACK_TYPE]) != 1:
                continue
            if _DEFAULT_DURATION not in fields or _TRACK_TIMECODE_SCALE in fields:
                raise _Unsupported("no default duration, or a track time scale")
            width = height = 0
            if _VIDEO in fields:
                width = self._uint_child(*fields[_VIDEO], _WIDTH, 0)
                height = self._uint_child(*fields[_VIDEO], _HEIGHT, 0)
            return (self._uint(*fields[_TRACK_NUMBER]), self._uint(*fields[_DEFAULT_DURATION]),
                    width, height, stream_index)
        raise _Unsupported("no video track")

    def _cluster(self, start: int, size: int, track: int, pts: list, keys: list) -> None:
        cluster_time = None
        for element, payload, length in self._children(start, start + size):
            if element == _CLUSTER_TIME:
                cluster_time = self._uint(payload, length)
            elif element in (_SIMPLE_BLOCK, _BLOCK_GROUP):
                if cluster_time is None:
                    raise _Unsupported("block before the cluster time")
                if element == _SIMPLE_BLOCK:
                    found = self._block(payload, length, track)
                    key = found is not None and bool(found[1] & 0x80)
                else:
                    found, key = self._block_group(payload, length, track)
                if found is not None:
                    pts.append(cluster_time + found[0])
                    keys.append(key)

    def _block_group(self, start: int, size: int, track: int):
        found, referenced = None, False
        for element, payload, length in self._children(start, start + size):
            if element == _BLOCK:
                found = self._block(payload, length, track)
            elif element == _REFERENCE:
                referenced = True
        return found, not referenced

    def _block(self, payload: int, length: int, track: int):
        """(relative time, flags) of a block of `track` with data, else None."""
        head = self._bytes(payload, min(length, 12))
        number, used = _vint(head, 0, keep_marker=False)
        if number != track or length <= used + 3:
            return None
        relative = int.from_bytes(head[used:used + 2], "big", signed=True)
        flags = head[used + 2]
        if flags & 0x06:
            raise _Unsupported("laced video blocks")
        return relative, flags


def _vint(data: bytes, offset: int, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at `offset`: (value, length); _UNKNOWN for all-ones sizes."""
    first = data[offset]
    if first == 0:
        raise ValueError("invalid EBML number")
    length = 9 - first.bit_length()
    if len(data) < offset + length:
        raise ValueError("EBML number cut short")
    value = int.from_bytes(data[offset:offset + length], "big")
    if keep_marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    return (_UNKNOWN if value == (1 << (7 * length)) - 1 else value), length


def _av_reduce(num: int, den: int, limit: int) -> Fraction:
    """num/den as FFmpeg's av_reduce gives it: numerator and denominator both <= limit."""
    if den == 0:
        raise _Unsupported("zero default duration")
    exact = Fraction(num, den)
    num, den = exact.numerator, exact.denominator
    if num <= limit and den <= limit:
        return exact
    (p0, q0), (p1, q1) = (0, 1), (1, 0)
    while den:
        whole, remainder = divmod(num, den)
        p2, q2 = whole * p1 + p0, whole * q1 + q0
        if p2 > limit or q2 > limit:
            step = (limit - p0) // p1 if p1 else whole
            if q1:
                step = min(step, (limit - q0) // q1)
            if den * (2 * step * q1 + q0) > num * q1:
                p1, q1 = step * p1 + p0, step * q1 + q0
            break
        (p0, q0), (p1, q1) = (p1, q1), (p2, q2)
        num, den = den, remainder
    return Fraction(p1, q1)
