"""The tracker's settings: one list that makes the `--track-*` flags, their checks and the
job record's `tracker` field.

Each field carries its help and its valid range; a new setting is one field here (and its
use in `tracker.py`): `submit` and `retrack` grow the flag, the spec checks it.
Kept free of numpy and pycocotools so the command line loads fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


def _setting(default, help: str, low=None, high=None):
    return field(default=default, metadata={"help": help, "low": low, "high": high})


@dataclass(frozen=True)
class TrackerConfig:
    """The tracker's settings (the `--track-*` flags of `maskray submit`)."""

    high_score: float = _setting(0.6, "detections scoring this are matched first; lower ones only extend tracks", 0.0, 1.0)
    match_iou: float = _setting(0.2, "least mask/box IoU to continue a track", 0.0, 1.0)
    low_match_iou: float = _setting(0.5, "least IoU for a low-scoring detection to continue a track", 0.0, 1.0)
    max_gap: int = _setting(30, "processed frames a track survives without a detection", 0)
    same_category: bool = _setting(True, "a track only takes detections of its own category")
    confirm_hits: int = _setting(2, "detections in a row a new track needs to become a track (1: at once); "
                                    "instances of tracks never confirmed get no track_id", 1, 100)
    new_track_score: float = _setting(0.9, "least score of a detection that may start a track (lower ones "
                                           "only continue tracks)", 0.0, 1.0)
    appearance_weight: float = _setting(0.3, "weight of appearance (cosine of the model's box-head features) "
                                             "beside IoU when tracks compete for a detection", 0.0, 1.0)
    reid_similarity: float = _setting(0.7, "least appearance cosine to pick a lost track up again without "
                                           "any overlap (above 1: never)", 0.0, 2.0)
    reid_reach: float = _setting(3.0, "how far a lost track may be picked up again, in its box diagonals "
                                      "from where its motion puts it", 0.0)

    def to_dict(self) -> dict:
        return asdict(self)

    def changed(self) -> dict:
        """The settings that differ from the defaults (what a job record keeps)."""
        defaults = TrackerConfig()
        return {k: v for k, v in self.to_dict().items() if v != getattr(defaults, k)}


def flag_name(setting: str) -> str:
    return "--track-" + setting.replace("_", "-")


def settings_table():
    """(name, type, default, help) of each setting, in declaration order."""
    return [(f.name, type(f.default), f.default, f.metadata["help"]) for f in fields(TrackerConfig)]


def check_settings(values: dict) -> TrackerConfig:
    """A TrackerConfig of `values` (changed settings), or ValueError naming the flag at fault."""
    known = {f.name: f for f in fields(TrackerConfig)}
    for name in values:
        if name not in known:
            raise ValueError(f"unknown tracker setting {name!r}; choose from: {', '.join(sorted(known))}")
    config = TrackerConfig(**values)
    for name, spec in known.items():
        value, low, high = getattr(config, name), spec.metadata["low"], spec.metadata["high"]
        if low is None:
            continue
        if isinstance(spec.default, int) and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"{flag_name(name)} must be a whole number, got {value!r}")
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"{flag_name(name)} must be {bounds}, got {value}")
    return config
