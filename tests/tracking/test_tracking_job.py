"""Track ids in real jobs: a shapes video (3 segments of 1 s) run as one shard and as three
shards on 2 workers with the shipped demo model; ids, stitching, resume and the track metrics."""

from __future__ import annotations

import io
import os
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pytest

from maskray.jobs.launch import run_job
from maskray.jobs.spec import JobSpec
from maskray.jobs.training.shapes import generate_shapes
from maskray.pipeline.evaluation.coco import evaluate
from maskray.pipeline.output import sink
from maskray.pipeline.output.layout import track_ids_uri
from maskray.pipeline.output.reader import open_output
from maskray.pipeline.output.track_table import video_key
from submit_helpers import frame_keys, local_ray, read_table, run_cli

pytestmark = pytest.mark.ray  # every test here reads jobs run on a real local Ray

EVERY = 5  # 15 of the 75 frames: small, and objects move 5 frames' worth between them


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    # 25 frames/s with a keyframe every 25 frames: segments of 1 s are possible.
    return generate_shapes(tmp_path_factory.mktemp("shapes"), images=0, videos=1, frames=75, fps=25, seed=7)


@pytest.fixture(scope="module")
def ray_session():
    with local_ray() as ray:
        yield ray


def job(shapes, output, *, segment_seconds, workers, compact=True):
    spec = JobSpec([str(shapes.videos_dir)], str(output), model="demo", weights="demo", every=EVERY,
                   segment_seconds=segment_seconds, workers=workers, batch_size=4, compact=compact)
    assert run_job(spec, stream=io.StringIO()) == 0
    return spec


def partition(output) -> set:
    """The tracks as sets of (frame, instance), and the instances of no track (detections never
    confirmed as a track): what must not depend on how the video was cut."""
    rows = open_output(str(output)).sql("SELECT frame, instance, track_id FROM instances").to_pylist()
    assert rows and sum(r["track_id"] is not None for r in rows) > 0.9 * len(rows)
    tracks = defaultdict(set)
    for row in rows:
        tracks[row["track_id"]].add((row["frame"], row["instance"]))
    return {(track_id is None, frozenset(members)) for track_id, members in tracks.items()}


@pytest.fixture(scope="module")
def outputs(shapes, ray_session, tmp_path_factory):
    folder = tmp_path_factory.mktemp("outs")
    job(shapes, folder / "one", segment_seconds=3600, workers=1)
    # Its parts as committed: the compaction test below merges a copy and compares.
    many = job(shapes, folder / "many", segment_seconds=1.0, workers=2, compact=False)
    return folder / "one", folder / "many", many


def test_track_ids_are_stable_across_segments_and_match_one_shard(outputs):
    one, many, _ = outputs
    out = open_output(str(many))
    assert len(out.commits) == 3 and len(open_output(str(one)).commits) == 1
    assert all(count == 1 for count in frame_keys(read_table(str(many), "frames")).values())  # lookahead not written
    assert partition(many) == partition(one)
    ids = out.sql("SELECT track_id, min(frame) AS first, max(frame) AS last, count(*) AS n FROM instances"
                  " WHERE track_id IS NOT NULL GROUP BY 1 ORDER BY 1").to_pylist()
    assert [r["track_id"] for r in ids] == list(range(1, len(ids) + 1))
    # Objects that stay in view keep one id through both cuts (frames 25 and 50).
    assert any(r["first"] < 25 and r["last"] >= 50 and r["n"] == 15 for r in ids)
    tracks = out.sql("SELECT * FROM tracks ORDER BY track_id").to_pylist()
    assert [t["frames_seen"] for t in tracks] == [r["n"] for r in ids]
    assert tracks[0]["first_time"] == 0.0 and tracks[0]["category"] in ("circle", "square", "triangle")


def test_track_metrics_reach_the_target_on_the_shapes_video(outputs, shapes):
    one, many, _ = outputs
    cut = evaluate(str(many), str(shapes.videos_json), tasks=["segm"]).metrics["tracks"]
    whole = evaluate(str(one), str(shapes.videos_json), tasks=["segm"]).metrics["tracks"]
    assert cut["IDF1"] >= 0.8 and cut["MOTA"] >= 0.7 and cut["HOTA"] >= 0.7
    assert abs(cut["IDF1"] - whole["IDF1"]) <= 0.01
    shown = run_cli("eval", str(many), "--gt", shapes.videos_json, "--task", "segm",
                    "--out", str(many.parent / "metrics.json"))
    assert shown.returncode == 0, shown.stderr
    assert f"IDF1 {cut['IDF1']:.3f}" in shown.stdout and "MOTA" in shown.stdout and "HOTA" in shown.stdout


