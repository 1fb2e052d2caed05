"""`maskray ablate`: trains every value of one design switch under the same budget and compares.

In the manner of the Mask R-CNN paper's table 2: one row per variant, mask AP / AP50 / AP75
(COCO, in percent) on a held-out synthetic shapes set, plus box AP and the training time.
Every variant sees the same data, seed, steps and schedule; only the switch differs.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from maskray.jobs.training.synthetic import synthetic_dataset
from maskray.jobs.ray_local import ray_session
from maskray.jobs.training.train import TrainConfig, train
from maskray.models.errors import UsageError
from maskray.pipeline.text_table import text_table
from maskray.models.choices import BACKBONES, MASK_HEADS, MASK_LOSSES, ROI_OPS

SWITCHES = {
    "roi-op": ("roi_op", ROI_OPS),
    "mask-loss": ("mask_loss", MASK_LOSSES),
    "mask-head": ("mask_head", MASK_HEADS),
    "backbone": ("backbone", tuple(b for b in BACKBONES if b != "resnet18")),  # the paper's: R50/101, X101
}
TRAIN_SEED, VAL_SEED = 1, 2  # the held-out set never overlaps the training set


def format_table(switch: str, rows: list[dict]) -> str:
    """A plain-text table: variant, mask AP, AP50, AP75 (percent), box AP, train minutes."""
    cells = [[row["variant"], *(f"{100 * row[key]:.1f}" for key in ("segm_AP", "segm_AP50", "segm_AP75", "bbox_AP")),
              f"{row['train_seconds'] / 60:.1f}"] for row in rows]
    return text_table([switch, "AP", "AP50", "AP75", "APbox", "min"], cells, right=range(1, 6), rule=True)


def ablate(switch: str, output, *, model: str = "demo", steps: int = 300, train_images: int = 400,
           val_images: int = 50, batch_size: int = 4, lr: float = 1e-3, min_size: int = 192,
           max_size: int = 256, threads: int = 1, cpu: bool = False, seed: int = 0,
           values: list[str] | None = None, echo=print) -> dict:
    """Trains each value of `switch` for `steps` steps; writes OUT/ablation.json; returns it."""
    if switch not in SWITCHES:
        raise UsageError(f"unknown switch {switch!r}; choose one of: {', '.join(SWITCHES)}")
    field, choices = SWITCHES[switch]
    values = list(values or choices)
    unknown = [v for v in values if v not in choices]
    if unknown:
        raise UsageError(f"{switch} has no value {unknown[0]!r}; choose from: {', '.join(choices)}")
    output = Path(output)
    data = synthetic_dataset(output / "data" / "train", images=train_images, seed=TRAIN_SEED)
    held_out = synthetic_dataset(output / "data" / "val", images=val_images, seed=VAL_SEED)
    with ray_session(min_cpus=threads, logging_level=logging.ERROR):  # one Ray for every variant
        rows = [_train_variant(switch, field, value, data, held_out, output, model=model, steps=steps,
                               batch_size=batch_size, lr=lr, min_size=min_size, max_size=max_size,
                               threads=threads, cpu=cpu, seed=seed, echo=echo)
                for value in values]
    report = {"switch": switch, "field": field, "model": model, "steps": steps, "batch_size": batch_size,
              "train_images": train_images, "val_images": val_images, "min_size": min_size,
              "seed": seed, "rows": rows}
    (output / "ablation.json").write_text(json.dumps(report, indent=2))
    echo(format_table(switch, rows))
    return report


def _train_variant(switch, field, value, data, held_out, output, *, model, steps, batch_size, lr,
                   min_size, max_size, threads, cpu, seed, echo) -> dict:
    """Trains one variant and returns its table row (held-out COCO scores, time, last loss)."""
    echo(f"--- {switch} = {value}: {steps} steps")
    config = TrainConfig(
        images=str(data.images_dir), annotations=str(data.images_json),
        val_images=str(held_out.images_dir), val_annotations=str(held_out.images_json),
        output=str(output / f"{field}-{value}"), model=model, steps=steps, batch_size=batch_size,
        lr=lr, warmup_steps=min(100, steps // 5), min_size=min_size, max_size=max_size,
        seed=seed, threads=threads, cpu=cpu, checkpoint_every=max(steps // 2, 1),
        log_every=max(steps // 20, 1), **{field: value},
    )
    started = time.perf_counter()
    summary = train(config, echo=echo)
    return {"variant": value, **summary["eval"], "train_seconds": time.perf_counter() - started,
            "final_loss": summary["metrics"].get("loss")}
