"""Issue 12's execution and output items, reproduced on real runs: `--overwrite` beside the
inputs, two `submit`s on one output, one input that crashes the model, status from the first
second, and a driver process that never imports torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from maskray.jobs.launch import run_job
from maskray.pipeline.output import lease
from maskray.pipeline.output.status import output_status
from results_helpers import run_maskray
from submit_helpers import REPO, SMALL_FLAGS, commits, frame_keys, local_ray, read_table, small_spec


@pytest.fixture(scope="module")
def ray_session():
    with local_ray() as ray:
        yield ray


def test_overwrite_next_to_the_inputs_is_refused_and_deletes_nothing(data_dir, tmp_path, capsys, ray_session):
    # Issue 12, item 1: `submit proj/frames --output proj`, then the same with --every 2
    # --overwrite emptied proj/frames/. Either way round (OUT inside a source, or a source
    # inside OUT) --overwrite is refused with one line and every input stays.
    project = tmp_path / "proj"
    (project / "frames").mkdir(parents=True)
    for name in ("camera.png", "coins.png"):
        shutil.copy(data_dir / "images" / name, project / "frames" / name)
    first = ["submit", *SMALL_FLAGS, project, "--output", project / "out"]
    code, _, err = run_maskray(first, capsys)
    assert code == 0, err
    for again in ([*first, "--every", "2", "--overwrite"],
                  ["submit", *SMALL_FLAGS, project / "frames", "--output", project, "--every", "2", "--overwrite"]):
        code, _, err = run_maskray(again, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "overlaps source" in lines[0], err
    assert sorted(p.name for p in (project / "frames").glob("*.png")) == ["camera.png", "coins.png"]
    assert output_status(str(project / "out")).state == "done"

    # Elsewhere, --overwrite replaces the old job but keeps a user's file kept in OUT (and so
    # does the new job's compaction). The old job keeps its parts, whose names are its shards'.
    output = tmp_path / "out"
    code, _, err = run_maskray(["submit", *SMALL_FLAGS, project / "frames", "--output", output, "--no-compact"],
                               capsys)
    assert code == 0, err
    (output / "frames" / "my-notes.txt").write_text("mine")
    old_parts = {p.name for p in (output / "frames").glob("*.parquet")}
    code, _, err = run_maskray(["submit", *SMALL_FLAGS, project / "frames", "--output", output,
                                "--max-instances", "2", "--overwrite"], capsys)
    assert code == 0, err
    assert (output / "frames" / "my-notes.txt").read_text() == "mine"
    assert not old_parts & {p.name for p in (output / "frames").glob("*.parquet")}
    assert set(frame_keys(read_table(str(output), "frames")).values()) == {1}


def test_one_image_that_crashes_the_model_becomes_an_error_row(tmp_path, data_dir, ray_session):
    # Issue 12, item 3: a 400x1 divider beside a good image. At --max-size 8 torchvision's resize
    # gives the divider (even padded to 1:16 by the decode guard) a 0-pixel side, and the model
    # raises on every attempt. The shard is bisected: the good image is written, the divider
    # becomes an error row, and the job does not fail.
    folder = tmp_path / "scraped"
    folder.mkdir()
    Image.fromarray(np.full((1, 400, 3), 200, np.uint8)).save(folder / "divider.png")
    shutil.copy(data_dir / "images" / "coffee.png", folder / "coffee.png")
    output = tmp_path / "out"
    assert run_job(small_spec([folder], output, min_size=4, max_size=8)) == 3
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in read_table(str(output), "frames").to_pylist()}
    assert sorted(rows) == ["coffee.png", "divider.png"]  # each input once
    assert rows["coffee.png"]["status"] == "ok" and rows["coffee.png"]["num_instances"] > 0
    assert rows["divider.png"]["status"] == "error" and "failed the worker" in rows["divider.png"]["error"]
    status = output_status(str(output))
    assert status.state == "done" and status.shards_done == status.shards_total == 1 and status.errors == 1


def test_a_second_submit_on_a_live_output_is_refused(data_dir, tmp_path, capsys):
    # Issue 12, item 2: two submits on one output at once (a cron overlap). The first runs in
    # its own process with its own embedded Ray; the second is refused while the first lives.
    output = tmp_path / "out"
    video = data_dir / "videos" / "bikes.mp4"
    command = ["submit", video, "--output", output, "--every", "25", "--segment-seconds", "2",
               "--batch-size", "1", *SMALL_FLAGS]
    first = subprocess.Popen([sys.executable, "-c", "from maskray.cli import main; main()", *map(str, command)],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not lease.read_leases(str(output)) or not (output / "_job.json").exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first submit did not start"
            time.sleep(0.05)
        # Honest from the first second: running, with its driver named, before any commit.
        early = output_status(str(output))
        assert early.state == "running" and early.driver and f"pid {first.pid}" in early.driver

        for extra in ([], ["--every", "50", "--overwrite"]):
            code, _, err = run_maskray([*command, *extra], capsys)
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1, err
            assert "being written by another maskray submit" in lines[0] and f"pid {first.pid}" in lines[0]
            assert "silent for" in lines[0]
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err[-2000:]
    finally:
        if first.poll() is None:
            first.kill()

    status = output_status(str(output))
    assert status.state == "done" and status.shards_done == status.shards_total
    assert status.frames_done == status.frames_total == 10
    keys = frame_keys(read_table(str(output), "frames"))
    assert len(keys) == 10 and set(keys.values()) == {1}
    assert lease.read_leases(str(output)) == []  # released at the end
    job_id = json.loads((output / "_job.json").read_text())["job_id"]
    assert {r["job_id"] for r in commits(str(output)).values()} == {job_id}


def test_the_submit_driver_never_imports_torch(data_dir, tmp_path):
    # The driver runs in this subprocess; Ray's workers (which load the model) are other processes.
    output = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys
        from maskray.jobs.launch import run_job
        from maskray.jobs.spec import JobSpec
        spec = JobSpec(sources=[{str(data_dir / "images" / "coins.png")!r}], output={str(output)!r},
                       model="demo", weights="none", min_size=128, max_size=256)
        code = run_job(spec)
        print("exit", code, "torch", "torch" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "exit 0 torch False"


pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]  # real local Ray jobs
