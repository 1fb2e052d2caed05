"""Shapes videos with what real video has, for judging a tracker on scenes it was not built on.

`render_video` of shapes.py moves shapes at steady speeds, bouncing off the borders, under a
still camera. A `Scene` adds, each drawn per video from the generator's seed:
- crossing and occlusion: shapes aimed across each other's paths, and an occluder (a bar in
  the scenery: the background shows there) that hides whatever passes behind it;
- entering, leaving and coming back: a shape that reaches a border leaves the frame, waits
  off screen, and comes back (same identity) through a border;
- speed changes and stops: each shape now and then changes speed or halts for a while;
- similar shapes side by side: a twin (same category, a near colour) moving alongside one;
- camera shake (the whole picture, ground truth included, shifts a few pixels) and flicker
  (the brightness of a frame jumps).
Speeds are in pixels per second, so a 60 frames/s video moves less per frame than a 10 fps one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from maskray.jobs.training.shapes import (MIN_VISIBLE_PIXELS, Instance, Shape, random_background, compose,
                                          random_shape, extreme_points)


@dataclass(frozen=True)
class Scene:
    """How hard one video is. `draw_scene` picks one from a seed."""

    seconds: float = 3.0
    fps: int = 25
    keyframe_every: int = 25  # frames between keyframes (segments start on keyframes)
    shapes: int = 5
    speed: float = 60.0  # typical speed, pixels per second
    crossings: int = 1  # pairs of shapes aimed at each other
    occluder: bool = True
    leave_and_return: bool = True
    stop_chance: float = 0.01  # per frame and shape: halts (for up to a second)
    speed_change_chance: float = 0.01  # per frame and shape: speed scaled by 0.3..2
    twins: int = 1  # shapes given a look-alike moving beside them
    shake: float = 2.0  # camera shake, pixels (0: still)
    flicker: float = 0.15  # brightness jumps, fraction (0: steady)

    @property
    def frames(self) -> int:
        return max(1, int(round(self.seconds * self.fps)))

    def render(self, rng: np.random.Generator, width: int = 256, height: int = 192):
        """(frames, instances per frame) of this scene (`render_scene`)."""
        return render_scene(rng, self, width, height)


def draw_scene(rng: np.random.Generator) -> Scene:
    """A random scene: 1-20 s, 10-60 frames/s, keyframes every 0.2-10 s, and the hardships above
    in random measure (each may also be absent)."""
    fps = int(rng.choice([10, 15, 24, 25, 30, 50, 60]))
    return Scene(
        seconds=float(np.round(rng.uniform(1.0, 20.0), 1)), fps=fps,
        keyframe_every=max(1, int(round(fps * float(rng.choice([0.2, 0.5, 1.0, 2.0, 5.0, 10.0]))))),
        shapes=int(rng.integers(2, 7)), speed=float(rng.uniform(20.0, 90.0)),
        crossings=int(rng.integers(0, 3)), occluder=bool(rng.random() < 0.5),
        leave_and_return=bool(rng.random() < 0.6), stop_chance=float(rng.choice([0.0, 0.01, 0.03])),
        speed_change_chance=float(rng.choice([0.0, 0.01, 0.03])), twins=int(rng.integers(0, 2)),
        shake=float(rng.choice([0.0, 0.0, 1.5, 3.0])), flicker=float(rng.choice([0.0, 0.1, 0.25])),
    )


@dataclass
class _Motion:
    """A shape's state beyond its geometry: halted frames left, frames off screen left."""

    shape: Shape
    halted: int = 0
    away: int = 0


