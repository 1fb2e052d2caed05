"""A model's recipe: everything needed to rebuild its architecture before loading weights.

A maskray checkpoint stores the recipe beside the state dict, so `--weights PATH` rebuilds the
model the checkpoint was trained as (backbone, variants, categories) without further flags:
    {"maskray_checkpoint": 1, "recipe": Recipe.to_dict(), "state_dict": {...}}
"""

from __future__ import annotations

from dataclasses import dataclass, field

from maskray.errors import WeightsError

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    """Architecture choices of one model; `num_classes` counts the background class 0."""

    model: str
    backbone: str
    num_classes: int
    categories: dict[int, str]
    keypoint_names: tuple[str, ...] = ()
    roi_op: str = "align"
    mask_loss: str = "sigmoid"
    mask_head: str = "fcn"
    extra: dict = field(default_factory=dict)  # keys a newer maskray wrote; kept, unused

    def to_dict(self) -> dict:
        """JSON- and `weights_only`-safe dict (category ids as strings, as in JSON)."""
        return {
            "model": self.model,
            "backbone": self.backbone,
            "roi_op": self.roi_op,
            "mask_loss": self.mask_loss,
            "mask_head": self.mask_head,
            "num_classes": int(self.num_classes),
            "categories": {str(k): v for k, v in sorted(self.categories.items())},
            "keypoint_names": list(self.keypoint_names),
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "Recipe":
        """Reads a checkpoint's recipe; WeightsError naming `source` when it is malformed."""
        known = {"model", "backbone", "roi_op", "mask_loss", "mask_head", "num_classes",
                 "categories", "keypoint_names"}
        try:
            return cls(
                model=str(data["model"]),
                backbone=str(data["backbone"]),
                num_classes=int(data["num_classes"]),
                categories={int(k): str(v) for k, v in dict(data["categories"]).items()},
                keypoint_names=tuple(str(k) for k in data.get("keypoint_names") or ()),
                roi_op=str(data.get("roi_op", "align")),
                mask_loss=str(data.get("mask_loss", "sigmoid")),
                mask_head=str(data.get("mask_head", "fcn")),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            message = f"{source}: malformed maskray checkpoint recipe ({error!r})"
            raise WeightsError(message) from None
