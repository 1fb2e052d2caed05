"""`maskray train`: trains a catalog model on a COCO-format dataset with Ray Train.

Data parallel with Ray Train's TorchTrainer: one worker per GPU, or one CPU worker when there
is no GPU. Everything lands in the output folder:

    OUT/train_log.jsonl            one JSON line per `log_every` steps: losses, lr, timings
    OUT/run/checkpoint_step_N/     Ray Train checkpoints (model.pt + trainer.pt); the last
                                   `keep_checkpoints` are kept, and a re-run resumes from the newest
    OUT/model.pt                   the final maskray checkpoint: `maskray submit --weights OUT/model.pt`
    OUT/eval.json                  COCO AP (pycocotools) on the validation set, when one is given
    OUT/train_config.json          what was asked
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from maskray.jobs.ray_local import ray_session
from maskray.errors import MaskrayError, UsageError, first_line
from maskray.models.catalog import get_spec
from maskray.models.choices import BACKBONES, MASK_HEADS, MASK_LOSSES, ROI_OPS

RUN_NAME = "run"


@dataclass
class TrainConfig:
    """A training run; paths are local folders (the output must be reachable by every worker)."""

    images: str | None  # None with `cityscapes`
    annotations: str | None
    output: str
    val_images: str | None = None
    val_annotations: str | None = None
    model: str = "demo"
    backbone: str | None = None
    roi_op: str = "align"
    mask_loss: str = "sigmoid"
    mask_head: str = "fcn"
    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    clip_norm: float = 10.0
    min_size: int = 192
    max_size: int = 256
    seed: int = 0
    log_every: int = 20
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    workers: int | None = None  # default: one per GPU, else 1
    cpu: bool = False  # train on CPUs even where GPUs exist
    threads: int = 1  # torch threads per CPU worker (one avoids spin-waits on busy cores)
    loader_workers: int = 0
    amp: bool = True  # bf16 autocast on CUDA
    cityscapes: str | None = None  # a Cityscapes root: train on its train split, score on val

    def validate(self) -> None:
        get_spec(self.model)
        for value, name, choices in ((self.backbone or BACKBONES[0], "--backbone", BACKBONES),
                                     (self.roi_op, "--roi-op", ROI_OPS),
                                     (self.mask_loss, "--mask-loss", MASK_LOSSES),
                                     (self.mask_head, "--mask-head", MASK_HEADS)):
            if value not in choices:
                raise UsageError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        if self.cityscapes:
            from maskray.pipeline.cityscapes.files import ground_truth_index

            ground_truth_index(self.cityscapes, ["train"])  # a UsageError when it is not one
        for path in () if self.cityscapes else (self.images, self.annotations):
            if not path or not Path(path).exists():
                raise UsageError(f"training data not found: {path}")
        if (self.val_images is None) != (self.val_annotations is None):
            raise UsageError("give both --val-images and --val-annotations, or neither")
        if self.steps < 1 or self.batch_size < 1:
            raise UsageError("--steps and --batch-size must be at least 1")


def latest_checkpoint(output: str | Path) -> Path | None:
    """The newest complete checkpoint folder under OUT/run, or None."""
    from maskray.jobs.training.train_loop import MODEL_FILE, TRAINER_FILE

    run = Path(output) / RUN_NAME
    found = sorted(p for p in run.glob("checkpoint_step_*")
                   if (p / MODEL_FILE).is_file() and (p / TRAINER_FILE).is_file())
    return found[-1] if found else None


def _scaling(config: TrainConfig):
    """One worker per GPU; on CPUs one worker (or `workers`) with `threads` cores each."""
    import ray.train
    import torch

    gpus = 0 if config.cpu else torch.cuda.device_count()
    if gpus:
        return ray.train.ScalingConfig(num_workers=config.workers or gpus, use_gpu=True)
    return ray.train.ScalingConfig(num_workers=config.workers or 1, use_gpu=False,
                                   resources_per_worker={"CPU": config.threads})


@contextlib.contextmanager
def _follow_log(path: Path, steps: int, echo, every: float = 10.0):
    """Echoes the newest line of the training log every `every` seconds while training runs."""
    stop = threading.Event()

    def follow():
        shown = None
        while not stop.wait(every):
            try:
                lines = path.read_text().splitlines()
            except OSError:
                continue
            if lines and lines[-1] != shown:
                shown = lines[-1]
                row = json.loads(shown)
                echo(f"step {row['step']}/{steps}  loss {row['loss']:.3f}  {row['step_seconds']:.2f} s/step  "
                     f"{row['images_per_second']:.1f} images/s")

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def train(config: TrainConfig, *, address: str | None = None, echo=print) -> dict:
    """Runs (or resumes) training, writes OUT/model.pt, evaluates; returns a summary dict."""
    config.validate()
    from maskray.jobs.training.train_loop import MODEL_FILE

    output = Path(config.output).resolve()
    try:
        output.mkdir(parents=True, exist_ok=True)
        (output / "train_config.json").write_text(json.dumps(asdict(config), indent=2))
    except OSError as error:
        raise UsageError(f"cannot write to output {output}: {error.strerror or error}") from None
    resume = latest_checkpoint(output)
    if resume is not None:
        echo(f"resuming from {resume}")
    loop_config = dict(asdict(config), output=str(output),
                       **{name: str(Path(getattr(config, name)).resolve())
                          for name in ("images", "annotations", "cityscapes") if getattr(config, name)},
                       resume_from=str(resume) if resume else None)
    echo(f"training {config.model} for {config.steps} steps; losses and timings in {output / 'train_log.jsonl'}")
    # Workers' console lines stay out of the terminal: a failure comes back from fit() with its
    # traceback, and progress is echoed from train_log.jsonl (see _follow_log).
    with ray_session(address, min_cpus=config.threads, logging_level=logging.ERROR):
        result = _fit(config, loop_config, output, echo)
    final = latest_checkpoint(output)
    if final is None:
        raise MaskrayError(f"training finished without a checkpoint in {output / RUN_NAME}")
    shutil.copyfile(final / MODEL_FILE, output / "model.pt")
    summary = {"model": str(output / "model.pt"), "checkpoint": str(final),
               "metrics": dict(result.metrics or {})}
    echo(f"model written to {output / 'model.pt'}")
    if config.cityscapes:
        from maskray.jobs.training.cityscapes_validate import validate_run

        summary.update(validate_run(config, output, echo))
    elif config.val_images:
        from maskray.jobs.training.validate import evaluate_weights

        scores = evaluate_weights(str(output / "model.pt"), config.val_images, config.val_annotations,
                                  model=config.model, min_size=config.min_size, max_size=config.max_size)
        (output / "eval.json").write_text(json.dumps(scores, indent=2))
        summary["eval"] = scores
        echo("validation: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if k.endswith("AP")))
    return summary


def _fit(config: TrainConfig, loop_config: dict, output: Path, echo):
    """Ray Train's TorchTrainer over `train_loop_per_worker`; its result (Ray is up)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from maskray.jobs.training.train_loop import train_loop_per_worker

    try:
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config=loop_config,
            scaling_config=_scaling(config),
            run_config=ray.train.RunConfig(
                name=RUN_NAME, storage_path=str(output),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.keep_checkpoints),
                # Ray Train's per-report INFO lines would drown the log; losses go to train_log.jsonl.
                logging_config=ray.train.LoggingConfig(log_level="WARNING"),
            ),
        )
        with _follow_log(output / "train_log.jsonl", config.steps, echo):
            return trainer.fit()
    except ray.train.TrainingFailedError as error:
        # Ray Train quotes the worker's traceback: its last line is the original error's own.
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise MaskrayError(f"training failed: {first_line(lines[-1] if lines else error)} "
                           f"(checkpoints so far in {output / RUN_NAME})") from error


def export_weights(checkpoint: str | Path, destination: str | Path, *, half: bool = False) -> int:
    """Copies a maskray checkpoint's recipe and weights (floats as fp16 when `half`) to a file.

    How `models/weights/demo.pt` is made from a training run's OUT/model.pt: fp16 halves the
    file; the model loads it into fp32 parameters. Returns the file's size in bytes.
    """
    import torch

    from maskray.models.weights import save_checkpoint

    return save_checkpoint(torch.load(checkpoint, map_location="cpu", weights_only=True), destination, half=half)
