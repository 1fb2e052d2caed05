"""A small synthetic dataset in the exact Cityscapes layout, for tests and offline trials.

Cityscapes' licence forbids shipping it, so this writes look-alikes: a street (sky, buildings,
road, the ego vehicle's bonnet at the bottom) with shapes standing for the 8 instance classes,
each class its own outline and official colour, sometimes a group region (`cargroup`,
`persongroup`) the evaluation ignores. Per picture:

    ROOT/leftImg8bit/<split>/<city>/<city>_<seq>_000019_leftImg8bit.png
    ROOT/gtFine/<split>/<city>/<city>_<seq>_000019_gtFine_polygons.json
    ROOT/gtFine/<split>/<city>/<city>_<seq>_000019_gtFine_instanceIds.png   (16-bit)
    ROOT/gtFine/<split>/<city>/<city>_<seq>_000019_gtFine_labelIds.png      (8-bit)

Polygons are drawn in the order of the JSON, later ones over earlier ones, and instances of a
class are numbered in that order, as the official `json2instanceImg` does. The same seed and
size write byte-identical files.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from maskray.errors import UsageError
from maskray.pipeline.cityscapes import files
from maskray.pipeline.cityscapes.ground_truth import instance_png_bytes
from maskray.pipeline.cityscapes.labels import COLORS, HAS_INSTANCES, INSTANCE_ID_FACTOR, OFFICIAL_IDS

CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt",), "test": ("berlin",)}

# Each class's outline in a unit box (x right, y down, 0..1) and its width : height.
_OUTLINES = {
    "person": ([(0.5, 0), (0.8, 0.12), (0.75, 0.45), (1, 1), (0, 1), (0.25, 0.45), (0.2, 0.12)], 0.4),
    "rider": ([(0.5, 0), (1, 0.55), (0.7, 1), (0.3, 1), (0, 0.55)], 0.7),
    "car": ([(0.2, 0), (0.75, 0), (0.9, 0.4), (1, 0.45), (1, 1), (0, 1), (0, 0.45), (0.1, 0.4)], 2.0),
    "truck": ([(0, 0), (0.7, 0), (0.7, 0.3), (1, 0.3), (1, 1), (0, 1)], 1.5),
    "bus": ([(0, 0.05), (0.05, 0), (1, 0), (1, 1), (0, 1)], 3.0),
    "train": ([(0.1, 0), (1, 0), (1, 1), (0, 1), (0, 0.25)], 4.0),
    "motorcycle": ([(0, 1), (0.35, 0.2), (0.6, 0), (1, 1)], 1.3),
    "bicycle": ([(0.5 + 0.5 * math.cos(a * math.pi / 6), 0.5 + 0.5 * math.sin(a * math.pi / 6)) for a in range(12)], 1.0),
}


@dataclass
class SyntheticCityscapes:
    root: Path
    pictures: dict[str, list[str]] = field(default_factory=dict)  # split -> core names
    instances: int = 0


def generate_cityscapes(root, *, train: int = 4, val: int = 2, test: int = 0, width: int = 512,
                        height: int = 256, seed: int = 0, max_objects: int = 6) -> SyntheticCityscapes:
    """Write `train`/`val`/`test` pictures of `width` x `height` (Cityscapes' own: 2048 x 1024)."""
    root = Path(root)
    made = SyntheticCityscapes(root)
    for split_number, (split, count) in enumerate((("train", train), ("val", val), ("test", test))):
        rng = np.random.default_rng([seed, split_number])
        made.pictures[split] = []
        for index in range(count):
            city = CITIES[split][index % len(CITIES[split])]
            core = f"{city}_{index:06d}_000019"
            objects = _scene(rng, width, height, max_objects)
            try:
                made.instances += _write_picture(root, split, city, core, objects, width, height, rng)
            except OSError as error:
                raise UsageError(f"cannot write synthetic Cityscapes data to {root}: {error.strerror or error}") from None
            made.pictures[split].append(core)
    return made


def _scene(rng, width: int, height: int, max_objects: int) -> list[dict]:
    """Polygons of one picture in drawing order: background, groups and objects, the ego vehicle."""
    horizon = int(height * rng.uniform(0.38, 0.5))
    objects = [
        {"label": "sky", "polygon": [[0, 0], [width, 0], [width, horizon], [0, horizon]]},
        {"label": "road", "polygon": [[0, horizon], [width, horizon], [width, height], [0, height]]},
    ]
    for _ in range(int(rng.integers(2, 5))):  # buildings along the horizon
        x, w, h = int(rng.integers(0, width)), int(rng.integers(width // 10, width // 4)), int(rng.integers(horizon // 3, horizon))
        objects.append({"label": "building", "polygon": [[x, horizon - h], [x + w, horizon - h], [x + w, horizon], [x, horizon]]})
    shapes = []
    if rng.random() < 0.35:  # a group region: annotated, but no single instance
        shapes.append(("cargroup" if rng.random() < 0.5 else "persongroup", "car"))
    names = list(_OUTLINES)
    shapes += [(name, name) for name in rng.choice(names, size=int(rng.integers(2, max_objects + 1)))]
    placed = []
    for label, outline_name in shapes:
        outline, aspect = _OUTLINES[outline_name]
        h = rng.uniform(0.14, 0.32) * height * (0.7 if aspect >= 3 else 1.0)
        w = min(h * aspect, width * 0.6)
        bottom = rng.uniform(horizon + 0.1 * height, height * 0.92)
        left = rng.uniform(0, width - w)
        polygon = [[int(round(left + u * w)), int(round(bottom - h + v * h))] for u, v in outline]
        placed.append((bottom, {"label": label, "polygon": polygon}))
    objects += [obj for _, obj in sorted(placed, key=lambda p: p[0])]  # nearer (lower) ones on top
    bonnet = int(height * 0.93)
    objects.append({"label": "ego vehicle", "polygon": [[0, height], [0, bonnet + 4], [width // 3, bonnet],
                                                        [2 * width // 3, bonnet], [width, bonnet + 4], [width, height]]})
    return objects


def _pixel_id(label: str, counts: dict[str, int]) -> int:
    """A polygon's value in the instanceIds image: groups and stuff their label id, instances id*1000+n."""
    base = label[: -len("group")] if label.endswith("group") and label not in OFFICIAL_IDS else label
    value = OFFICIAL_IDS[base]
    if base in HAS_INSTANCES and base == label:
        value = value * INSTANCE_ID_FACTOR + counts.get(base, 0)
        counts[base] = counts.get(base, 0) + 1
    return value


def _write_picture(root: Path, split: str, city: str, core: str, objects: list[dict],
                   width: int, height: int, rng) -> int:
    instance_ids = Image.new("I", (width, height), OFFICIAL_IDS["unlabeled"])
    picture = Image.new("RGB", (width, height))
    ids_drawer, picture_drawer = ImageDraw.Draw(instance_ids), ImageDraw.Draw(picture)
    counts: dict[str, int] = {}
    for obj in objects:
        polygon = [tuple(point) for point in obj["polygon"]]
        ids_drawer.polygon(polygon, fill=_pixel_id(obj["label"], counts))
        base = obj["label"].removesuffix("group") if obj["label"] not in COLORS else obj["label"]
        jitter = rng.integers(-25, 26, size=3)
        picture_drawer.polygon(polygon, fill=tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLORS[base], jitter)))
    pixels = np.asarray(picture, dtype=np.int16) + rng.normal(0, 6, size=(height, width, 3)).astype(np.int16)
    ids = np.asarray(instance_ids, dtype=np.int32)
    label_ids = np.where(ids >= INSTANCE_ID_FACTOR, ids // INSTANCE_ID_FACTOR, ids).astype(np.uint8)

    gt_folder = root / files.GROUND_TRUTH / split / city
    image_folder = root / files.IMAGES / split / city
    gt_folder.mkdir(parents=True, exist_ok=True)
    image_folder.mkdir(parents=True, exist_ok=True)
    annotation = {"imgHeight": height, "imgWidth": width, "objects": objects}
    (gt_folder / (core + files.POLYGONS_SUFFIX)).write_text(json.dumps(annotation, indent=1))
    (gt_folder / (core + files.INSTANCE_IDS_SUFFIX)).write_bytes(instance_png_bytes(ids))
    (gt_folder / (core + files.LABEL_IDS_SUFFIX)).write_bytes(_png(Image.fromarray(label_ids)))
    (image_folder / (core + files.IMAGE_SUFFIX)).write_bytes(_png(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))))
    return sum(counts.values())


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
