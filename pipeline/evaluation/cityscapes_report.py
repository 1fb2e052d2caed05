"""What `maskray eval --cityscapes` prints: what was scored, and what was left out and why."""

from __future__ import annotations

from maskray.pipeline.evaluation.cityscapes import CityscapesEvaluation
from maskray.pipeline.export.cityscapes import left_out


def evaluation_report(evaluation: CityscapesEvaluation) -> str:
    metrics = evaluation.metrics
    lines = [f"evaluated {metrics['instances']} instances on {metrics['images']} pictures "
             "(cityscapesscripts, instance-level)"]
    lines += left_out(metrics["unmatched_frames"], metrics["ambiguous_frames"], metrics["other_instances"])
    return "\n".join(lines) + "\n" + evaluation.summary
