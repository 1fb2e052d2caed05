"""The embedded demo model: a small file, loaded safely, and accurate on shapes it never saw,
measured the way a user would: a real `submit` job, then COCO mask AP with pycocotools."""

import json

import pytest
import torch

from maskray.jobs.launch import run_job
from maskray.jobs.spec import JobSpec
from maskray.models.weights import DEMO_WEIGHTS
from maskray.pipeline.evaluation.coco import evaluate
from maskray.jobs.training.shapes import generate_shapes

HELD_OUT_SEED = 2027  # training used seed 1, its validation seed 2


def test_demo_weights_are_small_and_a_safe_maskray_checkpoint():
    assert DEMO_WEIGHTS.stat().st_size <= 20 * 1024 * 1024
    checkpoint = torch.load(DEMO_WEIGHTS, map_location="cpu", weights_only=True)
    assert checkpoint["maskray_checkpoint"] == 1
    recipe = checkpoint["recipe"]
    assert recipe["model"] == "demo" and recipe["categories"] == {"1": "circle", "2": "square", "3": "triangle"}
    assert recipe["keypoint_names"] == ["top", "bottom", "left", "right"]


@pytest.mark.ray
def test_demo_model_reaches_mask_ap_half_on_fresh_shapes_through_a_real_job(tmp_path, shared_ray):
    held_out = generate_shapes(tmp_path / "shapes", images=12, seed=HELD_OUT_SEED)
    output = tmp_path / "out"
    spec = JobSpec(sources=[str(held_out.images_dir)], output=str(output), model="demo", weights="demo",
                   score_threshold=0.05, max_instances=30, batch_size=4)
    assert run_job(spec) == 0
    assert json.loads((output / "_job.json").read_text())["weights_id"].startswith("demo:")
    metrics = evaluate(str(output), str(held_out.images_json)).metrics
    assert metrics["images"] == 12
    assert metrics["segm"]["AP"] >= 0.5, metrics["segm"]
    assert metrics["bbox"]["AP"] >= 0.5, metrics["bbox"]