def render_scene(rng: np.random.Generator, scene: Scene, width: int = 256,
                 height: int = 192) -> tuple[list[np.ndarray], list[list[Instance]]]:
    """Frames of `scene` and each frame's visible instances (with the shapes' identities)."""
    margin = int(math.ceil(scene.shake)) + 1
    wide = random_background(rng, width + 2 * margin, height + 2 * margin)
    per_frame = scene.speed / scene.fps
    shapes = [random_shape(rng, width, height, wide) for _ in range(scene.shapes)]
    for shape in shapes:
        angle = rng.uniform(0, 2 * math.pi)
        shape.vx, shape.vy = per_frame * math.cos(angle), per_frame * math.sin(angle)
        shape.spin *= 10.0 / scene.fps
    for first, second in zip(shapes[0:2 * scene.crossings:2], shapes[1:2 * scene.crossings:2]):
        _aim_at(first, second, per_frame)
    for original in shapes[:scene.twins]:
        shapes.append(_twin(rng, original, width))
    for identity, shape in enumerate(shapes, start=1):
        shape.identity = identity
    motions = [_Motion(s) for s in shapes]
    occluder = _occluder(rng, width, height) if scene.occluder else None
    frames, truths = [], []
    for _ in range(scene.frames):
        dx, dy = (rng.uniform(-scene.shake, scene.shake, 2) if scene.shake else (0.0, 0.0))
        x0, y0 = int(round(margin + dx)), int(round(margin + dy))
        background = wide[y0:y0 + height, x0:x0 + width]
        visible = [_shifted(m.shape, x0 - margin, y0 - margin) for m in motions if not m.away]
        rgb, instances = compose(rng, background, visible)
        rgb = rgb.copy()  # PIL's array is read-only
        if occluder is not None:  # scenery in front: the background shows through, shapes hide
            top, bottom, left, right = occluder
            rgb[top:bottom, left:right] = background[top:bottom, left:right].clip(0, 255).astype(np.uint8)
            for instance in instances:
                instance.mask[top:bottom, left:right] = False
            instances = [Instance(i.category_id, i.mask, extreme_points(i.mask), i.track_id)
                         for i in instances if i.mask.sum() >= MIN_VISIBLE_PIXELS]
        if scene.flicker:
            gain = 1.0 + rng.uniform(-scene.flicker, scene.flicker)
            rgb = (rgb.astype(np.float32) * gain).clip(0, 255).astype(np.uint8)
        frames.append(rgb)
        truths.append(instances)
        for motion in motions:
            _step(rng, motion, scene, width, height)
    return frames, truths


def _aim_at(first: Shape, second: Shape, speed: float) -> None:
    """Sends two shapes towards each other, so their paths cross near the middle."""
    dx, dy = second.cx - first.cx, second.cy - first.cy
    length = max(1e-6, math.hypot(dx, dy))
    first.vx, first.vy = speed * dx / length, speed * dy / length
    second.vx, second.vy = -first.vx, -first.vy


def _twin(rng: np.random.Generator, original: Shape, width: int) -> Shape:
    """A look-alike beside `original`: same category and size, a near colour, same motion."""
    offset = 2.4 * original.size * (1 if original.cx < width / 2 else -1)
    colour = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in original.colour)
    return Shape(original.category_id, original.cx + offset, original.cy, original.size,
                 original.angle + 0.3, colour, original.vx, original.vy, original.spin)


def _occluder(rng: np.random.Generator, width: int, height: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a still upright bar, like a pillar in front of the scene."""
    bar = int(rng.uniform(0.1, 0.18) * width)
    left = int(rng.uniform(0.3, 0.7) * width)
    return 0, height, left, left + bar


def _shifted(shape: Shape, dx: float, dy: float) -> Shape:
    return Shape(shape.category_id, shape.cx - dx, shape.cy - dy, shape.size, shape.angle,
                 shape.colour, identity=shape.identity)


def _step(rng: np.random.Generator, motion: _Motion, scene: Scene, width: int, height: int) -> None:
    """One frame of a shape's life: off screen, halted, or moving (and maybe leaving)."""
    shape = motion.shape
    if motion.away:
        motion.away -= 1
        if not motion.away:  # back through a random border, heading inwards
            _reenter(rng, shape, width, height, math.hypot(shape.vx, shape.vy))
        return
    if rng.random() < scene.speed_change_chance:
        factor = rng.uniform(0.3, 2.0)
        shape.vx, shape.vy = shape.vx * factor, shape.vy * factor
    if motion.halted:
        motion.halted -= 1
        return
    if rng.random() < scene.stop_chance:
        motion.halted = int(rng.integers(1, scene.fps + 1))
        return
    shape.cx += shape.vx
    shape.cy += shape.vy
    shape.angle += shape.spin
    outside = not (-shape.size <= shape.cx <= width + shape.size and -shape.size <= shape.cy <= height + shape.size)
    if scene.leave_and_return:
        if outside:
            motion.away = int(rng.integers(scene.fps // 2 + 1, 2 * scene.fps + 2))
        return
    if not shape.size <= shape.cx <= width - shape.size:
        shape.vx = -shape.vx
    if not shape.size <= shape.cy <= height - shape.size:
        shape.vy = -shape.vy


def _reenter(rng: np.random.Generator, shape: Shape, width: int, height: int, speed: float) -> None:
    speed = max(speed, 0.5)
    side = int(rng.integers(4))
    along = rng.uniform(0.2, 0.8)
    shape.cx, shape.cy = ((-shape.size + 1, along * height), (width + shape.size - 1, along * height),
                          (along * width, -shape.size + 1), (along * width, height + shape.size - 1))[side]
    inwards = ((1, 0), (-1, 0), (0, 1), (0, -1))[side]
    tilt = rng.uniform(-0.5, 0.5)
    shape.vx, shape.vy = speed * (inwards[0] + tilt * inwards[1]), speed * (inwards[1] + tilt * inwards[0])
