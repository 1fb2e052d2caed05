"""Official Cityscapes AP of trained weights on a split, computed in this process.

Training on `--cityscapes ROOT` ends with it (like `validate.py`'s COCO AP for COCO data):
the model predicts every picture of the split, the predictions are written in Cityscapes'
results format to a temporary folder, and cityscapesscripts' evaluation scores them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from maskray.jobs.training.cityscapes_dataset import CityscapesDataset
from maskray.models.build import build_model
from maskray.pipeline.evaluation.cityscapes import instance_ids_file, official_evaluation
from maskray.pipeline.export.cityscapes import write_predictions
from maskray.pipeline.cityscapes.files import GROUND_TRUTH
from maskray.pipeline.cityscapes.labels import LABEL_IDS

VALIDATION_SPLIT = "val"


def evaluate_cityscapes_weights(weights: str, root: str, *, split: str = "val", model: str = "demo",
                                min_size: int | None = None, max_size: int | None = None,
                                mask_threshold: float = 0.5) -> dict:
    """{'AP', 'AP50', 'classes': {...}} of `weights` on ROOT's `split` (official metric)."""
    network, _ = build_model(model, weights, min_size=min_size, max_size=max_size,
                             score_threshold=0.05, max_instances=100)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    network = network.to(device).eval()
    names = network.maskray_spec.categories  # label -> category name; kept by name, as export does
    dataset = CityscapesDataset(root, split)
    with tempfile.TemporaryDirectory(prefix="maskray-cityscapes-val-") as work:
        results = str(Path(work) / "results")
        with torch.inference_mode():
            for index, files in enumerate(dataset.pictures):
                image, _ = dataset[index]
                output = network([image.to(device)])[0]
                instances = [((output["masks"][i, 0] > mask_threshold).cpu().numpy(),
                              LABEL_IDS[names[int(label)]], float(output["scores"][i]))
                             for i, label in enumerate(output["labels"].tolist())
                             if names.get(int(label)) in LABEL_IDS]
                write_predictions(results, files.core, instances)
        ground_truth = [instance_ids_file(files, work) for files in dataset.pictures]
        scores, _ = official_evaluation(ground_truth, results, work)
    return {**scores, "images": len(dataset)}


def validate_run(config, output: Path, echo) -> dict:
    """After `maskray train --cityscapes ROOT`: the official AP on ROOT's val split, when it has
    one, into OUT/eval.json; returns {'eval': scores} or {}."""
    import json

    if not (Path(config.cityscapes) / GROUND_TRUTH / VALIDATION_SPLIT).is_dir():
        echo(f"no {GROUND_TRUTH}/{VALIDATION_SPLIT} in {config.cityscapes}: not evaluated")
        return {}
    scores = evaluate_cityscapes_weights(str(output / "model.pt"), config.cityscapes, split=VALIDATION_SPLIT,
                                         model=config.model, min_size=config.min_size, max_size=config.max_size)
    (output / "eval.json").write_text(json.dumps(scores, indent=2))
    shown = ", ".join(f"{k} {'n/a' if scores[k] is None else format(scores[k], '.3f')}" for k in ("AP", "AP50"))
    echo(f"validation (official Cityscapes metric, {VALIDATION_SPLIT}, {scores['images']} pictures): {shown}")
    return {"eval": scores}
