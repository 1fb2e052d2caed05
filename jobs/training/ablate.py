"""`maskray ablate`: trains every value of the paper's design switches under one budget, per seed.

In the manner of the Mask R-CNN paper's table 2: one row per variant, mask AP / AP50 / AP75 and
box AP (COCO, percent) on a held-out synthetic shapes set, as mean ± standard deviation over
seeds with the min-max range. Every variant sees the same training images, steps and schedule;
the seed sets the initialisation and the data order; the held-out set never changes.

    OUT/data/{train,val}/                the synthetic shapes (fixed seeds)
    OUT/budget.json                      the shared budget: a second call must match it
    OUT/runs/<variant>/seed-<s>/         one training run (train.py's folder) + result.json
    OUT/<switch>.json                    every run of the switch's variants, their summary, verdict

All switches vary one field of the same baseline (RoIAlign, sigmoid, FCN head, the model's
backbone), so the baseline's runs are trained once and shared; a finished run is never
trained again, which also makes an interrupted ablation resume where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from maskray.jobs.ray_local import ray_session
from maskray.jobs.training.ablation_summary import PAPER, format_summary, summarize, verdict
from maskray.jobs.training.synthetic import synthetic_dataset
from maskray.jobs.training.train import TrainConfig, train
from maskray.models.choices import MASK_HEADS, MASK_LOSSES, ROI_OPS
from maskray.errors import UsageError
from maskray.models.catalog import get_spec

SWITCHES = {"roi-op": "roi_op", "mask-loss": "mask_loss", "mask-head": "mask_head", "backbone": "backbone"}
TRAIN_SEED, VAL_SEED = 1, 2  # the held-out set never overlaps the training set


def switch_values(switch: str, model: str) -> tuple[str, ...]:
    """The values compared for `switch`, the paper's choice (or the shallower backbone) first."""
    if switch == "backbone":
        # The paper compares R50 and R101; each model's catalog entry names its pair (the demo
        # network compares R18 and R34, both cut after three stages, at CPU cost).
        return get_spec(model).ablation_backbones
    return {"roi-op": ROI_OPS, "mask-loss": MASK_LOSSES, "mask-head": MASK_HEADS}[switch]


def ablate(switches, output, *, seeds: int = 3, first_seed: int = 0, model: str = "demo",
           steps: int = 300, train_images: int = 400, val_images: int = 50, batch_size: int = 4,
           lr: float = 1e-3, min_size: int = 192, max_size: int = 256, threads: int = 1,
           cpu: bool = False, echo=print) -> dict[str, dict]:
    """Trains the variants of each switch for each seed (reusing finished runs); writes
    OUT/<switch>.json per switch and returns those reports by switch."""
    switches = [switches] if isinstance(switches, str) else list(dict.fromkeys(switches))
    unknown = [s for s in switches if s not in SWITCHES]
    if unknown or not switches:
        raise UsageError(f"unknown switch {(unknown or [''])[0]!r}; choose from: {', '.join(SWITCHES)}")
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, not {seeds}")
    output = Path(output)
    budget = {"model": model, "steps": steps, "batch_size": batch_size, "lr": lr, "train_images": train_images,
              "val_images": val_images, "min_size": min_size, "max_size": max_size, "threads": threads,
              "device": "cpu" if cpu or not _has_cuda() else "cuda"}
    _hold_budget(output, budget)
    baseline = {"roi_op": ROI_OPS[0], "mask_loss": MASK_LOSSES[0], "mask_head": MASK_HEADS[0],
                "backbone": get_spec(model).backbone}
    seed_list = list(range(first_seed, first_seed + seeds))
    variants = {s: [{**baseline, SWITCHES[s]: value} for value in switch_values(s, model)] for s in switches}
    # Seed by seed, so that an ablation cut short still has whole seeds.
    order = list(dict.fromkeys((_key(v), seed) for seed in seed_list for s in switches for v in variants[s]))
    configs = {_key(v): v for s in switches for v in variants[s]}
    missing = [(key, seed) for key, seed in order if not _result_path(output, key, seed).exists()]
    echo(f"{len(order)} runs ({len(order) - len(missing)} already done), {steps} steps each")
    if missing:
        data = synthetic_dataset(output / "data" / "train", images=train_images, seed=TRAIN_SEED)
        held_out = synthetic_dataset(output / "data" / "val", images=val_images, seed=VAL_SEED)
        with ray_session(min_cpus=threads, logging_level=logging.ERROR):  # one Ray for every run
            for number, (key, seed) in enumerate(missing, start=1):
                echo(f"--- run {number}/{len(missing)}: {key}, seed {seed}")
                _train_run(output, key, configs[key], seed, data, held_out, budget, cpu=cpu, echo=echo)
    reports = {}
    for switch in switches:
        field = SWITCHES[switch]
        rows = []
        for variant in variants[switch]:
            runs = [json.loads(_result_path(output, _key(variant), seed).read_text()) for seed in seed_list]
            rows.append({"variant": variant[field], "config": variant, "runs": runs, "summary": summarize(runs)})
        report = {"switch": switch, "field": field, "budget": budget, "seeds": seed_list,
                  "train_seed": TRAIN_SEED, "val_seed": VAL_SEED, "paper": PAPER.get(switch),
                  "variants": rows, "verdict": verdict(switch, rows)}
        (output / f"{switch}.json").write_text(json.dumps(report, indent=2))
        echo(format_summary(report))
        reports[switch] = report
    return reports


def _train_run(output: Path, key: str, variant: dict, seed: int, data, held_out, budget: dict, *,
               cpu: bool, echo) -> None:
    """Trains one variant with one seed; its result.json is written last (a run is done once)."""
    steps = budget["steps"]
    folder = output / "runs" / key / f"seed-{seed}"
    config = TrainConfig(
        images=str(data.images_dir), annotations=str(data.images_json),
        val_images=str(held_out.images_dir), val_annotations=str(held_out.images_json),
        output=str(folder), model=budget["model"], steps=steps, batch_size=budget["batch_size"],
        lr=budget["lr"], warmup_steps=min(100, steps // 5), min_size=budget["min_size"],
        max_size=budget["max_size"], seed=seed, threads=budget["threads"], cpu=cpu,
        checkpoint_every=max(steps // 2, 1), log_every=max(steps // 20, 1), **variant,
    )
    started = time.perf_counter()
    summary = train(config, echo=echo)
    result = {"seed": seed, **summary["eval"], "train_seconds": time.perf_counter() - started,
              "final_loss": summary["metrics"].get("loss")}
    path = _result_path(output, key, seed)
    path.with_suffix(".tmp").write_text(json.dumps(result, indent=2))
    path.with_suffix(".tmp").replace(path)


def _hold_budget(output: Path, budget: dict) -> None:
    """Runs are only comparable under one budget: a folder keeps the first one it was given."""
    path = output / "budget.json"
    if path.exists():
        held = json.loads(path.read_text())
        changed = [name for name in budget if held.get(name) != budget[name]]
        if changed:
            raise UsageError(f"{output} holds runs trained with another budget (differs in {', '.join(changed)});"
                             " use the same options or another --output")
        return
    output.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(budget, indent=2))


def _key(variant: dict) -> str:
    """A run folder's name: the variant's four switch values."""
    return "-".join(variant[field] for field in SWITCHES.values())


def _result_path(output: Path, key: str, seed: int) -> Path:
    return output / "runs" / key / f"seed-{seed}" / "result.json"


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
