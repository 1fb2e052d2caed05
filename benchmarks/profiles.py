"""The settings every measured run of one profile shares (model, sizes, thresholds, batch).

CPU: the issue's settings for a 2-core machine. Random weights with score threshold 0 and
at most 20 instances per frame, so every frame has 20 masks to threshold and encode.
GPU: 720p frames at their own size, AMP (fp16), batches of 8.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    model: str = "maskrcnn_resnet50_fpn"
    weights: str = "none"
    min_size: int = 320
    max_size: int = 1333
    score_threshold: float = 0.0
    mask_threshold: float = 0.5
    max_instances: int = 20
    batch_size: int = 4
    precision: str = "fp32"
    device: str = "cpu"  # cpu | cuda
    threads: int = 2  # torch intra-op threads of the reference (= the one worker's CPUs)

    def submit_flags(self) -> list[str]:
        """The same settings as `maskray submit` flags."""
        flags = [
            "--model", self.model, "--weights", self.weights,
            "--min-size", str(self.min_size), "--max-size", str(self.max_size),
            "--score-threshold", str(self.score_threshold),
            "--mask-threshold", str(self.mask_threshold),
            "--max-instances", str(self.max_instances),
            "--batch-size", str(self.batch_size), "--precision", self.precision,
        ]
        return flags + (["--cpu"] if self.device == "cpu" else [])

    def to_dict(self) -> dict:
        return asdict(self)


CPU = Profile("cpu")
GPU = Profile("gpu", min_size=720, max_size=1280, batch_size=8, precision="fp16", device="cuda")
