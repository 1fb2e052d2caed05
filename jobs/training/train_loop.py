"""What each Ray Train worker runs: data-parallel SGD over a COCO dataset, with checkpoints.

Rank 0 writes the logs and the checkpoints; every rank reports the same number of times,
as Ray Train requires. A checkpoint is a folder with `model.pt` (a maskray checkpoint:
recipe + state dict, loadable by `--weights PATH`) and `trainer.pt` (optimizer, schedule,
step) from which a later run resumes.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import torch

from maskray.models.build import build_model
from maskray.models.weights import save_checkpoint
from maskray.jobs.training.coco_dataset import CocoDataset, collate

MODEL_FILE = "model.pt"
TRAINER_FILE = "trainer.pt"


def build_training_model(config: dict, dataset: CocoDataset) -> torch.nn.Module:
    """The catalog model of `config` for the dataset's categories and keypoints, in train mode."""
    model, _ = build_model(
        config["model"], "none", seed=config["seed"],
        min_size=config["min_size"], max_size=config["max_size"],
        categories=dataset.categories, num_classes=max(dataset.categories) + 1,
        # Data without keypoints: no names, so the demo network leaves its keypoint branch out.
        keypoint_names=(tuple(dataset.keypoint_names) if dataset.with_keypoints else ())
        if _has_keypoints(config["model"]) else None,
        backbone=config.get("backbone"), roi_op=config["roi_op"],
        mask_loss=config["mask_loss"], mask_head=config["mask_head"],
    )
    return model.train()


def training_dataset(config: dict):
    """The run's data: a Cityscapes root's train split, or a COCO dataset (images without
    instances left out)."""
    if config.get("cityscapes"):
        from maskray.jobs.training.cityscapes_dataset import CityscapesDataset

        return CityscapesDataset(config["cityscapes"], "train")
    return CocoDataset(config["images"], config["annotations"], skip_empty=True)


def _has_keypoints(name: str) -> bool:
    from maskray.models.catalog import get_spec

    return "keypoints" in get_spec(name).tasks


def learning_rate(step: int, config: dict) -> float:
    """Linear warm-up, then cosine decay to 5% of the base rate at the last step."""
    base, warmup, total = config["lr"], config["warmup_steps"], max(config["steps"], 1)
    if step < warmup:
        return base * (0.1 + 0.9 * step / warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _batches(loader, sampler, generator, seed: int, start_epoch: int):
    """Endless batches, epoch after epoch; each epoch's order depends on its number alone,
    so a resumed run sees the orders an uninterrupted one would."""
    epoch = start_epoch
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        generator.manual_seed(seed * 100003 + epoch)
        for batch in loader:
            yield epoch, batch
        epoch += 1


def _to_device(images, targets, device):
    images = [image.to(device, non_blocking=True) for image in images]
    targets = [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
               for t in targets]
    return images, targets


def train_loop_per_worker(config: dict) -> None:
    """Ray Train's entry point on each worker."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(config["threads"])))  # Ray sets OMP threads to 1 otherwise
    torch.manual_seed(config["seed"] + rank)
    device = ray.train.torch.get_device()

    dataset = training_dataset(config)
    sampler = (torch.utils.data.DistributedSampler(dataset, world, rank, shuffle=True, seed=config["seed"])
               if world > 1 else None)
    generator = torch.Generator().manual_seed(config["seed"])
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config["batch_size"], shuffle=sampler is None, sampler=sampler,
        collate_fn=collate, num_workers=config["loader_workers"], generator=generator, drop_last=True,
    )
    model = build_training_model(config, dataset)
    model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config["lr"], weight_decay=config["weight_decay"])

    step, epoch = 0, 0
    # A worker restarted by Ray gets the run's latest checkpoint; a new run of the same
    # command gets the newest one found in its output folder (config["resume_from"]).
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and config.get("resume_from"):
        checkpoint = ray.train.Checkpoint.from_directory(config["resume_from"])
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved = torch.load(Path(folder) / MODEL_FILE, map_location="cpu", weights_only=True)
            trainer = torch.load(Path(folder) / TRAINER_FILE, map_location="cpu", weights_only=True)
        getattr(model, "module", model).load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(trainer["optimizer"])
        step, epoch = int(trainer["step"]), int(trainer["epoch"])

    log_path = Path(config["output"]) / "train_log.jsonl"
    started = time.perf_counter()
    window = {"steps": 0, "images": 0, "seconds": 0.0, "data_seconds": 0.0, "losses": {}}
    fetch_started = time.perf_counter()
    batches = _batches(loader, sampler, generator, config["seed"], epoch)
    while step < config["steps"]:
        epoch, (images, targets) = next(batches)
        images, targets = _to_device(images, targets, device)
        step_started = time.perf_counter()
        window["data_seconds"] += step_started - fetch_started
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config["amp"] and device.type == "cuda"):
            losses = model(images, targets)
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(parameters, config["clip_norm"])
        optimizer.step()
        step += 1
        fetch_started = time.perf_counter()
        window["seconds"] += fetch_started - step_started
        window["images"] += len(images) * world
        window["steps"] += 1
        for name, value in (("loss", total), *losses.items()):
            window["losses"][name] = window["losses"].get(name, 0.0) + float(value.detach())

        is_log = step % config["log_every"] == 0 or step == config["steps"]
        is_checkpoint = step % config["checkpoint_every"] == 0 or step == config["steps"]
        if not (is_log or is_checkpoint):
            continue
        metrics = {
            "step": step, "epoch": epoch, "lr": learning_rate(step - 1, config),
            **{name: value / window["steps"] for name, value in window["losses"].items()},  # window means
            "step_seconds": window["seconds"] / window["steps"],  # forward + backward + update
            "data_seconds": window["data_seconds"] / window["steps"],  # waiting for the next batch
            "images_per_second": window["images"] / max(window["seconds"] + window["data_seconds"], 1e-9),
            "elapsed_seconds": time.perf_counter() - started,
        }
        window = {"steps": 0, "images": 0, "seconds": 0.0, "data_seconds": 0.0, "losses": {}}
        if rank == 0 and is_log:
            with log_path.open("a") as log:
                log.write(json.dumps(metrics) + "\n")
        if is_checkpoint:
            _report_with_checkpoint(metrics, model, optimizer, step, epoch, rank)
        else:
            ray.train.report(metrics)


def _report_with_checkpoint(metrics, model, optimizer, step, epoch, rank) -> None:
    """Rank 0 hands Ray a checkpoint folder; the others report the metrics alone."""
    import ray.train

    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(model, Path(folder) / MODEL_FILE)
        torch.save({"optimizer": optimizer.state_dict(), "step": step, "epoch": epoch},
                   Path(folder) / TRAINER_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder),
                         checkpoint_dir_name=f"checkpoint_step_{step:07d}")
