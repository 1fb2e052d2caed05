"""The scale benchmark's inputs: many small images and many videos, made once into a cache.

    size   images   short videos (2 s, 128x96)   videos of ~5 MB (640x480, 12 s)
    1x      1,000       10                           1
    10x    10,000      100                           4
    100x  100,000    1,000                          40

Images are 64x48 PNGs with distinct pixels; videos are H.264 with B-frames (libx264), a few
distinct encodes copied under many names (each file is still its own input to maskray).
"""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SIZES = {1: (1_000, 10, 1), 10: (10_000, 100, 4), 100: (100_000, 1_000, 40)}
DISTINCT_VIDEOS = 10  # encodes per kind; copies fill the rest


def generate(size: int, cache: Path) -> Path:
    """The input folder for `size` (made once; a finished folder carries a `.complete` mark)."""
    images, short_videos, big_videos = SIZES[size]
    root = cache / f"scale-{size}x"
    if (root / ".complete").exists():
        return root
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    _images(root / "images", images)
    shorts = [_encode(cache / "templates" / f"short-{n}.mp4", n, 50, (128, 96)) for n in range(DISTINCT_VIDEOS)]
    bigs = [_encode(cache / "templates" / f"big-{n}.mp4", n, 300, (640, 480), crf=12) for n in range(2)]
    for number in range(short_videos):
        _copy(shorts[number % len(shorts)], root / "videos" / f"short-{number:05d}.mp4")
    for number in range(big_videos):
        _copy(bigs[number % len(bigs)], root / "videos" / f"big-{number:03d}.mp4")
    (root / ".complete").write_text("ok")
    return root


def _images(folder: Path, count: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for number in range(count):
        path = folder / f"{number // 1000:03d}" / f"img-{number:06d}.png"
        if path.exists():
            continue
        path.parent.mkdir(exist_ok=True)
        pixels = np.full((48, 64, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        pixels[number % 48, :, :] = 255  # distinct content per image
        Image.fromarray(pixels).save(path)


def _encode(path: Path, seed: int, frames: int, size: tuple[int, int], crf: int = 28) -> Path:
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    rng = np.random.default_rng(seed)
    width, height = size
    texture = rng.integers(0, 255, (height, width * 2, 3), dtype=np.uint8)
    with av.open(str(partial), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"bf": "3", "g": "50", "crf": str(crf), "preset": "veryfast"}
        stream.codec_context.time_base = Fraction(1, 25)
        for number in range(frames):
            shift = (number * 4) % width
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[:, shift:shift + width]), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = number, Fraction(1, 25)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    partial.replace(path)
    return path


def _copy(source: Path, target: Path) -> None:
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        shutil.copyfile(source, target)
