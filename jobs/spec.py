"""The job spec: what a user asked `maskray submit` to do, validated and serialisable.

A `JobSpec` is written to `OUT/_job.json` and travels to the workers. It never holds
credentials: storage access comes from the environment of each process. Its `fingerprint()`
covers only the fields that change results, so re-running with another worker count or batch
size resumes the same output instead of being refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Optional

from maskray.errors import UsageError
from maskray.jobs.uri_credentials import refuse_credentials
from maskray.models.catalog import get_spec
from maskray.models.choices import PRECISIONS
from maskray.models.class_filter import build_class_filter, parse_classes, parse_score_thresholds
from maskray.models.predictor_config import PredictorConfig
from maskray.models.weight_integrity import parse_digest

# Fields that change what is written: a different value on an existing output is refused.
RESULT_FIELDS = (
    "sources", "model", "weights", "min_size", "max_size", "score_threshold",
    "mask_threshold", "max_instances", "pre_nms_top", "precision", "every", "fps", "keyframes",
    "classes", "class_thresholds", "track", "tracker", "embeddings",
)
# Frame numbers and times do not depend on where videos are cut, so without tracking a
# resume may use another --segment-seconds (it re-plans; shards of the old cut not in the
# new plan are withdrawn and redone). Track ids are stitched across cuts: there it counts.
CUT_FIELDS = ("segment_seconds",)


ADDED_LATER = ("pre_nms_top",)  # result fields that outputs of older versions do not record


def normalise_uri(uri: str) -> str:
    """A URI as given (`s3://...`), or a local path (or `file://`) made absolute."""
    from maskray.pipeline import storage  # pyarrow: not loaded for `maskray --help`

    return storage.canonical(str(uri))


_MODEL = PredictorConfig()  # the model settings' defaults, the ones a Predictor has


@dataclass
class JobSpec:
    """`maskray submit`'s options, whose defaults (`SUBMIT_DEFAULTS`) its flags show."""

    sources: list[str]
    output: str
    model: str = _MODEL.model
    weights: str = _MODEL.weights
    weights_sha256: Optional[str] = None  # sha256 (or a prefix of 8+ hex digits) of PATH/URI weights
    offline: bool = False  # never download (coco, https weights)
    min_size: Optional[int] = _MODEL.min_size  # None: the model's own default
    max_size: Optional[int] = _MODEL.max_size
    score_threshold: float = _MODEL.score_threshold
    mask_threshold: float = _MODEL.mask_threshold
    max_instances: int = _MODEL.max_instances
    pre_nms_top: int = _MODEL.pre_nms_top  # box x class candidates per image kept for NMS
    batch_size: int = 4
    workers: Optional[int] = None  # None: follow the cluster (a replica per GPU, or per CPU node)
    max_workers: Optional[int] = None  # caps the pool that follows the cluster; asks the autoscaler
    gpus_per_worker: float = 1.0
    cpu: bool = False
    precision: str = _MODEL.precision
    every: Optional[int] = None
    fps: Optional[float] = None
    keyframes: bool = False
    segment_seconds: Optional[float] = None  # None: cut so every worker stays busy
    classes: Optional[list] = None  # category names or ids to keep (None: all)
    class_thresholds: dict = field(default_factory=dict)  # category -> score threshold
    track: bool = True  # video: track ids across frames and segments
    tracker: dict = field(default_factory=dict)  # TrackerConfig fields that differ from defaults
    embeddings: bool = False  # store each instance's appearance vector (column `embedding`)
    compact: bool = True  # when the job ends, merge its parts into a few large files (--no-compact: keep them)
    extra: dict = field(default_factory=dict)  # room for options a later version adds

    def __post_init__(self):
        # Refused before anything is stored or sent: see jobs/uri_credentials.py.
        for uri in self.sources:
            refuse_credentials(str(uri), "SOURCE")
        refuse_credentials(str(self.output), "--output")
        refuse_credentials(str(self.weights), "--weights")
        self.sources = [normalise_uri(s) for s in self.sources]
        self.output = normalise_uri(self.output)
        if isinstance(self.score_threshold, str):  # "person=0.7,car=0.5,0.4": the last is the default
            default, per_class = parse_score_thresholds(self.score_threshold)
            self.score_threshold, self.class_thresholds = default, {**self.class_thresholds, **per_class}
        if isinstance(self.classes, str):
            self.classes = parse_classes(self.classes)
        # A local weights file is named by its absolute path: `_job.json` says which file it was.
        if self.weights not in ("coco", "none", "demo") and os.path.exists(self.weights):
            self.weights = os.path.abspath(self.weights)

    # ---- validation -----------------------------------------------------------------------
    def validate(self, *, check_local_device: bool = True) -> "JobSpec":
        """Raise `UsageError` (one line) for a spec that cannot run; returns self.

        `check_local_device`: the job runs here, so fp16/bf16 needs CUDA on this machine.
        """
        if not self.sources:
            raise UsageError("no SOURCE given: name at least one file, folder or s3:// prefix")
        if not self.output:
            raise UsageError("--output is required")
        if sum([self.every is not None, self.fps is not None, bool(self.keyframes)]) > 1:
            raise UsageError("choose one of --every, --fps and --keyframes")
        positive_ints = ("min_size", "max_size", "max_instances", "pre_nms_top", "batch_size")
        for name in positive_ints:
            value = getattr(self, name)
            if value is None and name in ("min_size", "max_size"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
        if self.min_size and self.max_size and self.min_size > self.max_size:
            raise UsageError(f"--min-size ({self.min_size}) is larger than --max-size ({self.max_size})")
        if self.weights_sha256 is not None:
            self.weights_sha256 = parse_digest(self.weights_sha256)
            if self.weights in ("coco", "none", "demo"):
                raise UsageError(f"--weights-sha256 checks a PATH or URI, not --weights {self.weights}")
        if self.workers is not None and self.workers <= 0:
            raise UsageError(f"--workers must be a positive integer, got {self.workers}")
        if self.max_workers is not None and (isinstance(self.max_workers, bool) or self.max_workers <= 0):
            raise UsageError(f"--max-workers must be a positive integer, got {self.max_workers}")
        if self.workers is not None and self.max_workers is not None:
            raise UsageError("choose one of --workers (a fixed pool) and --max-workers (a pool that follows the cluster)")
        if self.every is not None and self.every <= 0:
            raise UsageError(f"--every must be a positive integer, got {self.every}")
        if self.fps is not None and not self.fps > 0:
            raise UsageError(f"--fps must be positive, got {self.fps}")
        if self.segment_seconds is not None and not self.segment_seconds > 0:
            raise UsageError(f"--segment-seconds must be positive, got {self.segment_seconds}")
        if self.gpus_per_worker < 0:
            raise UsageError(f"--gpus-per-worker must be zero or positive, got {self.gpus_per_worker}")
        for name in ("score_threshold", "mask_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}")
        self._validate_classes()
        self._validate_tracker()
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision}")
        if self.precision != "fp32":
            if self.cpu:
                raise UsageError(f"--precision {self.precision} needs a GPU; drop --cpu or use fp32")
            if check_local_device and not _cuda_available():
                raise UsageError(f"--precision {self.precision} needs CUDA, which this machine lacks; use fp32")
        return self

    def _validate_classes(self) -> None:
        if self.classes is None and not self.class_thresholds:
            return
        categories = get_spec(self.model).categories  # UsageError for an unknown model
        build_class_filter(categories, classes=self.classes, score_threshold=self.score_threshold,
                           class_thresholds=self.class_thresholds)

    def _validate_tracker(self) -> None:
        from maskray.pipeline.tracking.settings import check_settings

        try:
            check_settings(self.tracker)
        except (ValueError, TypeError) as error:
            raise UsageError(str(error)) from None

    # ---- identity ---------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A short hash of the fields that change results (not workers, batch size, address)."""
        data = {name: getattr(self, name) for name in self.result_fields()}
        # A field added later counts only away from its default: adding it leaves the
        # fingerprint of every spec that keeps the default as it was.
        for name in ADDED_LATER:
            if data[name] == SUBMIT_DEFAULTS[name]:
                del data[name]
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def differences_from_dict(self, other: dict) -> list[str]:
        """Result-changing fields on which `other` (a spec as stored in `_job.json`) differs.

        A field an older maskray did not write counts as its default."""
        return [name for name in self.result_fields()
                if getattr(self, name) != other.get(name, SUBMIT_DEFAULTS.get(name))]

    def result_fields(self) -> tuple[str, ...]:
        return RESULT_FIELDS + (CUT_FIELDS if self.track else ())

    @property
    def device(self) -> str:
        return "cpu" if self.cpu else "auto"

    # ---- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "JobSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


# Every field's default (the CLI's too): `maskray submit` shows and uses these.
SUBMIT_DEFAULTS = {f.name: f.default_factory() if f.default_factory is not MISSING else f.default
                   for f in fields(JobSpec) if f.default is not MISSING or f.default_factory is not MISSING}


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
