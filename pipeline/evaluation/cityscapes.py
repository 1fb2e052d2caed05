"""`maskray eval OUT --cityscapes ROOT`: the official Cityscapes instance-level AP of an output.

The output's images are matched to ROOT's annotated pictures by file name (`core_name`), in
any split; the matched frames are exported in Cityscapes' results format into a temporary
folder, and cityscapesscripts' own evaluation (`evalInstanceLevelSemanticLabeling`) scores
them: AP averaged over overlaps 0.5:0.95:0.05 and AP at 0.5, per class and averaged over the
8 classes, with void pixels and group regions ignored as the official script ignores them.
Only matched pictures are scored, so a run over part of a split is not counted as misses.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from maskray.errors import MaskrayError, UsageError, first_line
from maskray.pipeline.cityscapes import official
from maskray.pipeline.export.cityscapes import export_cityscapes
from maskray.pipeline.cityscapes.files import GroundTruthFiles, ground_truth_index
from maskray.pipeline.cityscapes.ground_truth import image_size, instance_png_bytes, polygons_to_instance_image


@dataclass
class CityscapesEvaluation:
    metrics: dict  # {'AP', 'AP50', 'classes': {name: {'AP', 'AP50'}}, 'images', ...}
    summary: str  # the official script's table


def evaluate_cityscapes(output_uri: str, root: str, *, min_score: float = 0.0) -> CityscapesEvaluation:
    """Official AP / AP50 of the output at `output_uri` against the Cityscapes root `root`."""
    index = ground_truth_index(root)
    with tempfile.TemporaryDirectory(prefix="maskray-cityscapes-") as work:
        results = os.path.join(work, "results")
        os.makedirs(results)
        export = export_cityscapes(output_uri, results, min_score=min_score, only=set(index))
        if not export.pictures:
            raise UsageError(f"no processed image of {output_uri} has the name of an annotated picture in "
                             f"{root} (names like frankfurt_000000_000294_leftImg8bit.png)")
        for core, size in export.pictures.items():
            if image_size(index[core]) != size:
                raise UsageError(f"{core} was processed at {size[0]}x{size[1]}, but its ground truth is "
                                 "{}x{}: evaluate the pictures at their own size".format(*image_size(index[core])))
        files = [instance_ids_file(index[core], work) for core in sorted(export.pictures)]
        scores, table = official_evaluation(files, results, work)
    metrics = {**scores, "images": len(export.pictures), "instances": export.instances,
               "unmatched_frames": export.unmatched_frames + export.skipped_frames,
               "ambiguous_frames": export.ambiguous_frames, "other_instances": export.other_instances}
    return CityscapesEvaluation(metrics=metrics, summary=table)


def instance_ids_file(files: GroundTruthFiles, work: str) -> str:
    """The picture's instanceIds PNG; drawn from its polygons into `work` when it has none."""
    if files.instance_ids is not None:
        return str(files.instance_ids)
    path = Path(work) / "gtFine" / (files.core + "_gtFine_instanceIds.png")
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(instance_png_bytes(polygons_to_instance_image(files.polygons)))
    return str(path)


def official_evaluation(ground_truth: list[str], results: str, workdir: str) -> tuple[dict, str]:
    """Run the official evaluation in a child confined to `workdir`; (scores, printed table).

    ground_truth: `*_gtFine_instanceIds.png` files; results: the folder of `*_pred.txt` files.
    """
    Path(workdir, official.REQUEST).write_text(json.dumps({"ground_truth": ground_truth, "results": results}))
    # The child imports this same maskray, wherever it was imported from.
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(filter(None, [_maskray_parent(), os.environ.get("PYTHONPATH")])))
    for name in ("CITYSCAPES_DATASET", "CITYSCAPES_RESULTS"):  # every path is given explicitly
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "maskray.pipeline.cityscapes.official", workdir],
                          cwd=workdir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [line[len("ERROR: "):] for line in done.stdout.splitlines() if line.startswith("ERROR: ")]
        reason = errors[-1] if errors else first_line((done.stderr.strip().splitlines() or ["no message"])[-1])
        raise MaskrayError(f"the official Cityscapes evaluation failed: {reason}")
    data = json.loads(Path(workdir, official.RESULT).read_text())
    return _scores(data["averages"]), done.stdout.strip("\n") + "\n"


def _maskray_parent() -> str:
    import maskray

    return str(Path(maskray.__path__[0]).parent)


def _scores(averages: dict) -> dict:
    """The official averages as {'AP', 'AP50', 'classes': {name: {'AP', 'AP50'}}}; a class
    without ground truth in the scored pictures has None (the official NaN)."""
    def number(value):
        return None if value is None or math.isnan(value) else float(value)

    return {"AP": number(averages["allAp"]), "AP50": number(averages["allAp50%"]),
            "classes": {name: {"AP": number(values["ap"]), "AP50": number(values["ap50%"])}
                        for name, values in averages["classes"].items()}}


def write_metrics(evaluation: CityscapesEvaluation, uri: str) -> None:
    from maskray.pipeline.output.reader import write_file

    write_file(uri, (json.dumps(evaluation.metrics, indent=2) + "\n").encode())
