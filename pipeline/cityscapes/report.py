"""What `maskray export --cityscapes` and `maskray eval --cityscapes` print: what was done,
and what was left out and why."""

from __future__ import annotations

from maskray.pipeline.cityscapes.evaluate import CityscapesEvaluation
from maskray.pipeline.cityscapes.export import CityscapesExport


def _left_out(unmatched: int, ambiguous: int, other_instances: int) -> list[str]:
    lines = []
    if unmatched:
        lines.append(f"{unmatched} processed frames left out: not images named like Cityscapes pictures "
                     "(<city>_<seq>_<frame>_leftImg8bit.png) or without ground truth")
    if ambiguous:
        lines.append(f"{ambiguous} frames left out: the same Cityscapes name read from more than one path")
    if other_instances:
        lines.append(f"{other_instances} instances left out: categories that are not Cityscapes instance classes")
    return lines


def export_report(export: CityscapesExport, folder: str) -> str:
    lines = [f"wrote {export.instances} instances on {len(export.pictures)} pictures to {folder} "
             f"(one *_pred.txt per picture, masks in masks/)"]
    lines += _left_out(export.unmatched_frames + export.skipped_frames, export.ambiguous_frames,
                       export.other_instances)
    return "\n".join(lines)


def evaluation_report(evaluation: CityscapesEvaluation) -> str:
    metrics = evaluation.metrics
    lines = [f"evaluated {metrics['instances']} instances on {metrics['images']} pictures "
             "(cityscapesscripts, instance-level)"]
    lines += _left_out(metrics["unmatched_frames"], metrics["ambiguous_frames"], metrics["other_instances"])
    return "\n".join(lines) + "\n" + evaluation.summary
