"""Which COCO image is each processed frame: matching to a ground truth, or assigning ids.

A frame is identified by `(source, frame)`. A ground-truth image (an entry of the COCO file's
`images`) matches a frame by the first rule that applies:

1. `source` field (optional, maskray's own): the GT image carries `source` (a URI, a path
   relative to any folder, or a basename) and optionally `frame` (default 0). It matches
   the frame whose source equals it, else ends with `/<source>`, with the same frame number.
2. `file_name` of an image: for an image source (frame 0, no time), the longest match
   wins: the whole source, then its trailing path (`a/b.jpg` matches `.../a/b.jpg`),
   then its basename.
3. `file_name` of a video frame: `<video>/<number>.<ext>` (e.g. `gate.mp4/000050.png` or
   `gate/50.jpg`), where `<video>` is the video's path tail with or without extension
   and `<number>` is the 0-based frame index.

A GT image matched by more than one frame is ambiguous: those frames are left unmatched.
Without a ground truth, `assign_image_ids` numbers frames 1.. in (source, frame) order and
builds an `images` list that itself matches back by rule 1.
"""

from __future__ import annotations

import copy
import json
import os
import posixpath

import numpy as np
from pycocotools import mask as coco_mask

from maskray.errors import UsageError
from maskray.pipeline import storage

FrameKey = tuple[str, int]


def load_ground_truth(uri: str) -> dict:
    """A COCO annotations file as a dict, with `iscrowd` and `area` filled where missing."""
    try:
        data = json.loads(storage.read_bytes(uri))
    except FileNotFoundError:
        raise UsageError(f"ground truth not found: {uri}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise UsageError(f"ground truth {uri} is not JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise UsageError(f"ground truth {uri} is not a COCO annotations file (no 'images' list)")
    data = copy.deepcopy(data)
    _check_fields(uri, data)
    data.setdefault("annotations", [])
    data.setdefault("categories", [])
    sizes = {image["id"]: (image.get("height"), image.get("width")) for image in data["images"]}
    for annotation in data["annotations"]:
        annotation.setdefault("iscrowd", 0)
        if "area" not in annotation:
            annotation["area"] = _area(annotation, sizes.get(annotation.get("image_id"), (None, None)))
    return data


def _check_fields(uri: str, data: dict) -> None:
    """The fields COCOeval reads without checking: a missing one would be a KeyError later."""
    for kind, entries, required in (("image", data["images"], ("id",)),
                                    ("annotation", data.get("annotations", []), ("id", "image_id", "category_id", "bbox"))):
        for position, entry in enumerate(entries):
            missing = [name for name in required if name not in entry]
            if missing:
                raise UsageError(f"ground truth {uri}: {kind} #{position} has no {', '.join(missing)}")


def _area(annotation: dict, size) -> float:
    """Mask area when the segmentation can be rasterised, else the box area."""
    segmentation = annotation.get("segmentation")
    height, width = size
    if segmentation and height and width:
        if isinstance(segmentation, list):
            rles = coco_mask.frPyObjects(segmentation, height, width)
            return float(coco_mask.area(coco_mask.merge(rles)))
        if isinstance(segmentation.get("counts"), list):
            segmentation = coco_mask.frPyObjects(segmentation, height, width)
        return float(coco_mask.area(segmentation))
    x, y, w, h = annotation.get("bbox", (0, 0, 0, 0))
    return float(w * h)


def _tails(uri: str) -> list[str]:
    """Path tails of a URI, longest first: '/d/a/b.jpg' -> ['/d/a/b.jpg', 'd/a/b.jpg', 'a/b.jpg', 'b.jpg']."""
    parts = [p for p in uri.replace("\\", "/").split("/") if p]
    return [uri] + ["/".join(parts[i:]) for i in range(len(parts))]


def _clean(name: str) -> str:
    # Leading '/' dropped so an absolute path and its tails compare as relative paths.
    return posixpath.normpath(str(name).replace("\\", "/")).lstrip("/") if name else ""


def match_ground_truth(frames: list[tuple[str, int, bool]], gt: dict) -> dict[FrameKey, int]:
    """`{(source, frame): GT image id}` for the frames that match (see the module's rules).

    frames: `(source, frame, is_image)` of every processed frame.
    """
    by_source: dict[tuple[str, int], int] = {}
    by_file: dict[str, int] = {}
    by_video_frame: dict[tuple[str, int], int] = {}
    for image in gt["images"]:
        if image.get("source"):
            by_source.setdefault((_clean(image["source"]), int(image.get("frame", 0))), image["id"])
        name = _clean(image.get("file_name", ""))
        if not name:
            continue
        by_file.setdefault(name, image["id"])
        folder, base = posixpath.split(name)
        stem = os.path.splitext(base)[0]
        if folder and stem.isdigit():
            by_video_frame.setdefault((folder, int(stem)), image["id"])

    matches: dict[FrameKey, int] = {}
    for source, frame, is_image in frames:
        tails = [_clean(t) for t in _tails(source)]
        found = next((by_source[(t, frame)] for t in tails if (t, frame) in by_source), None)
        if found is None and is_image:
            found = next((by_file[t] for t in tails if t in by_file), None)
        if found is None and not is_image:
            candidates = []
            for tail in tails:
                candidates += [tail, os.path.splitext(tail)[0]]
            found = next((by_video_frame[(c, frame)] for c in candidates if (c, frame) in by_video_frame), None)
        if found is not None:
            matches[(source, frame)] = found
    return _drop_ambiguous(matches)


def _drop_ambiguous(matches: dict[FrameKey, int]) -> dict[FrameKey, int]:
    ids, counts = np.unique(list(matches.values()), return_counts=True) if matches else ([], [])
    shared = {int(i) for i, c in zip(ids, counts) if c > 1}
    return {key: image_id for key, image_id in matches.items() if image_id not in shared}


def assign_image_ids(frames: list[dict]) -> tuple[dict[FrameKey, int], list[dict]]:
    """Ids 1.. for frames in (source, frame) order, and the matching COCO `images` list.

    frames: dicts with `source`, `frame`, `time`, `width`, `height`. `file_name` is the
    source's path below the sources' common folder; a video frame's is
    `<video path>/<frame:06d>.png`. `source` and `frame` are kept so the list matches back.
    """
    ordered = sorted(frames, key=lambda f: (f["source"], f["frame"]))
    sources = sorted({f["source"] for f in ordered})
    common = common_folder(sources)
    ids: dict[FrameKey, int] = {}
    images = []
    for f in ordered:
        key = (f["source"], int(f["frame"]))
        if key in ids:
            continue
        ids[key] = len(ids) + 1
        relative = f["source"][len(common):].lstrip("/") if common else f["source"]
        is_video = f.get("time") is not None
        images.append({
            "id": ids[key],
            "file_name": f"{relative}/{key[1]:06d}.png" if is_video else relative,
            "width": f["width"],
            "height": f["height"],
            "source": f["source"],
            "frame": key[1],
        })
    return ids, images


def common_folder(sources: list[str]) -> str:
    if not sources:
        return ""
    folders = [s.rsplit("/", 1)[0] if "/" in s else "" for s in sources]
    prefix = os.path.commonprefix(folders)
    # Cut back to a whole folder name ('/data/cam' and '/data/camera' share '/data').
    if not all(f == prefix or f.startswith(prefix + "/") for f in folders):
        prefix = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
    return prefix