def test_resume_after_losing_a_segment_keeps_every_id(outputs, shapes):
    _, many, spec = outputs
    out = open_output(str(many))
    before = out.sql("SELECT frame, instance, track_id FROM instances ORDER BY 1, 2").to_pylist()
    last = sorted(out.commits)[-1]
    stitched = track_ids_uri(str(many), video_key(last))
    # The state a kill leaves: the last segment never committed, the video never stitched.
    lost = sink.OutputSink(str(many), out.job["job_id"])
    lost.withdraw(lost.committed()[last])
    lost.log.publish(complete=False)
    os.remove(stitched)
    assert open_output(str(many)).sql("SELECT count(track_id) AS n FROM instances").to_pylist()[0]["n"] == 0
    assert run_job(spec, stream=io.StringIO()) == 0
    after = open_output(str(many)).sql("SELECT frame, instance, track_id FROM instances ORDER BY 1, 2")
    assert after.to_pylist() == before
    # A re-run with everything committed leaves the stitched ids as they were written.
    written = os.stat(stitched).st_mtime_ns
    assert run_job(spec, stream=io.StringIO()) == 0
    assert os.stat(stitched).st_mtime_ns == written


def test_mots_export_and_a_render_with_trails_follow_the_tracks(outputs, shapes, tmp_path):
    from PIL import Image

    from maskray.pipeline.render.drawing import colour
    from maskray.pipeline.render.overlays import render
    from maskray.pipeline.export.mots import export_mots

    _, many, _ = outputs
    every_row = open_output(str(many)).sql("SELECT frame, category_id, track_id, mask_rle FROM instances").to_pylist()
    rows = [r for r in every_row if r["track_id"] is not None]  # MOTS holds tracked objects only
    written = export_mots(str(many), str(tmp_path / "mots"))
    (path, count), = written.items()
    assert path.endswith("shapes_video_000.txt") and count == len(rows)
    lines = [line.split(" ") for line in open(path).read().splitlines()]
    assert {(int(f), int(o)) for f, o, *_ in lines} == {(r["frame"], r["category_id"] * 1000 + r["track_id"]) for r in rows}

    video = str(shapes.videos_dir / "shapes_video_000.mp4")
    clip = render(str(many), video, str(tmp_path / "tracks.mp4"), trails=5, min_score=0.0)
    assert clip.frames_written == 75 and clip.instances_drawn == len(every_row)
    summary = render(str(many), video, str(tmp_path / "f30.png"), frame=30, trails=5, min_score=0.0)
    assert summary.instances_drawn == sum(r["frame"] == 30 for r in every_row)
    # The best instance's box edge is painted in its track's colour.
    best = open_output(str(many)).sql("SELECT x1, y1, x2, y2, track_id FROM instances WHERE frame = 30 "
                                      "AND track_id IS NOT NULL ORDER BY instance LIMIT 1").to_pylist()[0]
    picture = np.asarray(Image.open(tmp_path / "f30.png").convert("RGB"))
    edge = picture[int(best["y1"]) + 1: int(best["y2"]) - 1, int(round(best["x2"]))]
    assert (np.abs(edge.astype(int) - colour(best["track_id"] - 1)).sum(axis=1) < 30).any()


def test_compaction_keeps_track_ids_tracks_and_their_metrics(outputs, shapes, tmp_path):
    import shutil

    from maskray.pipeline.output.compaction import compact

    _, many, _ = outputs
    copy = tmp_path / "many"
    shutil.copytree(many, copy)
    rows_sql = "SELECT shard, frame, instance, track_id FROM instances ORDER BY 1, 2, 3"
    before = open_output(str(copy))
    rows, tracks = before.sql(rows_sql).to_pylist(), before.sql("SELECT * FROM tracks ORDER BY track_id").to_pylist()
    metrics = evaluate(str(copy), str(shapes.videos_json), tasks=["segm"]).metrics["tracks"]
    assert compact(str(copy)).merged_files == 2  # 3 segments' parts become one file per table
    after = open_output(str(copy))
    assert after.sql(rows_sql).to_pylist() == rows and rows
    assert after.sql("SELECT * FROM tracks ORDER BY track_id").to_pylist() == tracks
    assert evaluate(str(copy), str(shapes.videos_json), tasks=["segm"]).metrics["tracks"] == metrics


