"""`maskray submit` end to end on a real local Ray: the output contract, S3, resume, refusals,
usage errors, and `maskray status`."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from pycocotools import mask as mask_utils

from maskray import cli
from s3_endpoint import TEST_ACCESS_KEY, TEST_SECRET_KEY
from maskray.jobs.launch import run_job
from maskray.errors import UsageError
from maskray.pipeline import storage
from maskray.pipeline.execution.progress import Progress
from maskray.pipeline.output.layout import CommitRecord
from submit_helpers import SMALL_FLAGS, commits, frame_keys, local_ray, read_table, run_cli, small_spec

pytestmark = pytest.mark.ray  # every test here runs a real local Ray

IMAGES = ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "logo.png", "rocket.jpg"]


@pytest.fixture(scope="module")
def ray_cluster(s3_server):
    # After s3_server: the workers inherit the AWS variables it sets.
    with local_ray() as ray:
        yield ray


@pytest.fixture(scope="module")
def full_job(ray_cluster, data_dir, tmp_path_factory):
    """All 7 images and both videos, every 25th frame (bikes 10 frames, carphone 5)."""
    output = tmp_path_factory.mktemp("full") / "out"
    spec = small_spec([data_dir], output, every=25)
    code = run_job(spec)
    return spec, code


def expected_frames(data_dir) -> set:
    images = {(str(data_dir / "images" / name), 0) for name in IMAGES}
    bikes = {(str(data_dir / "videos" / "bikes.mp4"), f) for f in range(0, 250, 25)}
    carphone = {(str(data_dir / "videos" / "carphone_pristine.mp4"), f) for f in range(0, 120, 25)}
    return images | bikes | carphone


def check_output(output: str, expected: set) -> None:
    """What a user checks in any finished output: the contract of docs/output.md."""
    assert storage.exists(storage.join(output, "_SUCCESS"))
    manifest = json.loads(storage.read_bytes(storage.join(output, "_job.json")))
    assert manifest["weights_id"] and manifest["model"] == "demo"
    frames, instances = read_table(output, "frames"), read_table(output, "instances")
    keys = frame_keys(frames)
    assert set(keys) == expected and set(keys.values()) == {1}  # each frame exactly once
    assert set(frames.column("status").to_pylist()) == {"ok"}
    assert sum(frames.column("num_instances").to_pylist()) == instances.num_rows > 0

    size = {(s, f): (w, h) for s, f, w, h in zip(*(frames.column(c).to_pylist()
                                                     for c in ("source", "frame", "width", "height")))}
    for row in instances.to_pylist():
        width, height = size[(row["source"], row["frame"])]
        assert (row["width"], row["height"]) == (width, height)
        mask = mask_utils.decode({"size": [height, width], "counts": row["mask_rle"].encode()})
        assert mask.shape == (height, width) and int(mask.sum()) == row["mask_area"]
        assert 0 <= row["x1"] <= row["x2"] <= width and 0 <= row["y1"] <= row["y2"] <= height
    for uri, _ in storage.list_files(storage.join(output, "instances")):
        filesystem, path = storage.resolve(uri)
        parquet = pq.ParquetFile(filesystem.open_input_file(path))
        metadata = parquet.schema_arrow.metadata
        assert metadata[b"maskray.job_id"].decode() == manifest["job_id"]
        assert metadata[b"maskray.weights_id"].decode() == manifest["weights_id"]
        assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"


def test_job_over_images_and_videos_writes_the_output_contract(full_job, data_dir):
    spec, code = full_job
    assert code == 0
    check_output(spec.output, expected_frames(data_dir))
    frames = read_table(spec.output, "frames").to_pylist()
    bikes_25 = next(r for r in frames if r["source"].endswith("bikes.mp4") and r["frame"] == 25)
    assert bikes_25["time"] == pytest.approx(1.0) and (bikes_25["width"], bikes_25["height"]) == (640, 272)
    image = next(r for r in frames if r["source"].endswith("coins.png"))
    assert image["time"] is None and image["frame"] == 0


def test_same_submit_again_resumes_without_new_work(full_job):
    spec, _ = full_job
    before = {shard: record["committed_at"] for shard, record in commits(spec.output).items()}
    assert run_job(small_spec(spec.sources, spec.output, every=25, workers=2, batch_size=2)) == 0
    after = {shard: record["committed_at"] for shard, record in commits(spec.output).items()}
    assert after == before  # no shard was processed again
    manifest = json.loads(storage.read_bytes(storage.join(spec.output, "_job.json")))
    assert manifest["weights_id"] == "none:seed0"  # the manifest still names the weights used


def test_different_spec_on_the_same_output_is_refused(full_job):
    spec, _ = full_job
    with pytest.raises(UsageError) as caught:
        run_job(small_spec(spec.sources, spec.output, every=50))
    assert "--overwrite" in str(caught.value) and "every" in str(caught.value)


def test_job_reads_and_writes_an_s3_bucket_and_overwrite_replaces_it(
        ray_cluster, data_dir, s3_client, s3_bucket):
    names = ["images/rocket.jpg", "images/coins.png", "videos/carphone_pristine.mp4"]
    for name in names:
        s3_client.upload_file(str(data_dir / name), s3_bucket, f"in/{name}")
    output = f"s3://{s3_bucket}/out"
    assert run_job(small_spec([f"s3://{s3_bucket}/in/"], output, every=25)) == 0
    expected = {(f"s3://{s3_bucket}/in/{n}", 0) for n in names[:2]}
    expected |= {(f"s3://{s3_bucket}/in/videos/carphone_pristine.mp4", f) for f in range(0, 120, 25)}
    check_output(output, expected)

    # A different job on the same output: refused, then done with --overwrite, which
    # removes the old job's shards.
    rocket = f"s3://{s3_bucket}/in/images/rocket.jpg"
    with pytest.raises(UsageError, match="--overwrite"):
        run_job(small_spec([rocket], output, max_instances=2))
    assert run_job(small_spec([rocket], output, max_instances=2), overwrite=True) == 0
    frames = read_table(output, "frames")
    assert frame_keys(frames) == {(rocket, 0): 1}
    assert max(frames.column("num_instances").to_pylist()) <= 2
    listed = [uri for uri, _ in storage.list_files(output)]
    assert sum("/instances/" in uri for uri in listed) == 1
    # The credentials the job ran with appear in none of the files it wrote.
    for uri in listed:
        data = storage.read_bytes(uri)
        assert TEST_SECRET_KEY.encode() not in data and TEST_ACCESS_KEY.encode() not in data, uri


def test_status_prints_counts_and_state(full_job, capsys):
    spec, _ = full_job
    with pytest.raises(SystemExit) as exited:
        cli.main(["status", spec.output])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "state     done" in text and "frames    22/22" in text
    assert "errors    0" in text and "shards    " in text
    instances = read_table(spec.output, "instances").num_rows
    assert f"instances {instances}" in text


def _part_names(output: str, table: str) -> list[str]:
    return sorted(uri.rsplit("/", 1)[-1] for uri, _ in storage.list_files(storage.join(output, table)))


def test_a_finished_job_is_compacted_unless_no_compact(full_job, data_dir, tmp_path, capsys):
    # By default the job ends merged: one file per table (every frame once: check_output above).
    spec, _ = full_job
    shards = len(commits(spec.output))
    assert shards > 2
    for table in ("instances", "frames"):
        (name,) = _part_names(spec.output, table)
        assert name.startswith("compacted-"), name
    # --no-compact keeps the parts as committed: two per shard, read as they are.
    kept = tmp_path / "kept"
    code, out, err = run_main(capsys, "submit", data_dir / "images", "--output", kept, *SMALL_FLAGS, "--no-compact")
    assert code == 0, err
    assert "compacted" not in out + err
    records = commits(str(kept))
    for table in ("instances", "frames"):
        assert len(_part_names(str(kept), table)) == len(records) and not any(
            name.startswith("compacted-") for name in _part_names(str(kept), table))
    code, out, _ = run_main(capsys, "query", kept, "SELECT count(*) AS n FROM frames", "--format", "csv")
    assert code == 0 and out.splitlines()[-1] == str(len(IMAGES))
    code, out, _ = run_main(capsys, "query", spec.output, "SELECT count(*) AS n FROM frames", "--format", "csv")
    assert code == 0 and out.splitlines()[-1] == "22"


def run_main(capsys, *args):
    """`maskray ARGS` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def test_usage_errors_are_one_line_with_exit_code_2(data_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    rocket = data_dir / "images" / "rocket.jpg"
    cases = [
        (["submit", tmp_path / "no-such-folder", "--output", tmp_path / "o1"], "source not found"),
        (["submit", rocket, "--output", blocker / "out"], "cannot write to output"),
        (["submit", data_dir, "--output", tmp_path / "o2", "--every", "5", "--fps", "2"], "--every"),
        (["submit", rocket, "--output", tmp_path / "o3", "--weights", tmp_path / "no.pt"], "no.pt"),
        (["submit", rocket, "--output", tmp_path / "o4", "--model", "nope"], "unknown model"),
        (["submit", rocket, "--output", tmp_path / "o5", "--batch-size", "0"], "--batch-size"),
        (["status", tmp_path], "no maskray job"),
        (["submit", rocket, "--output", tmp_path / "o7", "--no-such-flag"], "No such option '--no-such-flag'"),
        (["submit", "--output", tmp_path / "o8"], "Missing argument 'SOURCE...'"),
        (["demo", "--workdir", blocker / "demo", "--weights", "none"], "cannot write synthetic data"),
        (["train", "--synthetic", "2", "--output", blocker / "train"], "cannot write synthetic data"),
        (["submit", "ftp://host/a.jpg", "--output", tmp_path / "o9"], "unsupported URI scheme 'ftp'"),
        (["status", "ftp://host/out"], "unsupported URI scheme 'ftp'"),
    ]
    for args, words in cases:
        if args[0] == "submit":  # small model flags first: the case's own flags override them
            args = ["submit", *SMALL_FLAGS, *args[1:]]
        code, _, err = run_main(capsys, *args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and words in lines[0], (args, err)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3").exists()

    # The real entry point, in a fresh process: same one line, no traceback.
    result = run_cli("submit", tmp_path / "no-such-folder", "--output", tmp_path / "o6")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"maskray: error: source not found: {tmp_path / 'no-such-folder'}"]


def test_submit_help_shows_an_example(capsys):
    code, out, _ = run_main(capsys, "submit", "--help")
    assert code == 0 and "Example" in out and "--every" in out and "--overwrite" in out


def test_progress_shows_frames_rate_eta_and_errors():
    plain = io.StringIO()
    progress = Progress(10, 3, done_frames=2, done_shards=1, stream=plain, interval=0.0, terminal=False)
    progress.start_clock()
    progress.committed(CommitRecord(shard="s1", job_id="j", attempt=1, frames=4, errors=1, instances=9, files={}))
    line = plain.getvalue().strip().splitlines()[-1]
    assert "6/10 frames (60%)" in line and "2/3 shards" in line and "frames/s" in line
    assert "ETA" in line and "1 errors" in line
    assert progress.summary()["frames_this_run"] == 4

    terminal = io.StringIO()
    bar = Progress(10, 3, stream=terminal, terminal=True)
    bar.start_clock()
    bar.committed(CommitRecord(shard="s1", job_id="j", attempt=1, frames=4, errors=1, instances=9, files={}))
    bar.close()
    assert "4/10" in terminal.getvalue() and "errors 1" in terminal.getvalue()


def test_masks_are_pycocotools_identical(full_job):
    # The stored counts string re-encodes to itself through pycocotools.
    spec, _ = full_job
    row = read_table(spec.output, "instances").slice(0, 1).to_pylist()[0]
    mask = mask_utils.decode({"size": [row["height"], row["width"]], "counts": row["mask_rle"].encode()})
    again = mask_utils.encode(np.asfortranarray(mask))["counts"].decode()
    assert again == row["mask_rle"]
