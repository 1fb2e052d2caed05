"""COCO AP of trained weights on a validation set, computed with pycocotools.

Runs the model in this process (no job, no Ray): training ends with it, and it gives the
number the paper's tables report (AP averaged over IoU 0.5:0.95, AP50, AP75).
"""

from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils

from maskray.jobs.training.coco_dataset import CocoDataset
from maskray.models.build import build_model
from maskray.pipeline.coco.matching import load_ground_truth
from maskray.pipeline.coco.scoring import score


def predict_coco(model, dataset: CocoDataset, *, mask_threshold: float = 0.5) -> list[dict]:
    """COCO result dicts (bbox, segmentation RLE, keypoints where predicted) for every image."""
    results = []
    device = next(model.parameters()).device
    with torch.inference_mode():
        for index in range(len(dataset)):
            image, target = dataset[index]
            output = model([image.to(device)])[0]
            boxes = output["boxes"].cpu().numpy()
            masks = output.get("masks")
            keypoints = output.get("keypoints")
            for i in range(len(boxes)):
                x1, y1, x2, y2 = boxes[i].tolist()
                result = {"image_id": target["image_id"], "category_id": int(output["labels"][i]),
                          "score": float(output["scores"][i]), "bbox": [x1, y1, x2 - x1, y2 - y1]}
                if masks is not None:
                    binary = (masks[i, 0] > mask_threshold).cpu().numpy().astype(np.uint8)
                    rle = mask_utils.encode(np.asfortranarray(binary))
                    result["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
                if keypoints is not None:
                    result["keypoints"] = keypoints[i].cpu().numpy().reshape(-1).tolist()
                results.append(result)
    return results


def coco_scores(ground_truth_json: str, results: list[dict], iou_type: str) -> dict:
    """{AP, AP50, AP75} for one iou_type ("bbox" | "segm" | "keypoints"), scored as `maskray
    eval` scores (pipeline.coco.scoring); zeros without results."""
    if not results:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    values, _ = score(load_ground_truth(ground_truth_json), results, iou_type)
    return {name: values[name] for name in ("AP", "AP50", "AP75")}


def evaluate_weights(weights: str, images: str, annotations: str, *, model: str = "demo",
                     min_size: int | None = None, max_size: int | None = None) -> dict:
    """Box, mask (and keypoint) AP of `weights` on a COCO dataset; keys like `segm_AP`."""
    network, _ = build_model(model, weights, min_size=min_size, max_size=max_size,
                             score_threshold=0.05, max_instances=100)
    if torch.cuda.is_available():
        network = network.cuda()
    dataset = CocoDataset(images, annotations)
    results = predict_coco(network, dataset)
    kinds = ["bbox", "segm"] + (["keypoints"] if dataset.with_keypoints and
                                 results and "keypoints" in results[0] else [])
    scores = {}
    for kind in kinds:
        usable = [r for r in results if kind == "bbox" or (
            "segmentation" in r if kind == "segm" else "keypoints" in r)]
        for name, value in coco_scores(annotations, usable, kind).items():
            scores[f"{kind}_{name}"] = value
    return scores
