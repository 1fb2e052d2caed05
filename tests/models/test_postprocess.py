"""maskray's post-processing against torchvision's own, on real frames.

The capped candidates (models/roi_heads.py), the batched paste (models/paste.py) and the
keypoint decoding (models/keypoints.py) must give what torchvision's `RoIHeads` and
`paste_masks_in_image` give: the same boxes, scores, labels and keypoints, the same masks
after the threshold, the same RLE. And a batch's host syncs must not grow with the number of
instances. Runs on CUDA too where there is one.
"""

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask
from torch.profiler import ProfilerActivity, profile

from benchmarks.torchvision_path import torchvision_twin
from maskray.models.paste import paste_masks
from maskray.models.predictor import Predictor, PredictorConfig
from maskray.models.build import build_model
from torchvision.models.detection.roi_heads import paste_masks_in_image

DATA = Path(__file__).parents[1] / "data"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Real pictures of different sizes and a frame of each sample video."""
    pictures = [np.asarray(Image.open(DATA / "images" / name).convert("RGB"))
                for name in ("astronaut.png", "coffee.png", "rocket.jpg")]
    for video in ("bikes.mp4", "carphone_pristine.mp4"):
        with av.open(str(DATA / "videos" / video)) as container:
            for number, frame in enumerate(container.decode(video=0)):
                if number == 40:
                    pictures.append(frame.to_ndarray(format="rgb24"))
                    break
    return pictures


def run(model, frames, device):
    images = [torch.from_numpy(f.copy()).permute(2, 0, 1).float().div(255).to(device)
              for f in frames]
    with torch.inference_mode():
        return model.to(device).eval()(images)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, weights, threshold", [
    ("demo", "demo", 0.05),  # the trained joint demo model at build_model's default threshold
    ("maskrcnn_resnet50_fpn", "none", 0.5),  # random weights: torchvision's usual 0.5
])
def test_detections_and_masks_equal_torchvision(frames, device, name, weights, threshold):
    model, _ = build_model(name, weights, min_size=192, max_size=256, score_threshold=threshold,
                           proposals=200)
    assert model.roi_heads.pre_nms_top == 1000
    ours = run(model, frames, device)
    theirs = run(torchvision_twin(model), frames, device)
    found = 0
    for mine, reference in zip(ours, theirs):
        for key in ("boxes", "scores", "labels", "keypoints", "keypoints_scores"):
            assert torch.equal(mine[key], reference[key]) if key in reference else key not in mine
        assert torch.equal(mine["masks"] > 0.5, reference["masks"] > 0.5)
        if len(mine["masks"]):
            assert (mine["masks"] - reference["masks"]).abs().max().item() < 1e-6
        found += len(mine["boxes"])
    assert found > 0


@pytest.mark.parametrize("device", DEVICES)
def test_predictor_rle_equals_pycocotools_of_torchvision_masks(frames, device):
    predictor = Predictor(PredictorConfig(model="demo", weights="demo", device=device,
                                          score_threshold=0.3, mask_threshold=0.5))
    predictions = predictor.predict(frames)
    theirs = run(torchvision_twin(predictor.model), frames, device)
    instances = 0
    for prediction, reference in zip(predictions, theirs):
        keep = reference["scores"] >= 0.3
        masks = (reference["masks"][keep, 0] > 0.5).cpu().numpy().astype(np.uint8)
        expected = [coco_mask.encode(np.asfortranarray(m))["counts"].decode() for m in masks]
        assert prediction.masks_rle == expected
        assert np.array_equal(prediction.mask_areas, masks.reshape(len(masks), -1).sum(1))
        assert np.array_equal(prediction.boxes, reference["boxes"][keep].cpu().numpy())
        assert np.array_equal(prediction.scores, reference["scores"][keep].cpu().numpy())
        instances += len(prediction)
    assert instances >= len(frames)  # the shapes model finds things on real pictures too


def test_uncapped_heads_are_torchvision_even_at_threshold_zero(frames):
    """With `pre_nms_top=None` every candidate goes to NMS, exactly as torchvision does; the
    default cap keeps 1,000 of the 4 x 150 x ... candidates and still finds the best box."""
    uncapped, _ = build_model("demo", "demo", score_threshold=0.0, pre_nms_top=None)
    ours = run(uncapped, frames[:2], "cpu")
    theirs = run(torchvision_twin(uncapped), frames[:2], "cpu")
    for mine, reference in zip(ours, theirs):
        assert torch.equal(mine["boxes"], reference["boxes"])
        assert torch.equal(mine["scores"], reference["scores"])
    capped, _ = build_model("demo", "demo", score_threshold=0.0, pre_nms_top=20)
    for mine, reference in zip(run(capped, frames[:2], "cpu"), theirs):
        assert torch.equal(mine["boxes"][0], reference["boxes"][0])  # the best survives any cap
        assert len(mine["boxes"]) <= 20 < len(reference["boxes"])


@pytest.mark.parametrize("device", DEVICES)
def test_batched_paste_equals_torchvision_paste_on_odd_boxes(device):
    """Boxes touching the borders, thinner than a pixel, larger than the frame."""
    generator = torch.Generator().manual_seed(0)
    height, width = 90, 130
    corners = torch.rand(60, 2, generator=generator) * torch.tensor([width, height])
    sizes = torch.rand(60, 2, generator=generator) ** 3 * torch.tensor([width, height])
    boxes = torch.cat([corners, corners + sizes], dim=1)
    boxes[:4] = torch.tensor([[0, 0, width, height], [3.0, 4.0, 3.2, 4.1],
                              [width - 1.0, height - 1.0, width, height], [-5, -5, 2 * width, 20]])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    masks = torch.rand(60, 1, 28, 28, generator=generator)
    expected = paste_masks_in_image(masks, boxes, (height, width))
    pasted = paste_masks(masks.to(device), boxes.to(device), height, width).cpu()
    assert pasted.shape == (60, 1, height, width)
    assert (pasted - expected).abs().max().item() < 1e-6
    assert torch.equal(pasted > 0.5, expected > 0.5)
    assert paste_masks(masks[:0], boxes[:0], height, width).shape == (0, 1, height, width)


def host_syncs(predictor: Predictor, frames) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as trace:
        predictor.predict(frames)
    names = ("aten::_local_scalar_dense", "aten::item")
    return sum(event.count for event in trace.key_averages() if event.key in names)


@pytest.mark.parametrize("model", ["maskrcnn_resnet50_fpn", "demo"])
def test_host_syncs_per_batch_do_not_grow_with_instances(frames, model):
    counts = {}
    for cap in (5, 50):
        predictor = Predictor(PredictorConfig(
            model=model, weights="none", min_size=128, max_size=160, score_threshold=0.0,
            max_instances=cap, proposals=100, device="cpu"))
        batch = frames[:2]
        assert all(len(p) == cap for p in predictor.predict(batch))  # warm-up, and the premise
        counts[cap] = host_syncs(predictor, batch)
    assert counts[50] == counts[5], counts
