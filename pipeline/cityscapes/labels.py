"""The Cityscapes classes maskray detects: the 8 instance classes of the official benchmark.

Ids are the official label ids of `cityscapesscripts.helpers.labels` (person 24 .. bicycle 33),
not train ids: the evaluation reads label ids, and a model trained here predicts them directly.
Caravan and trailer have instances but are ignored in the official evaluation, so they are
not among them. Instance ids in an `*_instanceIds.png` are `label id * 1000 + n`; a pixel
below 1000 is a class without instances or a group region (e.g. `cargroup`), never an
instance.
"""

from __future__ import annotations

from cityscapesscripts.helpers.labels import labels as _official_labels

# {label id: name} of the labels with instances that the official evaluation scores.
INSTANCE_LABELS: dict[int, str] = {
    label.id: label.name for label in _official_labels if label.hasInstances and not label.ignoreInEval
}
LABEL_IDS: dict[str, int] = {name: label_id for label_id, name in INSTANCE_LABELS.items()}
# Official colours, used by the synthetic generator for pictures a model can learn from.
COLORS: dict[str, tuple[int, int, int]] = {label.name: tuple(label.color) for label in _official_labels}
OFFICIAL_IDS: dict[str, int] = {label.name: label.id for label in _official_labels}
HAS_INSTANCES: frozenset[str] = frozenset(label.name for label in _official_labels if label.hasInstances)

INSTANCE_ID_FACTOR = 1000  # instance pixel value = label id * 1000 + instance number


def label_of(instance_id: int) -> int:
    """The label id of a pixel value of an instanceIds image (a group's value is its label id)."""
    return instance_id // INSTANCE_ID_FACTOR if instance_id >= INSTANCE_ID_FACTOR else instance_id


def is_instance(instance_id: int) -> bool:
    """True for a single instance of one of the 8 classes; False for stuff, void and groups."""
    return instance_id >= INSTANCE_ID_FACTOR and label_of(instance_id) in INSTANCE_LABELS
