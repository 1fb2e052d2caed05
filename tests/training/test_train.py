"""Training: each design switch learns, Ray Train runs checkpoint and resume, and the trained
checkpoint loads in a real `submit` job with --weights PATH."""

import json

import pytest
import torch

pytest.importorskip("ray")  # the training modules import Ray (Ray Train) themselves

from maskray.jobs.training.train import TrainConfig, latest_checkpoint, train
from maskray.jobs.training.train_loop import build_training_model
from maskray.models.build import build_model
from maskray.jobs.training.coco_dataset import CocoDataset, collate
from maskray.jobs.training.shapes import generate_shapes
from submit_helpers import local_ray

SIZE = 96


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return generate_shapes(root, images=4, seed=3, width=SIZE, height=SIZE, max_shapes=3)


def _config(**changes):
    config = dict(model="demo", seed=0, min_size=SIZE, max_size=SIZE, backbone=None,
                  roi_op="align", mask_loss="sigmoid", mask_head="fcn")
    config.update(changes)
    return config


@pytest.mark.parametrize("switch", [{}, {"roi_op": "pool"}, {"mask_loss": "softmax"}, {"mask_head": "mlp"}],
                         ids=["align-sigmoid-fcn", "roi-pool", "softmax-loss", "mlp-head"])
def test_a_few_steps_lower_the_loss_for_each_switch_value(tiny, switch):
    torch.manual_seed(0)
    dataset = CocoDataset(tiny.images_dir, tiny.images_json)
    images, targets = collate([dataset[0], dataset[1]])
    model = build_training_model(_config(**switch), dataset)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(6):
        losses = model(list(images), list(targets))
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append((float(total.detach()), float(losses["loss_mask"].detach())))
    first, last = history[:2], history[-2:]
    assert sum(t for t, _ in last) < 0.8 * sum(t for t, _ in first)
    assert sum(m for _, m in last) < sum(m for _, m in first)


@pytest.fixture(scope="module")
def ray_local():
    with local_ray():
        yield


def _log(output):
    return [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.ray
def test_ray_train_checkpoints_resumes_and_the_model_loads_in_submit(tiny, tmp_path, ray_local):
    out = tmp_path / "run"
    config = TrainConfig(images=str(tiny.images_dir), annotations=str(tiny.images_json), output=str(out),
                         val_images=str(tiny.images_dir), val_annotations=str(tiny.images_json),
                         model="demo", roi_op="pool", mask_head="mlp", steps=3, batch_size=2,
                         min_size=SIZE, max_size=SIZE, log_every=1, checkpoint_every=2, warmup_steps=1)
    summary = train(config, echo=lambda line: None)
    assert [row["step"] for row in _log(out)] == [1, 2, 3]
    assert all(row["loss"] > 0 and row["step_seconds"] > 0 and "loss_mask" in row for row in _log(out))
    assert latest_checkpoint(out).name == "checkpoint_step_0000003"
    scores = json.loads((out / "eval.json").read_text())
    assert {"segm_AP", "segm_AP50", "segm_AP75", "bbox_AP"} <= set(scores)
    # The run's summary reports the scores it wrote, and they are scores pycocotools computed
    # over detections (-1 means it found nothing to score; a real AP lies in [0, 1]).
    assert summary["eval"] == scores
    assert all(0.0 <= scores[name] <= 1.0 for name in ("segm_AP", "segm_AP50", "bbox_AP")), scores

    messages = []
    config.steps = 5  # the same command with a longer budget continues from step 3
    train(config, echo=messages.append)
    assert any("resuming from" in m and "checkpoint_step_0000003" in m for m in messages)
    assert [row["step"] for row in _log(out)] == [1, 2, 3, 4, 5]

    saved = torch.load(out / "model.pt", weights_only=True)
    assert saved["maskray_checkpoint"] == 1
    assert saved["recipe"]["roi_op"] == "pool" and saved["recipe"]["mask_head"] == "mlp"
    model, weights_id = build_model("maskrcnn_resnet50_fpn", str(out / "model.pt"), score_threshold=0.0,
                                    max_instances=5, min_size=SIZE, max_size=SIZE)
    assert weights_id.startswith("file:")
    assert all(torch.equal(value.float(), saved["state_dict"][key].float())
               for key, value in model.state_dict().items() if key in saved["state_dict"])

    from maskray.jobs.launch import run_job
    from maskray.jobs.spec import JobSpec

    result = tmp_path / "result"
    spec = JobSpec(sources=[str(tiny.images_dir)], output=str(result), model="demo",
                   weights=str(out / "model.pt"), min_size=SIZE, max_size=SIZE, score_threshold=0.0,
                   max_instances=5, batch_size=2)
    assert run_job(spec) == 0
    job = json.loads((result / "_job.json").read_text())
    assert weights_id in json.dumps(job)
    assert (result / "_SUCCESS").exists()


def test_roi_pool_variant_reads_the_level_roialign_reads_but_quantises():
    from torchvision.ops import MultiScaleRoIAlign, roi_pool

    from maskray.models.variants import MultiScaleRoIPool

    torch.manual_seed(0)
    features = {"0": torch.rand(1, 4, 32, 32), "1": torch.rand(1, 4, 16, 16), "2": torch.rand(1, 4, 8, 8)}
    boxes = [torch.tensor([[1.3, 2.6, 12.2, 11.7], [0.0, 0.0, 90.0, 100.0], [5.5, 7.1, 127.0, 120.9]])]
    align = MultiScaleRoIAlign(["0", "1", "2"], 7, 2)
    align(features, boxes, [(128, 128)])
    pooled = MultiScaleRoIPool(["0", "1", "2"], 7)(features, boxes, [(128, 128)])
    levels = align.map_levels(boxes).tolist()
    for i, level in enumerate(levels):
        scale = 0.25 / 2 ** level
        rois = torch.cat([torch.zeros(1, 1), boxes[0][i:i + 1]], dim=1)
        assert torch.equal(pooled[i], roi_pool(features[str(level)], rois, (7, 7), scale)[0])
    assert not torch.allclose(pooled, align(features, boxes, [(128, 128)]))


def test_softmax_mask_loss_is_small_for_the_right_class_and_large_for_another():
    from maskray.models.variants import softmax_mask_loss

    masks = [torch.zeros(1, 32, 32, dtype=torch.uint8)]
    masks[0][0, 8:24, 8:24] = 1
    box = [torch.tensor([[10.0, 10.0, 22.0, 22.0]])]  # inside the object: every target pixel is it
    logits = torch.full((1, 4, 14, 14), -10.0)
    logits[0, 2] = 10.0  # every pixel says class 2, and the object is class 2
    right = softmax_mask_loss(logits, box, masks, [torch.tensor([2])], [torch.tensor([0])])
    wrong = softmax_mask_loss(logits, box, masks, [torch.tensor([3])], [torch.tensor([0])])
    assert right < 1e-3 < 10 < wrong
