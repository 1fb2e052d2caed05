"""Scoring video tracks against COCO-style ground truth with identities: MOTA, IDF1 and HOTA (TrackEval).

Ground truth is COCO-style video annotations that carry a `track_id` (one id per object for
the whole video, as the synthetic shapes videos have), with `source` and `frame` on each
image. Predictions are `instances` rows with `track_id`. A ground-truth object and a
prediction correspond when their masks overlap (mask IoU); TrackEval's CLEAR (MOTA, at IoU
0.5), Identity (IDF1, at IoU 0.5) and HOTA (averaged over IoU 0.05..0.95) do the counting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from pycocotools import mask as mask_utils

from maskray.pipeline.coco.matching import match_ground_truth


@dataclass
class Sequence:
    """One video: per frame, ground-truth (ids, RLE dicts) and predicted (ids, RLE dicts)."""

    name: str
    gt: dict[int, tuple[list[int], list[dict]]] = field(default_factory=dict)
    predicted: dict[int, tuple[list[int], list[dict]]] = field(default_factory=dict)

    def add_gt(self, frame: int, track_id: int, rle: dict) -> None:
        ids, masks = self.gt.setdefault(int(frame), ([], []))
        ids.append(int(track_id))
        masks.append(rle)

    def add_prediction(self, frame: int, track_id: int, rle: dict) -> None:
        ids, masks = self.predicted.setdefault(int(frame), ([], []))
        ids.append(int(track_id))
        masks.append(rle)

    def trackeval_data(self) -> dict:
        """The per-sequence dictionary TrackEval's metrics take (ids renumbered 0..n-1)."""
        frames = sorted(set(self.gt) | set(self.predicted))
        gt_lookup = {v: i for i, v in enumerate(sorted({i for ids, _ in self.gt.values() for i in ids}))}
        pr_lookup = {v: i for i, v in enumerate(sorted({i for ids, _ in self.predicted.values() for i in ids}))}
        data = {"gt_ids": [], "tracker_ids": [], "similarity_scores": [],
                "num_gt_ids": len(gt_lookup), "num_tracker_ids": len(pr_lookup),
                "num_timesteps": len(frames), "seq": self.name}
        for frame in frames:
            gt_ids, gt_masks = self.gt.get(frame, ([], []))
            pr_ids, pr_masks = self.predicted.get(frame, ([], []))
            data["gt_ids"].append(np.array([gt_lookup[i] for i in gt_ids], dtype=int))
            data["tracker_ids"].append(np.array([pr_lookup[i] for i in pr_ids], dtype=int))
            if gt_masks and pr_masks:
                iou = np.asarray(mask_utils.iou(gt_masks, pr_masks, [0] * len(pr_masks)), dtype=float)
                iou = iou.reshape(len(gt_masks), len(pr_masks))
            else:
                iou = np.zeros((len(gt_masks), len(pr_masks)))
            data["similarity_scores"].append(iou)
        data["num_gt_dets"] = sum(len(ids) for ids in data["gt_ids"])
        data["num_tracker_dets"] = sum(len(ids) for ids in data["tracker_ids"])
        return data


def track_metrics(sequences: list[Sequence]) -> dict:
    """{'MOTA', 'IDF1', 'HOTA', 'IDSW', 'videos', ...} over all sequences (TrackEval's combination)."""
    from trackeval.metrics import CLEAR, HOTA, Identity

    metrics = [HOTA(), CLEAR({"PRINT_CONFIG": False}), Identity({"PRINT_CONFIG": False})]
    per_sequence = {m.get_name(): {} for m in metrics}
    for sequence in sequences:
        data = sequence.trackeval_data()
        for metric in metrics:
            per_sequence[metric.get_name()][sequence.name] = metric.eval_sequence(data)
    combined = {m.get_name(): m.combine_sequences(per_sequence[m.get_name()]) for m in metrics}
    hota, clear, identity = combined["HOTA"], combined["CLEAR"], combined["Identity"]
    return {
        "videos": len(sequences),
        "MOTA": float(clear["MOTA"]),
        "IDF1": float(identity["IDF1"]),
        "HOTA": float(np.mean(hota["HOTA"])),
        "DetA": float(np.mean(hota["DetA"])),
        "AssA": float(np.mean(hota["AssA"])),
        "IDSW": int(clear["IDSW"]),
        "gt_tracks": int(sum(s.trackeval_data()["num_gt_ids"] for s in sequences)),
        "predicted_tracks": int(sum(len({i for ids, _ in s.predicted.values() for i in ids}) for s in sequences)),
    }


def sequences_from_coco(ground_truth: dict) -> dict[str, Sequence]:
    """Sequences (by source name) of the annotations that carry `track_id`, from a COCO dict."""
    images = {image["id"]: image for image in ground_truth.get("images", [])}
    sequences: dict[str, Sequence] = {}
    for annotation in ground_truth.get("annotations", []):
        image = images.get(annotation["image_id"])
        if image is None or "track_id" not in annotation or "source" not in image:
            continue
        segmentation = annotation["segmentation"]
        rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
        name = image["source"]
        sequences.setdefault(name, Sequence(name)).add_gt(image["frame"], annotation["track_id"], rle)
    return sequences


def evaluate_tracks(output, gt_data: dict, *, min_score: float = 0.0) -> Optional[dict]:
    """Track metrics of an `Output` against ground truth whose video annotations carry
    `track_id`; None when the ground truth has no identities or no video frame matches."""
    import pyarrow.dataset as ds

    if not any("track_id" in a for a in gt_data.get("annotations", [])):
        return None
    processed = output.sql("SELECT DISTINCT source, frame FROM frames WHERE status = 'ok' AND time IS NOT NULL")
    frames = [(s, int(f), False) for s, f in zip(processed.column("source").to_pylist(),
                                                 processed.column("frame").to_pylist())]
    matches = match_ground_truth(frames, gt_data)
    if not matches:
        return None
    by_image = {image_id: key for key, image_id in matches.items()}
    sequences: dict[str, Sequence] = {}
    for annotation in gt_data["annotations"]:
        key = by_image.get(annotation["image_id"])
        if key is None or "track_id" not in annotation:
            continue
        segmentation = annotation["segmentation"]
        counts = segmentation["counts"]
        rle = {"size": segmentation["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        sequences.setdefault(key[0], Sequence(key[0])).add_gt(key[1], annotation["track_id"], rle)
    for source in sequences:  # every matched frame counts, also those where nothing was found
        for (matched_source, frame) in matches:
            if matched_source == source:
                sequences[source].gt.setdefault(frame, ([], []))
    table = output.instances_table(
        ["source", "frame", "score", "mask_rle", "height", "width", "track_id"],
        filter=(ds.field("score") >= min_score) & ds.field("source").isin(list(sequences)))
    for row in table.to_pylist():
        if (row["source"], row["frame"]) not in matches or row["track_id"] is None or row["mask_rle"] is None:
            continue
        rle = {"size": [row["height"], row["width"]], "counts": row["mask_rle"].encode("ascii")}
        sequences[row["source"]].add_prediction(row["frame"], row["track_id"], rle)
    if not sequences:
        return None
    return track_metrics([sequences[name] for name in sorted(sequences)])
