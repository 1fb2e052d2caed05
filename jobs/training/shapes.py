"""Synthetic shapes: images and short videos of circles, squares and triangles with COCO ground truth.

Every instance has a visible-part mask (later shapes occlude earlier ones) and four keypoints,
the extreme points of its visible mask in the order top, bottom, left, right. Output is
COCO-format JSON (compressed RLE masks) beside the image and video files. Everything is drawn
from one `numpy.random.Generator`, so the same seed writes the same files.

Layout written by `generate_shapes(root, ...)`::

    root/images/shapes_00000.png ...      root/images.json     (COCO, file_name relative to images/)
    root/videos/shapes_video_000.mp4 ...  root/videos.json     (COCO, each image also has source, frame;
                                                                each annotation a track_id, one per shape)
    root/ground_truth.json                both sets in one COCO file (unique ids)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from maskray.jobs.training.coco_writer import KEYPOINT_NAMES, SHAPE_NAMES, CocoWriter, merge_coco  # noqa: F401
MIN_VISIBLE_PIXELS = 60


@dataclass
class Shape:
    """One shape's geometry: centre (cx, cy), radius-like size, rotation, colour."""

    category_id: int
    cx: float
    cy: float
    size: float
    angle: float
    colour: tuple
    vx: float = 0.0
    vy: float = 0.0
    spin: float = 0.0
    identity: Optional[int] = None  # the same number in every frame of a video (ground-truth track)

    def polygon(self) -> list[tuple[float, float]]:
        """Vertices of a square or triangle (circles are drawn as ellipses)."""
        corners = 4 if self.category_id == 2 else 3
        start = self.angle + (math.pi / 4 if corners == 4 else -math.pi / 2)
        return [
            (self.cx + self.size * math.cos(start + 2 * math.pi * k / corners),
             self.cy + self.size * math.sin(start + 2 * math.pi * k / corners))
            for k in range(corners)
        ]


@dataclass
class Instance:
    """A ground-truth instance: category, visible mask (H, W) bool, keypoints (4, 3) x y v."""

    category_id: int
    mask: np.ndarray
    keypoints: np.ndarray = field(default=None)
    track_id: Optional[int] = None  # a video's shape keeps its id in every frame


def random_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A textured or noisy background: smooth blobs, stripes, a gradient, or plain noise."""
    kind = rng.integers(4)
    base = rng.uniform(30, 225, size=3)
    if kind == 0:  # low-frequency blobs, upsampled
        coarse = rng.uniform(-60, 60, size=(rng.integers(3, 8), rng.integers(3, 8), 3))
        blobs = np.asarray(Image.fromarray(((coarse + 128)).clip(0, 255).astype(np.uint8))
                           .resize((width, height), Image.BICUBIC), dtype=np.float32) - 128
        image = base + blobs
    elif kind == 1:  # stripes at a random angle
        yy, xx = np.mgrid[0:height, 0:width]
        theta = rng.uniform(0, math.pi)
        period = rng.uniform(6, 30)
        wave = np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period)
        image = base + wave[..., None] * rng.uniform(10, 45, size=3)
    elif kind == 2:  # linear gradient between two colours
        t = np.linspace(0, 1, width if rng.random() < 0.5 else height)
        other = rng.uniform(30, 225, size=3)
        ramp = base + (other - base) * t[:, None]
        image = np.broadcast_to(ramp[None] if len(t) == width else ramp[:, None], (height, width, 3))
    else:
        image = np.broadcast_to(base, (height, width, 3))
    noise = rng.normal(0, rng.uniform(2, 18), size=(height, width, 3))
    return (image + noise).clip(0, 255).astype(np.float32)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> tuple:
    """A colour far enough from the background's mean that the shape stays visible."""
    mean = background.reshape(-1, 3).mean(0)
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3)
        if np.abs(colour - mean).sum() > 150:
            break
    return tuple(int(c) for c in colour)


def _shape_mask(shape: Shape, width: int, height: int) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if shape.category_id == 1:
        r = shape.size
        draw.ellipse([shape.cx - r, shape.cy - r, shape.cx + r, shape.cy + r], fill=1)
    else:
        draw.polygon(shape.polygon(), fill=1)
    return np.asarray(canvas, dtype=bool)


def extreme_points(mask: np.ndarray) -> np.ndarray:
    """Keypoints (4, 3) float32: top, bottom, left, right points of a mask, visibility 2.

    Where an extreme is an edge (a square's flat top), the point is the middle of that edge.
    Coordinates are pixel centres (x + 0.5, y + 0.5), as COCO measures them.
    """
    ys, xs = np.nonzero(mask)
    points = []
    for coords, other, pick in ((ys, xs, ys.min()), (ys, xs, ys.max()), (xs, ys, xs.min()), (xs, ys, xs.max())):
        along = other[coords == pick].mean()
        points.append((pick, along) if coords is xs else (along, pick))
    return np.array([(x + 0.5, y + 0.5, 2.0) for x, y in points], dtype=np.float32)


def random_shape(rng: np.random.Generator, width: int, height: int, background: np.ndarray) -> Shape:
    size = rng.uniform(0.06, 0.2) * min(width, height)
    return Shape(
        category_id=int(rng.integers(1, 4)),
        cx=rng.uniform(size * 0.6, width - size * 0.6),
        cy=rng.uniform(size * 0.6, height - size * 0.6),
        size=size,
        angle=rng.uniform(0, 2 * math.pi),
        colour=_contrasting_colour(rng, background),
        vx=rng.uniform(-3, 3), vy=rng.uniform(-3, 3), spin=rng.uniform(-0.08, 0.08),
    )


