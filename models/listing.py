"""What `maskray models` shows: each model with its tasks, categories and local weights."""

from __future__ import annotations

from maskray.models.catalog import MODELS
from maskray.models.weights import coco_cache_dir, coco_weights_cached, demo_weights_present


def model_rows() -> list[dict[str, str]]:
    """One row per model: name, tasks, categories, weights (availability here), description."""
    rows = []
    for spec in MODELS.values():
        if spec.name == "demo":  # the one model whose weights ship with maskray
            weights = "demo: present" if demo_weights_present() else "demo: missing"
        elif spec.coco_weights is None:
            weights = "n/a"
        else:
            weights = "coco: cached" if coco_weights_cached(spec.name) else "coco: not cached"
        rows.append(
            {
                "name": spec.name,
                "tasks": "+".join(spec.tasks),
                "categories": f"{spec.category_set} ({len(spec.categories)})",
                "weights": weights,
                "description": spec.description,
            }
        )
    return rows


def cache_dir() -> str:
    """Where `coco` weights are looked for (the torch hub cache's checkpoints folder)."""
    return str(coco_cache_dir())
