"""`maskray retrack OUT`: a finished job's track ids made again from what it stored, with other
tracker settings, without the model and without Ray; readers never see a mix of old and new.

One finished job per module (the shipped demo model on two shapes videos, each cut into 3
segments of 1 s, and an image; stored embeddings, so the tracker sees what the job's saw),
copied for each test that changes it."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
from collections import defaultdict

import pytest

from maskray.jobs.launch import run_job
from maskray.jobs.spec import JobSpec
from maskray.jobs.training.shapes import generate_shapes
from maskray.pipeline.output import sink
from maskray.pipeline.output.reader import open_output
from maskray.pipeline.tracking.retrack import retrack
from maskray.pipeline.tracking.settings import TrackerConfig
from submit_helpers import local_ray, run_cli

EVERY = 5
STRICT = {"max_gap": 0}  # a track ends at its first missed frame: more, shorter tracks
DEFAULTS = TrackerConfig()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("shapes"), images=1, videos=2, frames=75, fps=25, seed=7)


@pytest.fixture(scope="module")
def finished(shapes, tmp_path_factory):
    """The finished job's OUT and its spec (made once; tests copy it)."""
    out = tmp_path_factory.mktemp("finished") / "out"
    spec = JobSpec([str(shapes.videos_dir), str(shapes.images_dir)], str(out), model="demo", weights="demo",
                   every=EVERY, segment_seconds=1.0, workers=1, batch_size=4, embeddings=True,
                   compact=False)  # parts as committed: one test compacts them itself
    images = JobSpec([str(shapes.images_dir)], str(out.parent / "images"), model="demo", weights="demo", workers=1)
    with local_ray():
        assert run_job(spec, stream=io.StringIO()) == 0
        assert run_job(images, stream=io.StringIO()) == 0
    return out, spec


