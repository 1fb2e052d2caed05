"""Batched inference: RGB frames in, per-frame instances (boxes, RLE masks, keypoints) out.

A `Predictor` loads its model once and runs every batch under `torch.inference_mode()`, on
CUDA when there is one (with autocast at the chosen precision), on the CPU otherwise. The
model pastes mask probabilities into each frame's full size on its device; they are
thresholded and RLE-encoded there, so only run lengths (not HxW float masks) reach the CPU.

A batch crosses between host and device once each way (models/host_transfer.py): frames in
one pinned buffer, results (boxes, scores, labels, keypoints, mask areas and run lengths of
every frame) back in one buffer. Around the model, a batch costs two host syncs (the number
of RLE runs, the results), however many frames and instances it has.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

from maskray.errors import UsageError
from maskray.models.build import build_model
from maskray.models.catalog import get_spec
from maskray.models.choices import DEVICES, PRECISIONS
from maskray.models.class_filter import build_class_filter
from maskray.models.frame_prediction import FramePrediction
from maskray.models.host_transfer import fetch, frames_to_device
from maskray.models.predictor_config import PredictorConfig
from maskray.models.rle import counts_from_runs, mask_runs


class Predictor:
    """Loads `config.model` with `config.weights` once; `predict` runs batches of frames.

    `weights_data`: the weights file's bytes, fetched by a job's driver (replicas read nothing
    themselves); without them `config.weights` is read here."""

    def __init__(self, config: PredictorConfig, weights_data: bytes | None = None):
        _validate(config)
        self.config = config
        self.device = _pick_device(config.device)
        if self.device.type == "cpu" and config.precision != "fp32":
            raise UsageError(
                f"precision {config.precision} needs a CUDA GPU; on the CPU use --precision fp32"
            )
        self.class_filter = build_class_filter(
            get_spec(config.model).categories, classes=config.classes,
            score_threshold=config.score_threshold, class_thresholds=dict(config.class_thresholds))
        model, self.weights_id = build_model(
            config.model,
            config.weights,
            seed=config.seed,
            weights_data=weights_data,
            weights_sha256=config.weights_sha256,
            min_size=config.min_size,
            max_size=config.max_size,
            score_threshold=self.class_filter.lowest_threshold,
            max_instances=config.max_instances,
            proposals=config.proposals,
            pre_nms_top=config.pre_nms_top,
            # Classes and per-class thresholds act before the NMS, so other classes neither
            # take candidate or instance slots nor cost NMS work; `_convert` applies the same
            # filter to models without our RoI heads.
            candidate_filter=self.class_filter if self.class_filter.filters else None,
        )
        self.model = model.to(self.device)
        self.spec = model.maskray_spec
        self._detects_nothing = getattr(model, "detects_nothing", False)  # the null model
        self.forward_s = 0.0  # seconds inside the model itself, over all calls (profiling)

    @property
    def embedding_size(self) -> int | None:
        """Length of each instance's appearance vector (the box head's output), or None for a
        model without one."""
        predictor = getattr(getattr(self.model, "roi_heads", None), "box_predictor", None)
        score = getattr(predictor, "cls_score", None)
        return int(score.in_features) if score is not None else None

    def predict(self, frames: list[np.ndarray]) -> list[FramePrediction]:
        """Instances of each frame (HxWx3 uint8 RGB arrays, any sizes), in input order."""
        frames = list(frames)
        for index, frame in enumerate(frames):
            _check_frame(frame, index)
        if not frames:
            return []
        if self._detects_nothing:
            return [self._empty(f.shape[0], f.shape[1]) for f in frames]
        images = frames_to_device(frames, self.device)
        with torch.inference_mode(), self._autocast():
            images = [image.permute(2, 0, 1).float().div_(255.0) for image in images]
            began = time.perf_counter()
            outputs = self.model(images)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # the conversion waits for the GPU anyway
            self.forward_s += time.perf_counter() - began
            return self._convert(outputs, frames)

    def _autocast(self):
        dtype = PRECISIONS[self.config.precision]
        if dtype is None or self.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=getattr(torch, dtype))

    def _convert(self, outputs: list[dict[str, torch.Tensor]],
                 frames: list[np.ndarray]) -> list[FramePrediction]:
        """The instances of every frame, ordered and thresholded on the device, fetched at once.

        Instances the class filter drops (below their category's threshold, or of a category
        not asked for) are ordered last, marked with score -1, and dropped on the host, which
        needs no sync to count them.
        """
        fields: dict[str, torch.Tensor] = {}
        binary_masks = []
        for index, output in enumerate(outputs):
            scores = output["scores"].float()
            keep = self.class_filter.keep(output["labels"], scores)
            ranked = torch.where(keep, scores, -1.0)
            order = torch.argsort(ranked, descending=True, stable=True)[: self.config.max_instances]
            fields[f"{index}.scores"] = ranked[order]
            fields[f"{index}.boxes"] = output["boxes"][order].float().reshape(-1, 4)
            fields[f"{index}.labels"] = output["labels"][order].to(torch.int32)
            if "masks" in output:
                binary = output["masks"][order, 0] > self.config.mask_threshold  # (N, H, W)
                binary_masks.append(binary)
                fields[f"{index}.areas"] = binary.sum(dim=(1, 2)).to(torch.int64)
            if "keypoints" in output:
                points = output["keypoints"][order].float().clone()
                points[:, :, 2] = output["keypoints_scores"][order].float()
                fields[f"{index}.keypoints"] = points
            if "embeddings" in output:
                fields[f"{index}.embeddings"] = output["embeddings"][order].float()
        if binary_masks:
            for name, value in mask_runs(binary_masks).items():
                fields[f"runs.{name}"] = value.to(binary_masks[0].device)
        host = fetch(fields)
        counts = iter(counts_from_runs(host["runs.lengths"], host["runs.runs_per_mask"],
                                       host["runs.starts_with_one"]) if binary_masks else [])
        predictions = []
        for index, frame in enumerate(frames):
            scores = host[f"{index}.scores"]
            labels = host[f"{index}.labels"]
            masks_rle = [next(counts) for _ in range(len(scores))] if f"{index}.areas" in host else None
            ranked = FramePrediction(
                height=frame.shape[0],
                width=frame.shape[1],
                boxes=host[f"{index}.boxes"],
                scores=scores,
                category_ids=labels,
                categories=[self.spec.categories.get(int(c), str(int(c))) for c in labels],
                masks_rle=masks_rle,
                mask_areas=host[f"{index}.areas"] if masks_rle is not None else None,
                keypoints=host.get(f"{index}.keypoints"),
                embeddings=host.get(f"{index}.embeddings"),
            )
            predictions.append(ranked[: int((scores >= 0).sum())])  # the filtered ones come last
        return predictions

    def _empty(self, height: int, width: int) -> FramePrediction:
        has_masks = "masks" in self.spec.tasks
        has_keypoints = "keypoints" in self.spec.tasks
        return FramePrediction(
            height=height,
            width=width,
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            category_ids=np.zeros((0,), np.int32),
            categories=[],
            masks_rle=[] if has_masks else None,
            mask_areas=np.zeros((0,), np.int64) if has_masks else None,
            keypoints=np.zeros((0, len(self.spec.keypoint_names), 3), np.float32)
            if has_keypoints else None,
        )


def _validate(config: PredictorConfig) -> None:
    if config.device not in DEVICES:
        raise UsageError(f"unknown device {config.device!r}; choose one of: {', '.join(DEVICES)}")
    if config.precision not in PRECISIONS:
        raise UsageError(
            f"unknown precision {config.precision!r}; choose one of: {', '.join(PRECISIONS)}"
        )
    if not 0.0 <= config.score_threshold <= 1.0:
        raise UsageError(f"score threshold must be within 0..1, got {config.score_threshold}")
    if not 0.0 <= config.mask_threshold <= 1.0:
        raise UsageError(f"mask threshold must be within 0..1, got {config.mask_threshold}")
    if config.pre_nms_top is not None and config.pre_nms_top < 1:
        raise UsageError(f"pre-NMS top must be at least 1, got {config.pre_nms_top}")
    if config.proposals is not None and config.proposals < 1:
        raise UsageError(f"proposals must be at least 1, got {config.proposals}")
    if config.max_instances < 1:
        raise UsageError(f"max instances must be at least 1, got {config.max_instances}")
    for name in ("min_size", "max_size"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise UsageError(f"{name.replace('_', ' ')} must be a positive number of pixels")


def _pick_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda was asked for but no CUDA GPU is visible; use --cpu")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def _check_frame(frame, index: int) -> None:
    if not isinstance(frame, np.ndarray):
        raise UsageError(f"frame {index} is a {type(frame).__name__}, not a numpy array")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise UsageError(
            f"frame {index} must be HxWx3 uint8 RGB, got shape {frame.shape} dtype {frame.dtype}"
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise UsageError(f"frame {index} is empty ({frame.shape[0]}x{frame.shape[1]} pixels)")
