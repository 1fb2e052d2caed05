"""Build real outputs for the results tests: known instances written through the real sink.

Frames and their instances go through `schema.predictions_to_batches` and
`sink.ShardWriter` (the same path the worker takes), so the files are what a job writes;
only the model is replaced by instances we know. Also: a COCO ground truth of the same
instances, for evaluation tests.
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

import numpy as np
from pycocotools import mask as coco_mask

from maskray.models.frame_prediction import FramePrediction
from maskray.pipeline.output import layout, sink
from maskray.pipeline import storage
from maskray.pipeline.output.schema import FrameRef, predictions_to_batches


def rectangle(height: int, width: int, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """(H, W) bool mask, True on columns x1..x2-1 and rows y1..y2-1."""
    mask = np.zeros((height, width), bool)
    mask[y1:y2, x1:x2] = True
    return mask


def ellipse(height: int, width: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def box_of(mask: np.ndarray) -> list[float]:
    """x1, y1, x2, y2 of a mask's pixels (x2/y2 exclusive, as pixel edges)."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def prediction(masks: Sequence[np.ndarray], category_ids: Sequence[int], scores: Sequence[float],
               names: Optional[dict] = None, keypoints: Optional[np.ndarray] = None) -> FramePrediction:
    """A FramePrediction from masks (boxes are the masks' extents), best score first."""
    height, width = masks[0].shape if len(masks) else (0, 0)
    order = np.argsort(-np.asarray(scores, np.float32), kind="stable")
    masks = [masks[i] for i in order]
    ids = np.asarray(category_ids, np.int32)[order]
    names = names or {}
    return FramePrediction(
        height=height,
        width=width,
        boxes=np.array([box_of(m) for m in masks], np.float32).reshape(-1, 4),
        scores=np.asarray(scores, np.float32)[order],
        category_ids=ids,
        categories=[names.get(int(i), str(int(i))) for i in ids],
        masks_rle=[coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode() for m in masks],
        mask_areas=np.array([int(m.sum()) for m in masks], np.int64),
        keypoints=None if keypoints is None else np.asarray(keypoints, np.float32)[order],
    )


def empty_prediction(height: int, width: int) -> FramePrediction:
    return FramePrediction(height, width, np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                           np.zeros(0, np.int32), [], [], np.zeros(0, np.int64), None)


def write_shard(output: str, shard_id: str, frames: Sequence[tuple[FrameRef, FramePrediction]],
                commit: bool = True) -> None:
    """Write one shard's parts; with `commit=False` the parts exist but no commit record
    (what a reader sees while a worker is between writing parts and committing)."""
    refs = [ref for ref, _ in frames]
    instances, frame_rows = predictions_to_batches(refs, [p for _, p in frames], shard_id)
    writer = sink.OutputSink(output, "test-job").shard_writer(shard_id, 1, {})
    writer.add(instances, frame_rows)
    rows = frame_rows.num_rows
    writer.commit(frames=rows, frames_ok=rows, errors=0, instances=instances.num_rows)
    if not commit:  # the parts stay, the commit record goes
        filesystem, path = storage.resolve(layout.commit_uri(output, shard_id))
        filesystem.delete_file(path)


def write_output(output: str, frames: Sequence[tuple[FrameRef, FramePrediction]], shard_size: int = 2) -> list[str]:
    """A complete output: `_job.json`, shards of `shard_size` frames, `_SUCCESS`."""
    sink.write_job(output, {"job_id": "test-job", "model": "known-instances", "weights_id": "none"})
    shard_ids = []
    for start in range(0, len(frames), shard_size):
        shard_id = f"s{start // shard_size:04d}"
        write_shard(output, shard_id, frames[start:start + shard_size])
        shard_ids.append(shard_id)
    sink.write_success(output, {"shards": len(shard_ids), "job_id": "test-job"})
    return shard_ids


def run_as_driver(output: str, frames: Sequence[tuple[FrameRef, FramePrediction]], shard_size: int = 2,
                  every: int = 1000, finish: bool = True) -> sink.OutputSink:
    """A job's output written as `maskray submit` writes it, without Ray or a model: the
    driver's sink takes the lease and writes `_job.json`; each shard is committed through a
    pickled copy of it (what a worker holds) and recorded by the driver's (folded into a
    manifest every `every` records); with `finish`, the final manifest and `_SUCCESS`, and
    the lease is released. Returns the driver's sink."""
    import pickle

    driver = sink.OutputSink(output)
    driver.on_write_start(lambda previous: {"job_id": "test-job", "model": "known-instances", "weights_id": "none"},
                          overwrite=False, sources=[], lease_ttl_s=60)
    driver.log.every, driver.log.interval_s = every, float("inf")  # publish by count only: deterministic
    worker = pickle.loads(pickle.dumps(driver))
    for start in range(0, len(frames), shard_size):
        chunk = frames[start:start + shard_size]
        instances, frame_rows = predictions_to_batches([r for r, _ in chunk], [p for _, p in chunk],
                                                       shard_id := f"s{start // shard_size:04d}")
        writer = worker.shard_writer(shard_id, 1, {})
        writer.add(instances, frame_rows)
        driver.record(writer.commit(frames=frame_rows.num_rows, frames_ok=frame_rows.num_rows, errors=0,
                                    instances=instances.num_rows))
    if finish:
        driver.committed()  # as the driver's reconcile does
        driver.on_write_complete({"shards": -(-len(frames) // shard_size)})
        driver.release()
    return driver


def ground_truth(frames: Sequence[tuple[FrameRef, FramePrediction]], images: Sequence[dict],
                 categories: dict, path, keypoint_categories: Sequence[int] = (1,)) -> dict:
    """A COCO annotations file whose annotations are exactly the frames' instances.

    images: per frame, the COCO image entry's naming fields (`file_name`, maybe `source`,
    `frame`). Instances of `keypoint_categories` carry their keypoints as labelled.
    """
    annotations = []
    entries = []
    for image_id, ((ref, pred), naming) in enumerate(zip(frames, images), start=1):
        entries.append({"id": image_id, "width": ref.width, "height": ref.height, **naming})
        for index in range(len(pred)):
            x1, y1, x2, y2 = (float(v) for v in pred.boxes[index])
            annotation = {
                "id": len(annotations) + 1, "image_id": image_id,
                "category_id": int(pred.category_ids[index]), "iscrowd": 0,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": int(pred.mask_areas[index]),
                "segmentation": {"size": [ref.height, ref.width], "counts": pred.masks_rle[index]},
            }
            if pred.keypoints is not None and int(pred.category_ids[index]) in keypoint_categories:
                points = np.asarray(pred.keypoints[index], np.float32).copy()
                points[:, 2] = 2  # labelled and visible
                annotation["keypoints"] = points.reshape(-1).tolist()
                annotation["num_keypoints"] = len(points)
            annotations.append(annotation)
    data = {
        "images": entries,
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for i, n in categories.items()],
    }
    path.write_text(json.dumps(data))
    return data


def run_maskray(argv: Sequence[str], capsys) -> tuple[int, str, str]:
    """`maskray ARGV` in this process through the real entry point: (exit code, stdout, stderr)."""
    from maskray import cli

    capsys.readouterr()
    try:
        cli.main([str(a) for a in argv])
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err