def compose(rng: np.random.Generator, background: np.ndarray, shapes: list[Shape]) -> tuple[np.ndarray, list[Instance]]:
    """Paints shapes in order over the background; returns the image and visible instances."""
    height, width = background.shape[:2]
    image = background.copy()
    covered = np.zeros((height, width), dtype=bool)
    masks = []
    for shape in reversed(shapes):  # last shape is on top: paint top-down, keep what is not covered
        full = _shape_mask(shape, width, height)
        visible = full & ~covered
        covered |= full
        masks.append((shape, visible))
    for shape, visible in reversed(masks):
        shade = rng.normal(0, 6, size=(int(visible.sum()), 3))
        image[visible] = np.asarray(shape.colour, dtype=np.float32) + shade
    instances = [
        Instance(shape.category_id, visible, extreme_points(visible), shape.identity)
        for shape, visible in masks[::-1] if visible.sum() >= MIN_VISIBLE_PIXELS
    ]
    rgb = np.asarray(Image.fromarray(image.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6)))
    return rgb, instances


def _place_shapes(rng: np.random.Generator, width: int, height: int, background: np.ndarray,
                  max_shapes: int) -> list[Shape]:
    """Random shapes that may overlap, but none hides more than half of one placed before it."""
    shapes: list[Shape] = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        for _attempt in range(10):
            candidate = random_shape(rng, width, height, background)
            new = _shape_mask(candidate, width, height)
            if all((_shape_mask(s, width, height) & new).sum() < 0.5 * _shape_mask(s, width, height).sum()
                   for s in shapes):
                shapes.append(candidate)
                break
    return shapes


def render_image(rng: np.random.Generator, width: int = 256, height: int = 256,
                 max_shapes: int = 6) -> tuple[np.ndarray, list[Instance]]:
    """One synthetic picture: RGB (H, W, 3) uint8 and its visible instances."""
    background = random_background(rng, width, height)
    return compose(rng, background, _place_shapes(rng, width, height, background, max_shapes))


def _advance(shape: Shape, width: int, height: int) -> None:
    """Moves a shape one frame, bouncing off the borders."""
    shape.cx += shape.vx
    shape.cy += shape.vy
    shape.angle += shape.spin
    if not shape.size <= shape.cx <= width - shape.size:
        shape.vx = -shape.vx
    if not shape.size <= shape.cy <= height - shape.size:
        shape.vy = -shape.vy


def render_video(rng: np.random.Generator, num_frames: int, width: int = 256, height: int = 192,
                 max_shapes: int = 5) -> tuple[list[np.ndarray], list[list[Instance]]]:
    """Frames of moving, spinning shapes over a fixed background, with per-frame instances."""
    background = random_background(rng, width, height)
    shapes = _place_shapes(rng, width, height, background, max_shapes)
    for identity, shape in enumerate(shapes, start=1):
        shape.identity = identity
    frames, truths = [], []
    for _ in range(num_frames):
        rgb, instances = compose(rng, background, shapes)
        frames.append(rgb)
        truths.append(instances)
        for shape in shapes:
            _advance(shape, width, height)
    return frames, truths


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, keyframe_every: int = 25) -> None:
    """Encodes RGB frames as H.264 (mpeg4 where libx264 is missing), one thread, so it is repeatable."""
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        gop = str(keyframe_every)
        stream.options = {"crf": "18", "g": gop} if codec == "libx264" else {"qscale": "2", "g": gop}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@dataclass
class SyntheticSet:
    """Where `generate_shapes` wrote things."""

    root: Path
    images_dir: Path
    images_json: Path
    videos_dir: Path | None
    videos_json: Path | None
    ground_truth_json: Path


def generate_shapes(root, *, images: int = 8, videos: int = 0, frames: int = 20, seed: int = 0,
                    width: int = 192, height: int = 192, video_width: int = 256, video_height: int = 192,
                    max_shapes: int = 6, fps: int = 10, scene=None) -> SyntheticSet:
    """Writes `images` pictures and `videos` clips of `frames` frames, with COCO ground truth.

    scene: a `shape_scenes.Scene` (occlusion, leaving and coming back, stops, shake, ...) for the
    videos, which then take its length, frame rate and keyframe interval instead of `frames`
    and `fps`; None keeps the plain videos (steady shapes, still camera).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    still = CocoWriter()
    for index in range(images):
        rgb, instances = render_image(rng, width, height, max_shapes)
        name = f"shapes_{index:05d}.png"
        Image.fromarray(rgb).save(images_dir / name)
        still.add({"file_name": name, "width": width, "height": height}, instances)
    images_json = root / "images.json"
    images_json.write_text(json.dumps(still.to_dict()))
    ground_truth = still.to_dict()
    videos_dir = videos_json = None
    if videos:
        videos_dir = root / "videos"
        videos_dir.mkdir(exist_ok=True)
        moving = CocoWriter()
        for index in range(videos):
            name = f"shapes_video_{index:03d}.mp4"
            if scene is None:
                clip, truths = render_video(rng, frames, video_width, video_height, max_shapes)
                write_video(videos_dir / name, clip, fps)
            else:
                clip, truths = scene.render(rng, video_width, video_height)
                write_video(videos_dir / name, clip, scene.fps, scene.keyframe_every)
            for frame, instances in enumerate(truths):
                moving.add({"file_name": name, "source": name, "frame": frame,
                            "width": video_width, "height": video_height}, instances)
        videos_json = root / "videos.json"
        videos_json.write_text(json.dumps(moving.to_dict()))
        ground_truth = merge_coco(ground_truth, moving.to_dict())
    ground_truth_json = root / "ground_truth.json"
    ground_truth_json.write_text(json.dumps(ground_truth))
    return SyntheticSet(root, images_dir, images_json, videos_dir, videos_json, ground_truth_json)