def test_cvat_export_of_a_tracked_video_is_one_track_per_track_id(outputs, tmp_path):
    """CVAT for video 1.1, read by Datumaro's CVAT importer: every instance is a shape of its
    track, at its frame, and a track ends (`outside`) where the tracker lost it."""
    import warnings

    from datumaro.components.dataset import Dataset

    from maskray.pipeline.export.stream import run_export

    _, many, _ = outputs
    rows = open_output(str(many)).sql("SELECT frame, category, track_id, x1, y1, x2, y2 FROM instances "
                                      "WHERE track_id IS NOT NULL").to_pylist()
    exporter = run_export(str(many), str(tmp_path / "cvat"), "cvat")
    assert any("tracked videos" in line for line in exporter.summary)
    (annotations,) = (tmp_path / "cvat").rglob("shapes_video_000.mp4/annotations.xml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = Dataset.import_from(str(annotations.parent), "cvat")
    labels = dataset.categories()[1]
    shapes, ends = {}, set()
    for item in dataset:
        frame = int(item.id.rsplit("_", 1)[1])
        for ann in item.annotations:
            key = (frame, int(ann.attributes["track_id"]))
            if ann.attributes.get("outside"):
                ends.add(key)
            else:
                shapes[key] = (labels[ann.label].name, ann.get_bbox())
    # Track numbers in the file follow track ids in order; each instance is one shape.
    numbering = {track_id: n for n, track_id in enumerate(sorted({r["track_id"] for r in rows}))}
    assert len(shapes) == len(rows)
    for row in rows:
        category, (x, y, w, h) = shapes[(row["frame"], numbering[row["track_id"]])]
        assert category == row["category"]
        assert row["x1"] - 1 <= x and x + w <= row["x2"] + 1  # the polygon lies in the box
    assert not ends & set(shapes)  # a track ends at a processed frame where it was not seen
    last_frame = max(r["frame"] for r in rows)
    for track_id, number in numbering.items():
        seen_last = max(r["frame"] for r in rows if r["track_id"] == track_id)
        if seen_last < last_frame:  # lost before the end: marked outside at the next processed frame
            assert (seen_last + EVERY, number) in ends


def test_embeddings_are_stored_only_with_the_flag(outputs, shapes, ray_session, tmp_path):
    """`submit --embeddings` adds the `embedding` column: one unit vector of float16 per
    instance, the size of the model's box head; without the flag there is no such column."""
    from maskray.commands.run import submit_command, submit_spec

    _, many, _ = outputs
    assert "embedding" not in open_output(str(many)).instances().schema.names
    out = tmp_path / "embedded"
    context = submit_command.make_context("submit", [str(shapes.videos_dir), "--output", str(out), "--model", "demo",
                                                     "--weights", "demo", "--every", "15", "--workers", "1",
                                                     "--embeddings"])
    options = {k: v for k, v in context.params.items() if k not in ("sources", "output", "address", "overwrite", "wait")}
    spec = submit_spec(context.params["sources"], context.params["output"], options)
    assert spec.embeddings and run_job(spec, stream=io.StringIO()) == 0
    output = open_output(str(out))
    table = output.instances_table(["frame", "instance", "embedding", "track_id"])
    column = table.column("embedding")
    assert table.num_rows and column.type == pa.list_(pa.float16(), 256)  # the demo model's box head
    vectors = np.asarray(column.combine_chunks().values.to_numpy(zero_copy_only=False), np.float32)
    np.testing.assert_allclose(np.linalg.norm(vectors.reshape(table.num_rows, -1), axis=1), 1.0, atol=2e-3)
    assert output.sql("SELECT count(*) AS n FROM instances").to_pylist()[0]["n"] == table.num_rows  # SQL still works
