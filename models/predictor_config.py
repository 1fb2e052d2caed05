"""`PredictorConfig`: what model to run and how, with the defaults of `maskray submit`.

Torch-free plain data. Its defaults are the one place the model settings' defaults are
written: `jobs.spec.JobSpec` takes its fields' defaults from here and `maskray submit`'s
options take theirs from `JobSpec`, so the CLI, a job's spec and a Predictor of one's own
agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

PRE_NMS_TOP = 1000  # box x class candidates per image before NMS; Detectron2's figure


@dataclass(frozen=True)
class PredictorConfig:
    """What to run and how; `None` sizes mean the model's defaults."""

    model: str = "maskrcnn_resnet50_fpn"
    weights: str = "coco"
    weights_sha256: str | None = None  # checked against bytes handed to the Predictor
    min_size: int | None = None
    max_size: int | None = None
    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    max_instances: int = 100
    device: str = "auto"  # auto | cpu | cuda (models.choices.DEVICES)
    precision: str = "fp32"  # models.choices.PRECISIONS (fp16, bf16 on CUDA only)
    seed: int = 0  # initialisation of `none` weights
    proposals: int | None = None  # region proposals per image; fewer is faster (None: model's)
    classes: tuple | None = None  # category names or ids to keep (None: all)
    class_thresholds: tuple = ()  # ((category name or id, threshold), ...) over score_threshold
    pre_nms_top: int | None = PRE_NMS_TOP  # box x class candidates per image into NMS (None: all)
