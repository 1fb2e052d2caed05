"""`maskray query` and the Python API over committed shards, local and on S3, and a real job."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from PIL import Image

from maskray.pipeline import storage
from maskray.pipeline.output.reader import decode_masks, open_output
from maskray.pipeline.output.sql_views import INSTANCES_COLUMNS
from maskray.pipeline.output.schema import FRAMES_SCHEMA, INSTANCES_SCHEMA, FrameRef
from results_helpers import (ellipse, empty_prediction, prediction, rectangle,
                             run_maskray, write_output, write_shard)

H, W = 48, 64
NAMES = {1: "person", 3: "car"}


def known_frames():
    """Two images and three frames of a video, 6 instances in all (one frame has none)."""
    a = prediction([rectangle(H, W, 2, 3, 20, 30), ellipse(H, W, 40, 20, 10, 8)], [1, 3], [0.9, 0.6], NAMES)
    b = prediction([rectangle(H, W, 10, 10, 50, 40)], [3], [0.8], NAMES)
    v0 = prediction([ellipse(H, W, 30, 24, 12, 12)], [1], [0.7], NAMES)
    v10 = prediction([rectangle(H, W, 0, 0, 8, 8), rectangle(H, W, 30, 30, 60, 46)], [1, 1], [0.5, 0.95], NAMES)
    video = "/data/cams/gate.mp4"
    return [
        (FrameRef("/data/photos/a.png", 0, None, W, H), a),
        (FrameRef("/data/photos/b.png", 0, None, W, H), b),
        (FrameRef(video, 0, 0.0, W, H), v0),
        (FrameRef(video, 5, 0.2, W, H), empty_prediction(H, W)),
        (FrameRef(video, 10, 0.4, W, H), v10),
    ]


@pytest.fixture
def known_output(tmp_path):
    out = str(tmp_path / "out")
    write_output(out, known_frames(), shard_size=2)
    return out


def parquet_rows(out: str, table: str) -> int:
    """Rows of every part file of `table` actually on disk, committed or not."""
    return sum(pq.read_metadata(uri).num_rows for uri, _ in storage.list_files(storage.join(out, table)))


def test_query_counts_equal_the_parquet_files_and_skip_uncommitted_parts(known_output, capsys):
    code, out, _ = run_maskray(["query", known_output, "SELECT count(*) AS n FROM instances", "--format", "json"], capsys)
    assert code == 0 and json.loads(out) == [{"n": parquet_rows(known_output, "instances")}] == [{"n": 6}]

    # A worker mid-shard: its parts are on disk, its commit record is not yet.
    extra = [(FrameRef("/data/photos/c.png", 0, None, W, H), prediction([rectangle(H, W, 1, 1, 9, 9)], [1], [0.9], NAMES))]
    write_shard(known_output, "s9999", extra, commit=False)
    assert parquet_rows(known_output, "instances") == 7
    code, out, _ = run_maskray(["query", known_output, "SELECT (SELECT count(*) FROM instances) AS i, "
                                "(SELECT count(*) FROM frames) AS f", "--format", "json"], capsys)
    assert json.loads(out) == [{"i": 6, "f": 5}]


def test_python_api_datasets_sql_and_masks(known_output):
    output = open_output(known_output)
    assert output.committed_shards() == ["s0000", "s0001", "s0002"]
    assert output.job["job_id"] == "test-job"
    assert output.instances().count_rows() == 6 and output.frames().count_rows() == 5
    per_category = output.sql("SELECT category, count(*) AS n FROM instances GROUP BY 1 ORDER BY 1")
    assert per_category.to_pylist() == [{"category": "car", "n": 2}, {"category": "person", "n": 4}]
    empty_frames = output.sql("SELECT source, frame FROM frames WHERE num_instances = 0").to_pylist()
    assert empty_frames == [{"source": "/data/cams/gate.mp4", "frame": 5}]

    rows = output.sql("SELECT * FROM instances WHERE source LIKE '%a.png' ORDER BY instance")
    masks = decode_masks(rows)
    assert masks.shape == (2, H, W) and masks.dtype == np.uint8
    np.testing.assert_array_equal(masks[0], rectangle(H, W, 2, 3, 20, 30))
    np.testing.assert_array_equal(masks[1], ellipse(H, W, 40, 20, 10, 8))
    assert masks.sum(axis=(1, 2)).tolist() == rows.column("mask_area").to_pylist()


def test_an_output_without_commits_gives_empty_views_with_the_schema(tmp_path, capsys):
    out = str(tmp_path / "starting")
    write_output(out, [], shard_size=1)  # _job.json only: the job has not committed anything yet
    output = open_output(out)
    assert output.sql("SELECT count(*) AS n FROM instances").to_pylist() == [{"n": 0}]
    assert output.sql("SELECT * FROM instances").schema.names == INSTANCES_COLUMNS
    assert output.sql("SELECT * FROM frames").schema.names == FRAMES_SCHEMA.names
    code, out_text, _ = run_maskray(["query", out, "SELECT source, count(*) FROM frames GROUP BY 1"], capsys)
    assert code == 0 and out_text.strip().endswith("(0 rows)")


def test_query_formats_table_csv_json_parquet_and_limit(known_output, tmp_path, capsys):
    sql = "SELECT source, frame, category, score FROM instances ORDER BY score DESC"
    code, text, _ = run_maskray(["query", known_output, sql], capsys)
    lines = text.splitlines()
    assert code == 0 and lines[0].split() == ["source", "frame", "category", "score"]
    assert lines[-1] == "(6 rows)" and "0.95" in lines[2]
    # Aligned: every row puts its `category` value where the header's column starts.
    start = lines[0].index("category")
    assert {line[start - 2:start] for line in lines[2:-1]} == {"  "} and lines[2][start:].startswith("person")

    code, text, _ = run_maskray(["query", known_output, sql, "--format", "csv", "--limit", "2"], capsys)
    csv = pacsv.read_csv(pa.py_buffer(text.encode()))
    assert csv.num_rows == 2 and csv.column("score").to_pylist() == [0.95, 0.9]

    target = tmp_path / "r.parquet"
    code, _, err = run_maskray(["query", known_output, sql, "--format", "parquet", "--out", target], capsys)
    assert code == 0 and "6 rows" in err and pq.read_table(target).num_rows == 6

    code, _, err = run_maskray(["query", known_output, sql, "--format", "parquet"], capsys)
    assert code == 2 and "--out" in err


def test_a_bad_query_is_one_line_and_exit_2(known_output):
    done = subprocess.run([sys.executable, "-c", "from maskray.cli import main; main()", "query", known_output,
                           "SELEC category FROM instancez"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("maskray: error: query failed: Parser Error")


def test_query_an_output_on_s3(s3_bucket, capsys):
    out = f"s3://{s3_bucket}/masks"
    write_output(out, known_frames(), shard_size=2)
    code, text, _ = run_maskray(["query", out, "SELECT category, count(*) AS n FROM instances GROUP BY 1 "
                                 "ORDER BY 1", "--format", "json"], capsys)
    assert code == 0 and json.loads(text) == [{"category": "car", "n": 2}, {"category": "person", "n": 4}]
    assert open_output(out).committed_shards() == ["s0000", "s0001", "s0002"]


# ---- a real job: submit, then query, export, eval and render its output -------------------

@pytest.fixture(scope="module")
def real_job(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("job") / "out"
    video = data_dir / "videos" / "carphone_pristine.mp4"
    done = subprocess.run(
        [sys.executable, "-c", "from maskray.cli import main; main()", "submit", data_dir / "images", video,
         "--output", out, "--model", "demo", "--weights", "none", "--min-size", "128", "--max-size", "256",
         "--score-threshold", "0", "--max-instances", "5", "--every", "50"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return str(out)


@pytest.mark.ray
def test_a_real_job_queried_exported_evaluated_and_rendered(real_job, data_dir, tmp_path, capsys):
    instances_on_disk = parquet_rows(real_job, "instances")
    code, text, _ = run_maskray(["query", real_job, "SELECT (SELECT count(*) FROM instances) AS i, "
                                 "(SELECT count(*) FROM frames) AS f", "--format", "json"], capsys)
    assert code == 0 and json.loads(text) == [{"i": instances_on_disk, "f": parquet_rows(real_job, "frames")}]
    frames = open_output(real_job).sql("SELECT source, frame FROM frames ORDER BY 1, 2").to_pylist()
    assert len(frames) == 7 + 3  # 7 images, carphone frames 0, 50, 100
    # A shard being written: a real part under a new name, no commit record yet. Not counted.
    first_part = storage.list_files(storage.join(real_job, "instances"))[0][0]
    storage.write_bytes_atomic(storage.join(real_job, "instances", "zz-in-progress.parquet"),
                               storage.read_bytes(first_part))
    assert parquet_rows(real_job, "instances") > instances_on_disk
    assert open_output(real_job).sql("SELECT count(*) AS n FROM instances").to_pylist() == [{"n": instances_on_disk}]

    # Export without GT, then use the images list (plus the job's own boxes) as a ground truth.
    results = tmp_path / "results.json"
    code, _, _ = run_maskray(["export", real_job, "--coco", results], capsys)
    images = json.loads((tmp_path / "results.images.json").read_text())
    detections = json.loads(results.read_text())
    assert code == 0 and len(images["images"]) == 10 and len(detections) == instances_on_disk
    ground_truth_file = tmp_path / "gt.json"
    annotations = [{"id": i + 1, "image_id": d["image_id"], "category_id": d["category_id"], "bbox": d["bbox"],
                    "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0} for i, d in enumerate(detections)]
    ground_truth_file.write_text(json.dumps({**images, "annotations": annotations}))
    code, text, _ = run_maskray(["eval", real_job, "--gt", ground_truth_file, "--task", "bbox",
                                 "--out", tmp_path / "m.json"], capsys)
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert code == 0 and metrics["images"] == 10 and metrics["bbox"]["AP"] > 0.99

    picture = tmp_path / "astronaut.png"
    code, _, _ = run_maskray(["render", real_job, "--source", data_dir / "images" / "astronaut.png",
                              "--out", picture, "--min-score", "0"], capsys)
    source = np.asarray(Image.open(data_dir / "images" / "astronaut.png").convert("RGB"))
    assert code == 0 and np.asarray(Image.open(picture)).shape == source.shape
    assert (np.asarray(Image.open(picture)) != source).any()
    clip = tmp_path / "carphone.mp4"
    code, text, _ = run_maskray(["render", real_job, "--source", data_dir / "videos" / "carphone_pristine.mp4",
                                 "--out", clip, "--frames", "processed", "--min-score", "0"], capsys)
    assert code == 0 and text.startswith(f"wrote {clip}: 3 frames")
