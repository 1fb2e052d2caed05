"""Bad inputs never stop a job: they become `frames` rows with status 'error', the rest is done,
and the exit code says so (3)."""

from __future__ import annotations

import av
import pytest

from maskray.jobs.launch import run_job
from maskray.pipeline.output.status import output_status
from submit_helpers import frame_keys, local_ray, read_table, small_spec

pytestmark = pytest.mark.ray  # every test here runs a real local Ray


@pytest.fixture(scope="module")
def bad_folder(data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad") / "inputs"
    folder.mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.mp4").write_text("these are my notes, not a video\n" * 10)
    png = (data_dir / "images" / "coffee.png").read_bytes()
    (folder / "half.png").write_bytes(png[: len(png) // 3])  # a corrupt (cut) image
    (folder / "rocket.jpg").write_bytes((data_dir / "images" / "rocket.jpg").read_bytes())
    # A streamable copy of bikes.mp4 (index first) cut at 40%: the first frames are readable.
    streamable = folder.parent / "streamable.mp4"
    with av.open(str(data_dir / "videos" / "bikes.mp4")) as source, \
            av.open(str(streamable), "w", options={"movflags": "faststart"}) as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    data = streamable.read_bytes()
    (folder / "cut.mp4").write_bytes(data[: int(len(data) * 0.4)])
    return folder


@pytest.fixture(scope="module")
def bad_job(bad_folder, tmp_path_factory):
    output = tmp_path_factory.mktemp("bad-out") / "out"
    with local_ray():
        code = run_job(small_spec([bad_folder], output, every=25))
    return output, code


def test_bad_inputs_become_error_rows_and_the_job_goes_on(bad_folder, bad_job):
    output, code = bad_job
    assert code == 3
    rows = read_table(str(output), "frames").to_pylist()
    assert set(frame_keys(read_table(str(output), "frames")).values()) == {1}
    by_file = {}
    for row in rows:
        by_file.setdefault(row["source"].rsplit("/", 1)[-1], []).append(row)

    for name in ("empty.jpg", "notes.mp4", "half.png"):
        (row,) = by_file[name]
        assert row["status"] == "error" and row["error"] and "\n" not in row["error"], row
        assert row["num_instances"] == 0
    (rocket,) = by_file["rocket.jpg"]
    assert rocket["status"] == "ok" and rocket["num_instances"] > 0

    # The cut video: frames decoded before the break are kept, then an error row says why.
    cut = sorted(by_file["cut.mp4"], key=lambda r: r["frame"])
    ok = [r["frame"] for r in cut if r["status"] == "ok"]
    errors = [r for r in cut if r["status"] == "error"]
    assert len(ok) >= 2 and ok == list(range(0, 25 * len(ok), 25))
    assert errors and all(r["error"] for r in errors) and min(r["frame"] for r in errors) > ok[-1]
    assert all((r["width"], r["height"]) == (640, 272) for r in cut if r["status"] == "ok")


def test_instances_only_for_good_frames(bad_job):
    output, _ = bad_job
    frames = read_table(str(output), "frames").to_pylist()
    instances = read_table(str(output), "instances").to_pylist()
    good = {(r["source"], r["frame"]) for r in frames if r["status"] == "ok"}
    assert instances and {(r["source"], r["frame"]) for r in instances} <= good


def test_status_counts_the_errors(bad_job):
    output, _ = bad_job
    status = output_status(str(output))
    assert status.state == "done" and status.errors == 4
    assert status.shards_done == status.shards_total
