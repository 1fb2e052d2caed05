"""What to detect: a set of categories to keep and a score threshold per category.

`--classes person,car` (names or ids) keeps only those categories; `--score-threshold
person=0.7,car=0.5,0.4` sets a threshold per category, the bare last value being the default
for the rest. `ClassFilter.keep(labels, scores)` is the one test, on tensors, so it can run
on a detector's per-class candidates before NMS (fewer boxes to suppress and to paint masks
for) as well as on its final detections. Parsing errors are one line naming the model's
categories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Optional, Union

from maskray.errors import UsageError

if TYPE_CHECKING:  # parsing runs where the job is submitted, which need not load torch
    import torch


@dataclass(frozen=True)
class ClassFilter:
    """Keep detections of `classes` (all when None) scoring at least their category's threshold."""

    default_threshold: float = 0.5
    thresholds: dict[int, float] = field(default_factory=dict)  # category id -> threshold
    classes: Optional[tuple[int, ...]] = None

    @property
    def filters(self) -> bool:
        """Whether it drops anything beyond one score threshold (classes, or per-class values)."""
        return self.classes is not None or bool(self.thresholds)

    @property
    def lowest_threshold(self) -> float:
        """The least threshold any kept category has (what a detector may prefilter with)."""
        kept = [t for c, t in self.thresholds.items() if self.classes is None or c in self.classes]
        return min([self.default_threshold] + kept)

    def keep(self, labels: "torch.Tensor", scores: "torch.Tensor") -> "torch.Tensor":
        """Boolean mask (N,) of the detections to keep; labels (N,) int, scores (N,) float."""
        import torch

        threshold = torch.full_like(scores, self.default_threshold, dtype=torch.float32)
        for category, value in self.thresholds.items():
            threshold = torch.where(labels == category, torch.full_like(threshold, value), threshold)
        keep = scores.float() >= threshold
        if self.classes is not None:
            allowed = torch.tensor(self.classes, dtype=labels.dtype, device=labels.device)
            keep &= torch.isin(labels, allowed)
        return keep


def build_class_filter(categories: dict[int, str], *, classes: Optional[Iterable] = None,
                       score_threshold: Union[float, str] = 0.5,
                       class_thresholds: Optional[dict] = None) -> ClassFilter:
    """A ClassFilter for a model with `categories` ({id: name}); UsageError for unknown names."""
    default, parsed = parse_score_thresholds(score_threshold, categories)
    for key, value in (class_thresholds or {}).items():
        parsed[resolve_category(key, categories, "--score-threshold")] = _threshold(value, key)
    kept = None
    if classes is not None:
        kept = tuple(sorted({resolve_category(c, categories, "--classes") for c in classes}))
        if not kept:
            raise UsageError(f"--classes names no category; choose from: {_choices(categories)}")
    return ClassFilter(default, parsed, kept)


def parse_classes(text: str) -> list[str]:
    """`person,car` or `1,3` -> ['person', 'car']: names or ids, resolved later against a model."""
    return [part.strip() for part in str(text).split(",") if part.strip()]


def parse_score_thresholds(text: Union[float, str], categories: Optional[dict[int, str]] = None
                           ) -> tuple[float, dict]:
    """`0.5` or `person=0.7,car=0.5,0.4` -> (default, {category: threshold}).

    With `categories`, the keys are resolved to ids; without, they stay as written.
    """
    if isinstance(text, (int, float)):
        return _threshold(text, "the default"), {}
    default, per_class = 0.5, {}
    for part in [p.strip() for p in str(text).split(",") if p.strip()]:
        if "=" in part:
            name, value = (s.strip() for s in part.split("=", 1))
            key = resolve_category(name, categories, "--score-threshold") if categories else name
            per_class[key] = _threshold(value, name)
        else:
            default = _threshold(part, "the default")
    return default, per_class


def resolve_category(name, categories: dict[int, str], flag: str) -> int:
    """A category id from a name or an id; UsageError naming the model's categories."""
    text = str(name).strip()
    if text.lstrip("-").isdigit() and int(text) in categories:
        return int(text)
    for category_id, category in categories.items():
        if category == text:
            return category_id
    raise UsageError(f"{flag}: unknown category {text!r}; this model's categories are: {_choices(categories)}")


def _threshold(value, name) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"--score-threshold: {value!r} for {name} is not a number") from None
    if not 0.0 <= number <= 1.0:
        raise UsageError(f"--score-threshold: {name} must be between 0 and 1, got {number}")
    return number


def _choices(categories: dict[int, str]) -> str:
    return ", ".join(categories.values())
