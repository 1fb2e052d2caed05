"""What to process: the media files under the user's sources, in one stable order.

A source is a file, or a directory / object prefix walked recursively. Images and videos
are recognised by extension, or by their first bytes when the extension says nothing.
Hidden files (a dot-name anywhere below the source) and the job's own output folder (when
it lies inside a source) are skipped; another job's output marker elsewhere is listed like any
other, so a stray marker never hides media. A file with a media extension but broken
content is still listed: the worker records it as an error row, so the user sees it. A file
whose name is not UTF-8 cannot be named in the output: it is listed with its name's bytes
escaped (`\\xff`) and a `problem`, which becomes its error row.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Optional

from maskray.errors import UsageError, first_line
from maskray.pipeline import storage

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
# MPEG-TS (.ts, .mts, .m2ts) beside the usual ones: what IP cameras and HLS recorders write.
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".ts", ".mts", ".m2ts"})
# Outputs and data files that are certainly not media: not worth a read to sniff.
_NEVER_MEDIA = frozenset({".parquet", ".json", ".txt", ".md", ".csv", ".py", ".yaml", ".yml", ".log"})
_SNIFF_BYTES = 189  # enough for MPEG-TS: a sync byte at 0 and at 188
NO_SOURCE = "no source given: name at least one file, directory or s3:// prefix"
_NOT_UTF8 = "file name is not valid UTF-8: rename the file to process it"


@dataclass(frozen=True)
class MediaFile:
    uri: str
    kind: str  # "image" | "video" | "unknown"
    size: int
    problem: Optional[str] = None  # why it cannot be read at all (planned as an error row)


def list_media(sources: list[str], output: Optional[str] = None) -> list[MediaFile]:
    """Every media file under `sources`, sorted by URI, each once.

    A file named explicitly is always listed (kind "unknown" if it is neither image nor
    video, so it becomes an error row); inside directories only media files are kept.
    Files under `output` (the job's own output, when it lies inside a source) are skipped; a
    source inside the output (`submit proj/frames --output proj`) is listed whole: maskray's
    own files there (Parquet, JSON, indexes) are not media.
    Raises UsageError for a missing source or when nothing at all is found.
    """
    if not sources:
        raise UsageError(NO_SOURCE)
    found: list[MediaFile] = []  # held once: sorted and deduplicated in place at the end
    output_root = _folder_uri(output) if output else None
    for source in sources:
        try:
            files = storage.list_files(source)
        except FileNotFoundError:
            raise UsageError(f"source not found: {source}") from None
        except OSError as error:
            raise UsageError(f"cannot list source {source}: {first_line(error)}") from None
        named_file = len(files) == 1 and _same_file(files[0][0], source)
        if named_file:
            uri, size = files[0]
            found.append(_unnamed(uri, size) or MediaFile(uri, _kind(uri, size) or "unknown", size))
            continue
        root = storage.resolve(source)[1].rstrip("/")
        skipped = _output_below(output_root, source)
        for uri, size in files:
            relative = _relative(storage.resolve(uri)[1], root)
            if _hidden(relative) or _inside(uri, skipped):
                continue
            unnamed = _unnamed(uri, size)
            kind = None if unnamed else _kind(uri, size)
            item = unnamed or (MediaFile(uri, kind, size) if kind else None)
            if item is not None:
                found.append(item)
        del files
    if not found:
        raise UsageError(f"no images or videos found in: {', '.join(sources)}")
    found.sort(key=lambda item: item.uri)  # stable: the first listing of a file named twice wins
    found[:] = [item for number, item in enumerate(found) if number == 0 or item.uri != found[number - 1].uri]
    return found


def check_sources(sources: list[str]) -> None:
    """UsageError for no source or a source that is not there (one request each): the
    mistakes `list_media` would report, found before a long listing starts."""
    if not sources:
        raise UsageError(NO_SOURCE)
    for source in sources:
        try:
            found = storage.exists(source)
        except OSError as error:
            raise UsageError(f"cannot list source {source}: {first_line(error)}") from None
        if not found:
            raise UsageError(f"source not found: {source}")


def kind_from_bytes(head: bytes) -> str | None:
    """"image" / "video" from a file's first bytes (magic numbers), None if not recognised."""
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")):
        return "image"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return "video"  # ISO BMFF / QuickTime: mp4, mov, m4v
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video"  # EBML: mkv, webm
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "video"  # MPEG-TS: 188-byte packets, each starting with 0x47
    return None


def _kind(uri: str, size: int) -> str | None:
    extension = posixpath.splitext(uri)[1].lower()
    if extension in IMAGE_EXTENSIONS:
        return "image"
    if extension in VIDEO_EXTENSIONS:
        return "video"
    if extension in _NEVER_MEDIA or size < 16:
        return None
    try:
        return kind_from_bytes(storage.read_head(uri, _SNIFF_BYTES))
    except OSError:
        return None


def _folder_uri(uri: str) -> str:
    """`uri` spelled as listed files are (canonical), ending in one `/`."""
    return storage.canonical(uri).rstrip("/") + "/"


def _output_below(output_root: Optional[str], source: str) -> Optional[str]:
    """The output folder to skip in `source`'s listing: only one strictly inside the source."""
    source_root = _folder_uri(source)
    if output_root and output_root != source_root and output_root.startswith(source_root):
        return output_root
    return None


def output_skipped(output: str, source: str) -> bool:
    """Whether listing `source` leaves out the files of the output `output`."""
    return _output_below(_folder_uri(output), source) is not None


def _inside(uri: str, folder: Optional[str]) -> bool:
    return folder is not None and uri.startswith(folder)


def _unnamed(uri: str, size: int) -> Optional[MediaFile]:
    """For a name holding bytes that are not UTF-8 (surrogate escapes from the OS): an entry
    under the name with each such byte written `\\xNN` (valid text, still recognisable),
    planned as an error row. None for a proper name."""
    try:
        uri.encode("utf-8")
        return None
    except UnicodeEncodeError:
        shown = uri.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return MediaFile(shown, "unknown", size, problem=_NOT_UTF8)


def _relative(path: str, root: str) -> str:
    return path[len(root):].lstrip("/") if path.startswith(root) else posixpath.basename(path)


def _hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/") if part)


def _same_file(listed_uri: str, source: str) -> bool:
    return storage.canonical(source).rstrip("/") == listed_uri.rstrip("/")
