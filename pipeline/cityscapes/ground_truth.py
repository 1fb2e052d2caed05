"""Reading and writing Cityscapes instanceIds images, the ground truth the evaluation scores.

An instanceIds image holds one integer per pixel: `label id * 1000 + n` for the n-th instance
of a class with instances, the bare label id elsewhere (stuff, void, group regions). Where a
picture has only its polygons JSON, the image is drawn from it by the official scripts' own
`createInstanceImage`, so both sources give the same pixels.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from maskray.errors import UsageError
from maskray.pipeline.cityscapes.files import GroundTruthFiles


def instance_image(files: GroundTruthFiles) -> np.ndarray:
    """(H, W) int32 instance ids of one picture, from its PNG, else from its polygons."""
    if files.instance_ids is not None:
        with Image.open(files.instance_ids) as picture:
            return np.asarray(picture, dtype=np.int32)
    return polygons_to_instance_image(files.polygons)


def polygons_to_instance_image(polygons_json: Path) -> np.ndarray:
    """The official rasterisation of a `*_gtFine_polygons.json` (cityscapesscripts' own code)."""
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage

    annotation = Annotation()
    try:
        annotation.fromJsonFile(str(polygons_json))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(f"cannot read Cityscapes polygons {polygons_json}: {error}") from None
    # createInstanceImage calls sys.exit on an unknown label; say which file instead.
    try:
        picture = createInstanceImage(annotation, "ids")
    except SystemExit:
        raise UsageError(f"{polygons_json} has a label that Cityscapes does not know") from None
    return np.asarray(picture, dtype=np.int32)


def instance_png_bytes(instance_ids: np.ndarray) -> bytes:
    """A 16-bit greyscale PNG of instance ids, as Cityscapes ships them (max id 33999 fits).

    (Pillow 13 cannot write the official scripts' 32-bit "I" images as PNG, so they cannot be
    saved with `json2instanceImg` itself; the pixels are the same.)
    """
    if instance_ids.min() < 0 or instance_ids.max() > np.iinfo(np.uint16).max:
        raise ValueError("instance ids must fit in 16 bits")
    buffer = io.BytesIO()
    Image.fromarray(instance_ids.astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def image_size(files: GroundTruthFiles) -> tuple[int, int]:
    """(width, height) of the annotated picture, read from a header, not the pixels."""
    if files.instance_ids is not None:
        with Image.open(files.instance_ids) as picture:
            return picture.size
    import json

    data = json.loads(Path(files.polygons).read_text())
    return int(data["imgWidth"]), int(data["imgHeight"])
