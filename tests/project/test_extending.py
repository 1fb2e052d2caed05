"""docs/extending.md stays true: its code blocks, applied to a copy of the package exactly where
they say they go, give what the page promises (a listed and decoded input, a model that is
listed and runs, a column in the Arrow schema and in query results, an export a reader reads
back). Each example is applied alone, so it touches the files it names and no others. No Ray:
every check runs in a fresh interpreter that imports the copy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "extending.md"
NEW_FILE = re.compile(r"# new file: (\S+)$")
ADD_TO = re.compile(r"# add to (\S+), after the line starting: (.+)$")


def doc_blocks(heading: str) -> list[str]:
    """The ```python blocks of the doc's section `heading`."""
    sections = re.split(r"^## ", DOC.read_text(), flags=re.M)
    (section,) = [s for s in sections if s.startswith(heading + "\n")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def apply(blocks: list[str], root: Path) -> set[str]:
    """Each block into the package copy at `root` where its first line says; the files touched."""
    touched = set()
    for block in blocks:
        first, _, body = block.partition("\n")
        new, add = NEW_FILE.match(first), ADD_TO.match(first)
        assert new or add, f"a block of {DOC.name} does not say where it goes: {first!r}"
        path = root / (new or add).group(1)
        if new:
            assert not path.exists(), f"{path.name} exists already"
            path.write_text(body)
        else:
            lines = path.read_text().splitlines(keepends=True)
            anchor = add.group(2)
            found = [i for i, line in enumerate(lines) if line.strip().startswith(anchor)]
            assert len(found) == 1, f"{anchor!r} starts {len(found)} lines of {path}, not one"
            lines.insert(found[0] + 1, body)
            path.write_text("".join(lines))
        touched.add(str(path.relative_to(root)))
    return touched


@pytest.fixture
def package(tmp_path) -> Path:
    """A copy of the `maskray` package (code only) at tmp_path/site/maskray."""
    root = tmp_path / "site" / "maskray"
    shutil.copytree(REPO, root, ignore=shutil.ignore_patterns(
        ".*", "tests", "benchmarks", "docs", "deploy", "__pycache__", "*.pt", "*.md", "*.png"))
    return root


def run_in(package: Path, script: str, cwd: Path) -> str:
    """`script` in a fresh interpreter whose `maskray` is the copy; its stdout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package.parent), str(REPO / "tests")])}
    prelude = f"import maskray\nassert maskray.__file__.startswith({str(package)!r}), maskray.__file__\n"
    done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(script)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_new_input_format_is_listed_and_decoded(package, tmp_path):
    assert apply(doc_blocks("A new input format"), package) == {"pipeline/inputs/listing.py"}
    run_in(package, """
        import numpy as np
        from PIL import Image
        from maskray.pipeline.inputs.images import decode_frames
        from maskray.pipeline.inputs.listing import list_media

        pixels = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save("frames/camera.ppm")
        Image.fromarray(pixels[:, :, 0]).save("frames/depth.pgm")
        found = {item.uri.rsplit("/", 1)[1]: item.kind for item in list_media(["frames"])}
        assert found == {"camera.ppm": "image", "depth.pgm": "image"}, found
        (frame,) = decode_frames(open("frames/camera.ppm", "rb").read())
        assert np.array_equal(frame.rgb, pixels)
    """, cwd=_folder(tmp_path, "frames"))


def test_a_new_model_is_listed_loads_torchvisions_names_and_runs(package, tmp_path):
    touched = apply(doc_blocks("A new model"), package)
    assert touched == {"models/faster_rcnn.py", "models/catalog.py"}
    run_in(package, """
        import numpy as np
        import torchvision
        from maskray.models.listing import model_rows
        from maskray.models.predictor import Predictor, PredictorConfig

        (row,) = [row for row in model_rows() if row["name"] == "fasterrcnn_resnet50_fpn"]
        assert row["tasks"] == "boxes" and row["categories"] == "coco (80)", row

        config = PredictorConfig(model="fasterrcnn_resnet50_fpn", weights="none", device="cpu",
                                 min_size=128, max_size=160, score_threshold=0.0, max_instances=10,
                                 proposals=100)
        predictor = Predictor(config)
        # torchvision's own Faster R-CNN has the same tensors: its published file loads as it is.
        theirs = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
        shapes = lambda model: {k: tuple(v.shape) for k, v in model.state_dict().items()
                                if not k.endswith("num_batches_tracked")}
        assert shapes(predictor.model) == shapes(theirs)

        image = np.random.default_rng(0).integers(0, 256, (120, 150, 3), dtype=np.uint8)
        (found,) = predictor.predict([image])
        assert 0 < len(found) <= 10 and found.masks_rle is None and found.keypoints is None
        assert (found.boxes >= 0).all() and (found.boxes[:, 2] <= 150).all() and (found.boxes[:, 3] <= 120).all()
    """, cwd=tmp_path)


def test_a_new_column_is_in_the_schema_follows_its_instances_and_is_queried(package, tmp_path):
    touched = apply(doc_blocks("A new output column"), package)
    assert touched == {"models/frame_prediction.py", "pipeline/output/columns.py"}
    out = run_in(package, """
        import dataclasses, subprocess, sys
        import numpy as np
        import pyarrow as pa
        from maskray.pipeline.output.schema import INSTANCES_SCHEMA, FrameRef, predictions_to_batches
        from results_helpers import ellipse, prediction, write_output

        field = INSTANCES_SCHEMA.field("mask_score")
        assert field.type == pa.float32() and field.nullable
        masks = [ellipse(60, 80, 20, 30, 10, 8), ellipse(60, 80, 55, 30, 12, 9), ellipse(60, 80, 40, 45, 6, 6)]
        found = prediction(masks, [1, 2, 1], [0.9, 0.8, 0.7])
        found = dataclasses.replace(found, mask_scores=np.array([0.75, 0.5, 0.25], np.float32))
        kept = found[found.scores >= 0.75]  # pred[keep]: every per-instance field alike
        assert kept.mask_scores.tolist() == [0.75, 0.5] and len(kept.masks_rle) == 2
        ref = lambda n: FrameRef(f"file:///photos/{n}.jpg", 0, None, 80, 60)
        without = prediction(masks[:1], [1], [0.6])  # a frame whose model does not set it
        instances, _ = predictions_to_batches([ref(0), ref(1)], [kept, without], "s0")
        assert instances.column("mask_score").to_pylist() == [0.75, 0.5, None]

        write_output("out", [(ref(0), kept), (ref(1), without)])
        query = [sys.executable, "-m", "maskray", "query", "out", "--format", "csv",
                 "SELECT count(mask_score) AS n, round(sum(mask_score), 2) AS total FROM instances"]
        print(subprocess.run(query, capture_output=True, text=True, check=True).stdout)
    """, cwd=tmp_path)
    assert out.split() == ['"n","total"', "2,1.25"], out


def test_a_new_export_format_writes_what_a_reader_reads_back(package, tmp_path):
    touched = apply(doc_blocks("A new export format"), package)
    assert touched == {"pipeline/export/boxes_csv.py", "pipeline/export/formats.py"}
    run_in(package, """
        import csv, subprocess, sys
        from maskray.pipeline.output.reader import open_output
        from maskray.pipeline.output.schema import FrameRef
        from results_helpers import ellipse, empty_prediction, prediction, write_output

        masks = [ellipse(60, 80, 20, 30, 10, 8), ellipse(60, 80, 55, 30, 12, 9)]
        frames = [(FrameRef("file:///photos/a/one.jpg", 0, None, 80, 60), prediction(masks, [1, 3], [0.9, 0.4], {1: "person", 3: "car"})),
                  (FrameRef("file:///photos/b/two.jpg", 0, None, 80, 60), prediction(masks[:1], [3], [0.8], {3: "car"})),
                  (FrameRef("file:///photos/b/none.jpg", 0, None, 80, 60), empty_prediction(60, 80))]
        write_output("out", frames)
        command = [sys.executable, "-m", "maskray", "export", "out", "boxes.csv", "--format", "boxes-csv",
                   "--min-score", "0.5"]
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0 and "wrote 2 instances" in done.stdout, done.stdout + done.stderr

        rows = list(csv.DictReader(open("boxes.csv")))
        table = open_output("out").sql("SELECT * FROM instances WHERE score >= 0.5 ORDER BY source")
        expected = table.to_pylist()
        assert [r["file_name"] for r in rows] == ["a/one.jpg", "b/two.jpg"]
        for row, instance in zip(rows, expected):
            assert row["category"] == instance["category"]
            assert float(row["score"]) == instance["score"]
            assert [float(row[k]) for k in ("x1", "y1", "x2", "y2")] == [instance[k] for k in ("x1", "y1", "x2", "y2")]
    """, cwd=tmp_path)


def _folder(parent: Path, name: str) -> Path:
    (parent / name).mkdir()
    return parent
