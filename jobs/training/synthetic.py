"""Synthetic shapes datasets for training, ablations and the demo, cached by their parameters.

A folder generated with the same (images, videos, frames, seed) is reused as it is, since
generation is deterministic; a marker file records what a folder holds.
"""

from __future__ import annotations

import json
from pathlib import Path

from maskray.errors import UsageError
from maskray.jobs.training.shapes import SyntheticSet, generate_shapes

MARKER = "synthetic.json"


def synthetic_dataset(folder, *, images: int, seed: int, videos: int = 0, frames: int = 20) -> SyntheticSet:
    """The shapes set in `folder`, generated unless the folder already holds this exact set."""
    folder = Path(folder)
    wanted = {"images": images, "videos": videos, "frames": frames, "seed": seed}
    marker = folder / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return SyntheticSet(
            folder, folder / "images", folder / "images.json",
            folder / "videos" if videos else None, folder / "videos.json" if videos else None,
            folder / "ground_truth.json",
        )
    try:
        made = generate_shapes(folder, images=images, videos=videos, frames=frames, seed=seed)
        marker.write_text(json.dumps(wanted))
    except OSError as error:  # an unwritable folder is the user's choice of path, not a crash
        raise UsageError(f"cannot write synthetic data to {folder}: {error.strerror or error}") from None
    return made


def synthetic_training_data(output, *, images: int, validation: bool = True) -> dict[str, str]:
    """`maskray train --synthetic N`: a generated training set under OUT/data/train and, when
    `validation`, a held-out set from another seed under OUT/data/val (about N/16 images).
    Returns the TrainConfig fields naming them (images, annotations, val_images, val_annotations)."""
    made = synthetic_dataset(Path(output) / "data" / "train", images=images, seed=1)
    fields = {"images": str(made.images_dir), "annotations": str(made.images_json)}
    if validation:
        held_out = synthetic_dataset(Path(output) / "data" / "val", images=min(100, max(10, images // 16)), seed=2)
        fields.update(val_images=str(held_out.images_dir), val_annotations=str(held_out.images_json))
    return fields