@pytest.fixture
def out(finished, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(finished[0], copy)
    return copy


def ids(output) -> dict:
    """{(source, frame, instance): track_id} of the videos' instances, as a query reads them."""
    rows = open_output(str(output)).sql("SELECT source, frame, instance, track_id FROM instances"
                                        " WHERE source LIKE '%.mp4'").to_pylist()
    assert rows
    return {(r["source"].rsplit("/", 1)[-1], r["frame"], r["instance"]): r["track_id"] for r in rows}


def partition(track_ids: dict) -> frozenset:
    """The tracks as sets of (source, frame, instance): what the ids mean, whatever the numbers
    (with two videos, a reader that took one video's ids from each generation shows here).
    Unconfirmed detections (track_id null) belong to no track."""
    tracks = defaultdict(set)
    for key, track_id in track_ids.items():
        if track_id is None:
            continue
        tracks[(key[0], track_id)].add(key)  # ids are numbered per video
    return frozenset(frozenset(members) for members in tracks.values())


def job_file(output) -> dict:
    return json.loads((output / "_job.json").read_text())


def files(output) -> dict:
    return {str(p.relative_to(output)): p.read_bytes() for p in sorted(output.rglob("*")) if p.is_file()}


# Runs `maskray ARGS` in a fresh process and reports which heavy modules it imported.
NO_RAY_NO_MODEL = """
import sys
from maskray.cli import main
try:
    main(sys.argv[1:])
except SystemExit as end:
    code = end.code
loaded = [name for name in ("ray", "torch", "torchvision", "maskray.models.predictor") if name in sys.modules]
print("LOADED", ",".join(loaded))
sys.exit(code)
"""


@pytest.mark.ray
def test_retrack_with_the_jobs_settings_gives_its_ids_without_ray_or_model(out):
    before = ids(out)
    done = subprocess.run([sys.executable, "-c", NO_RAY_NO_MODEL, "retrack", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "LOADED \n" in done.stdout or done.stdout.rstrip().endswith("LOADED"), done.stdout  # nothing heavy
    assert "retracked 2 videos with the defaults" in done.stdout
    assert ids(out) == before  # the same settings, the same cut and lookahead: the job's own ids
    tracks = job_file(out)["tracks"]
    assert tracks["tracker"] == {} and tracks["dir"] == "retracks/000001"


@pytest.mark.ray
def test_a_short_max_gap_gives_more_tracks_and_the_record_says_so(out):
    before = ids(out)
    shown = run_cli("retrack", out, "--track-max-gap", "0")
    assert shown.returncode == 0, shown.stderr
    strict = ids(out)
    assert set(strict) == set(before)
    assert len(partition(strict)) > len(partition(before))
    assert f"{len(partition(before))} tracks -> {len(partition(strict))}" in shown.stdout
    for video in {source for source, _, _ in strict}:  # each video's ids: 1, 2, ... by first sight
        numbers = sorted({i for (source, _, _), i in strict.items() if source == video and i is not None})
        assert numbers == list(range(1, len(numbers) + 1))
    assert job_file(out)["tracks"]["tracker"] == STRICT
    status = run_cli("status", out)
    assert "max_gap=0" in status.stdout, status.stdout
    # A setting not given stays as the current tracks have it; back to the default gives the job's ids.
    retrack(str(out), {"match_iou": DEFAULTS.match_iou})
    assert ids(out) == strict and job_file(out)["tracks"]["tracker"] == STRICT
    retrack(str(out), {"max_gap": DEFAULTS.max_gap})
    assert ids(out) == before
    # Only the current generation and the one before stay; the job's own files are kept.
    assert sorted(os.listdir(out / "retracks")) == ["000002", "000003"]
    assert os.listdir(out / "tracks")


@pytest.mark.ray
def test_a_compacted_job_retracks_the_same(out, finished, tmp_path):
    from maskray.pipeline.output.compaction import compact

    plain = tmp_path / "plain"
    shutil.copytree(finished[0], plain)
    retrack(str(plain), STRICT)
    assert compact(str(out)).merged_files
    retrack(str(out), STRICT)
    assert ids(out) == ids(plain)


@pytest.mark.ray
def test_a_reader_during_retracks_sees_the_old_or_the_new_ids_never_a_mix(out):
    old = partition(ids(out))
    retrack(str(out), STRICT)
    new = partition(ids(out))
    assert old != new
    seen, stop, failures = [], threading.Event(), []

    def read():
        while not stop.is_set():
            try:
                seen.append(partition(ids(out)))
            except Exception as error:  # noqa: BLE001 - reported below
                failures.append(repr(error))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for turn in range(8):
            retrack(str(out), {"max_gap": DEFAULTS.max_gap} if turn % 2 == 0 else STRICT)
    finally:
        stop.set()
        reader.join(timeout=120)
    assert not failures, failures[:3]
    assert seen and all(answer in (old, new) for answer in seen)


@pytest.mark.ray
def test_a_resumed_job_keeps_the_retracked_ids(out, finished):
    _, spec = finished
    retrack(str(out), STRICT)
    strict = ids(out)
    spec = JobSpec(**{**spec.to_dict(), "output": str(out)})
    assert run_job(spec, stream=io.StringIO()) == 0  # every shard committed: nothing to redo
    assert ids(out) == strict and job_file(out)["tracks"]["tracker"] == STRICT
    # A resume that redoes a lost segment: the same frames, the same instances, the same ids.
    reader = open_output(str(out))
    last = sorted(r for r in reader.commits if r.startswith("vid-"))[-1]
    lost = sink.OutputSink(str(out), reader.job["job_id"])
    lost.withdraw(lost.committed()[last])
    lost.log.publish(complete=False)
    with local_ray():
        assert run_job(spec, stream=io.StringIO()) == 0
    assert ids(out) == strict and job_file(out)["tracks"]["tracker"] == STRICT


@pytest.mark.ray
def test_retrack_on_s3(finished, s3_client, s3_bucket, tmp_path):
    source, _ = finished
    for path in sorted(source.rglob("*")):
        if path.is_file():
            s3_client.upload_file(str(path), s3_bucket, f"out/{path.relative_to(source)}")
    local = tmp_path / "local"
    shutil.copytree(source, local)
    retrack(str(local), STRICT)
    remote = f"s3://{s3_bucket}/out"
    shown = run_cli("retrack", remote, "--track-max-gap", "0")
    assert shown.returncode == 0, shown.stderr
    assert ids(remote) == ids(local)
    body = s3_client.get_object(Bucket=s3_bucket, Key="out/_job.json")["Body"].read()
    assert json.loads(body)["tracks"]["tracker"] == STRICT


@pytest.mark.ray
def test_bad_input_is_one_line_exit_2_and_changes_nothing(out, finished, tmp_path):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(out, unfinished)
    (unfinished / "_SUCCESS").unlink()
    images = tmp_path / "images"
    shutil.copytree(finished[0].parent / "images", images)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([out, "--track-match-iou", "2"], out, "--track-match-iou must be between"),
        ([out, "--track-max-gap", "-1"], out, "--track-max-gap must be at least"),
        ([unfinished], unfinished, "has not finished"),
        ([images], images, "has no videos"),
        ([empty], empty, "no maskray job"),
        ([tmp_path / "missing"], None, "no maskray job"),
    ]
    for args, folder, message in cases:
        before = files(folder) if folder else None
        shown = run_cli("retrack", *args)
        assert shown.returncode == 2, (args, shown.stderr)
        assert message in shown.stderr and len(shown.stderr.strip().splitlines()) == 1, shown.stderr
        assert "Traceback" not in shown.stderr
        if folder:
            assert files(folder) == before
        else:
            assert not (tmp_path / "missing").exists()


@pytest.mark.ray
def test_overwrite_removes_the_retracked_ids_too(out):
    retrack(str(out), STRICT)
    retrack(str(out), {"match_iou": DEFAULTS.match_iou})
    assert len(list((out / "retracks").rglob("*.parquet"))) == 4  # two generations of two videos
    (out / "retracks" / "000002" / "notes.txt").write_text("mine")  # not maskray's: stays
    sink.clear_output(str(out))  # what `submit --overwrite` does before the new job
    assert [p.name for p in (out / "retracks").rglob("*") if p.is_file()] == ["notes.txt"]
    assert not (out / "_job.json").exists()


def test_stored_embeddings_reach_the_tracker_where_the_job_kept_them():
    """The optional `embedding` column (fixed-size float16 lists) becomes (N, D) float32 for the
    tracker; a frame with an instance lacking one is tracked without appearance."""
    import numpy as np
    import pyarrow as pa

    from maskray.pipeline.tracking.stored_frames import _prediction

    vectors = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], dtype=np.float16)
    columns = {"shard": ["s", "s"], "frame": [4, 4], "instance": [0, 1], "category_id": [1, 2],
               "score": pa.array([0.9, 0.4], pa.float32()), "x1": [1.0, 5.0], "y1": [2.0, 6.0],
               "x2": [3.0, 7.0], "y2": [4.0, 8.0], "mask_rle": ["a", "b"], "width": [8, 8], "height": [9, 9]}
    kept = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float16()), 3)
    frame = _prediction(pa.table({**columns, "embedding": kept}))
    assert frame.embeddings.dtype == np.float32 and frame.embeddings.shape == (2, 3)
    assert np.array_equal(frame.embeddings, vectors.astype(np.float32))
    assert frame.boxes.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]] and (frame.height, frame.width) == (9, 8)
    one_missing = pa.array([vectors[0].tolist(), None], pa.list_(pa.float16(), 3))
    assert _prediction(pa.table({**columns, "embedding": one_missing})).embeddings is None
    assert _prediction(pa.table(columns)).embeddings is None
