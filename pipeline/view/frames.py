"""Pictures of the frames a job read, as JPEG, for the viewer: whole, scaled, or a crop.

An image is read from where the job read it; a video frame is found by seeking with the
frame index the job stored in OUT (the same numbering as the job's), built in memory when
no stored index fits the file as it is now; nothing is written. A few frames after the one
asked for are decoded with it, since a person steps through a video forwards. Decoded frames
and encoded pictures are kept in caches bounded in bytes, so memory stays flat.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Optional

import av
import numpy as np
from PIL import Image

from maskray.pipeline import storage
from maskray.pipeline.inputs.container_index import cached_index, index_video
from maskray.pipeline.inputs.errors import DecodeError
from maskray.pipeline.inputs.images import decode_image
from maskray.pipeline.inputs.video import decode_segment

READ_AHEAD = 8  # video frames decoded after the one asked for
RGB_CACHE_BYTES = 96 << 20  # decoded video frames (read ahead) and images
JPEG_CACHE_BYTES = 32 << 20  # pictures as sent
JPEG_QUALITY = 88
_AS_STORED = {"JPEG": "image/jpeg", "PNG": "image/png"}
_EXIF_ORIENTATION = 0x0112


class SourceGone(Exception):
    """The source cannot be read any more (moved, deleted, changed, unreadable)."""


class ByteBoundCache:
    """Least recently used entries, dropped once their sizes sum past `limit` bytes."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self._entries: "OrderedDict[tuple, tuple[object, int]]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key not in self._entries:
                return None
            self._entries.move_to_end(key)
            return self._entries[key][0]

    def put(self, key, value, size: int) -> None:
        with self._lock:
            if key in self._entries:
                self.used -= self._entries.pop(key)[1]
            self._entries[key] = (value, size)
            self.used += size
            while self.used > self.limit and len(self._entries) > 1:
                self.used -= self._entries.popitem(last=False)[1][1]


class FramePictures:
    """JPEG pictures of the frames of one output's sources."""

    def __init__(self, output_uri: str):
        self.output_uri = output_uri
        self._rgb = ByteBoundCache(RGB_CACHE_BYTES)
        self._jpeg = ByteBoundCache(JPEG_CACHE_BYTES)
        self._indexes: dict[str, object] = {}
        self._lock = threading.Lock()

    def picture(self, source: str, frame: int, is_image: bool, max_side: int = 0,
                crop: Optional[tuple[float, float, float, float]] = None) -> tuple[bytes, str]:
        """(bytes, content type) of the frame (or the `crop` box of it, in frame pixels) scaled
        so its longer side is at most `max_side` (0: full size). Raises SourceGone."""
        key = (source, frame, max_side, crop)
        cached = self._jpeg.get(key)
        if cached is not None:
            return cached
        served = self._image_as_stored(source, max_side) if is_image and crop is None else None
        if served is None:
            served = (self._encoded(self.rgb(source, frame, is_image), max_side, crop), "image/jpeg")
        self._jpeg.put(key, served, len(served[0]))
        return served

    def _image_as_stored(self, source: str, max_side: int) -> Optional[tuple[bytes, str]]:
        """An upright RGB or grey JPEG or PNG is sent as its file (the browser decodes it), or,
        for a thumbnail of a JPEG, decoded at a fraction of its size (JPEG's DCT scaling) and
        shrunk; None for anything else (EXIF-turned, with alpha, animated), which is decoded
        as the job decoded it."""
        data = self._read(source)
        try:
            with Image.open(io.BytesIO(data)) as image:
                plain = (image.format in _AS_STORED and image.mode in ("RGB", "L")
                         and getattr(image, "n_frames", 1) == 1 and image.getexif().get(_EXIF_ORIENTATION, 1) == 1)
                if not plain:
                    return None
                if not max_side or max(image.size) <= max_side:
                    return data, _AS_STORED[image.format]
                if image.format != "JPEG":
                    return None
                scale = max_side / max(image.size)
                size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                image.draft("RGB", size)  # decodes at 1/2, 1/4 or 1/8 scale, still at least `size`
                small = image.convert("RGB").resize(size, Image.BILINEAR)
        except (OSError, ValueError, Image.DecompressionBombError):
            return None  # let the job's decoder say what is wrong with it
        buffer = io.BytesIO()
        small.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return buffer.getvalue(), "image/jpeg"

    def _read(self, source: str) -> bytes:
        try:
            return storage.read_bytes(source)
        except (OSError, ValueError) as error:
            raise SourceGone(f"cannot read {source}: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None

    @staticmethod
    def _encoded(rgb: np.ndarray, max_side: int, crop) -> bytes:
        picture = Image.fromarray(rgb)
        if crop is not None:
            x1, y1, x2, y2 = crop
            picture = picture.crop((int(max(0, x1)), int(max(0, y1)), int(max(x1 + 1, x2)), int(max(y1 + 1, y2))))
        if max_side and max(picture.size) > max_side:
            scale = max_side / max(picture.size)
            picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                     Image.BILINEAR)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return buffer.getvalue()

    def rgb(self, source: str, frame: int, is_image: bool) -> np.ndarray:
        cached = self._rgb.get((source, frame))
        if cached is not None:
            return cached
        try:
            if is_image:
                rgb = decode_image(self._read(source))
                self._rgb.put((source, frame), rgb, rgb.nbytes)
                return rgb
            return self._video_frame(source, frame)
        except (OSError, ValueError, DecodeError, av.FFmpegError) as error:
            raise SourceGone(f"cannot read {source}: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None

    def _video_frame(self, source: str, frame: int) -> np.ndarray:
        index = self._index(source)
        if not index.first_frame <= frame < index.end_frame:
            raise SourceGone(f"{source} has no frame {frame} now")
        wanted = range(frame, min(index.end_frame, frame + READ_AHEAD))
        found = None
        for decoded in decode_segment(source, index, frame, wanted[-1] + 1, wanted, None):
            self._rgb.put((source, decoded.frame), decoded.rgb, decoded.rgb.nbytes)
            if decoded.frame == frame:
                found = decoded.rgb
        if found is None:
            raise SourceGone(f"{source} has no frame {frame} now")
        return found

    def _index(self, source: str):
        with self._lock:
            if source in self._indexes:
                return self._indexes[source]
        stored = cached_index(source, self.output_uri)  # reads OUT's cache; writes nothing
        index = stored[0] if stored is not None else index_video(source, None)[0]
        index = index.to_video_index()
        with self._lock:
            self._indexes[source] = index
        return index
