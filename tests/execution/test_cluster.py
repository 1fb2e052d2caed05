"""Cluster jobs through the Ray Jobs API, against a real Ray head started for this module.

The head (`ray start --head --block` on free 127.0.0.1 ports, its own temp dir) runs this
checkout's `maskray` from the venv, so a submitted job's driver runs there exactly as on a
cluster with maskray installed. See tests/ray_head.py for how only this head is stopped.
"""

from __future__ import annotations

import re
import shutil
import time

import pytest

from ray_head import free_ports, start_head, stop_head

JOB_ID = re.compile(r"^maskray-[0-9a-f]{8}-[0-9a-f]{8}$", re.M)
# Ray's own log-tailing client passes ssl=None to aiohttp; nothing maskray can change.
pytestmark = [pytest.mark.ray,  # a real `ray start --head` cluster
              pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")]


@pytest.fixture(scope="module")
def ray_head():
    """A private Ray head with the dashboard (Jobs API) on 127.0.0.1; yields its RayHead."""
    head = start_head(num_cpus=2)
    try:
        yield head
    finally:
        stop_head(head)


def maskray(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process as a user would; returns (exit code, stdout, stderr)."""
    from maskray.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def wait_for(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_unreachable_address_is_one_line_error(capsys):
    (port,) = free_ports(1)
    code, out, err = maskray(capsys, "jobs", "--address", f"http://127.0.0.1:{port}")
    assert code == 1
    assert err.count("\n") == 1 and "cannot reach the Ray Jobs API" in err and "Traceback" not in err


def test_entrypoint_rebuilds_the_same_spec_on_the_cluster(tmp_path):
    """The cluster parses the entrypoint with the real `submit` command: same spec, same
    fingerprint (so a resubmission resumes), joined with `--address auto`."""
    import shlex

    from maskray.commands.run import submit_command, submit_spec
    from maskray.jobs.cluster.api import build_entrypoint
    from maskray.jobs.spec import JobSpec

    common = dict(sources=[str(tmp_path / "my videos"), "s3://bucket/cams/"], output=str(tmp_path / "o'ut"),
                  model="maskrcnn_resnet50_fpn_v2", weights="none", min_size=128, workers=3,
                  gpus_per_worker=0.5, every=5, segment_seconds=2.5)
    specs = [
        JobSpec(**common, score_threshold=0.25),
        # Fields whose flags differ from their names: classes, per-class thresholds, tracking,
        # compaction at the end (--no-compact).
        JobSpec(**common, score_threshold="person=0.7,car=0.6,0.25", classes="person,car,3", pre_nms_top=500,
                track=False, tracker={"max_gap": 4, "match_iou": 0.4}, compact=False),
    ]
    for spec in specs:
        entrypoint = build_entrypoint(spec, overwrite=True)
        words = shlex.split(entrypoint.split("; code=$?", 1)[0])
        assert words[:2] == ["maskray", "submit"]
        params = submit_command.make_context("submit", words[2:]).params
        assert (params.pop("address"), params.pop("overwrite"), params.pop("wait")) == ("auto", True, False)
        rebuilt = submit_spec(params.pop("sources"), params.pop("output"), params)
        assert rebuilt.to_dict() == spec.to_dict()
        assert rebuilt.fingerprint() == spec.fingerprint()


def test_submitted_job_succeeds_and_is_listed(ray_head, data_dir, tmp_path, capsys, monkeypatch):
    # A credential in the submitting shell must not reach the job's entrypoint, metadata or env.
    secret = "maskray-test-secret-4f1d"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # Ray's own client would prefer it
    images = tmp_path / "images"
    images.mkdir()
    for name in ("astronaut.png", "coffee.png", "camera.png"):
        shutil.copy(data_dir / "images" / name, images / name)
    output = tmp_path / "out"
    address = ray_head.dashboard_url

    code, out, err = maskray(capsys, "submit", images, "--output", output, "--weights", "none",
                             "--min-size", "128", "--max-size", "256", "--max-instances", "5", "--address", address,
                             "--wait")
    assert code == 0, err + out
    job_id = JOB_ID.search(out).group(0)
    assert (output / "_SUCCESS").exists()
    from maskray.pipeline.output.reader import open_output

    frames = open_output(str(output)).sql("SELECT source, status FROM frames ORDER BY source")
    assert frames.column("source").to_pylist() == sorted(str(p) for p in images.iterdir())
    assert set(frames.column("status").to_pylist()) == {"ok"}

    from ray.job_submission import JobSubmissionClient

    details = JobSubmissionClient(address).get_job_info(job_id)
    assert secret not in repr(details) and details.metadata["maskray.output"] == str(output)

    code, out, _ = maskray(capsys, "jobs", "--address", address)
    line = next(line for line in out.splitlines() if line.startswith(job_id))
    assert "SUCCEEDED" in line and str(output) in line and "3/3 frames" in line and "complete" in line

    code, out, _ = maskray(capsys, "status", job_id, "--address", address)
    assert code == 0 and f"job {job_id}: SUCCEEDED" in out and str(output) in out

    code, out, _ = maskray(capsys, "logs", job_id, "--address", address)
    assert code == 0 and "maskray submit" in out and "done: 3 frames" in out

    # Cancelling a finished job changes nothing and says how it ended.
    code, out, _ = maskray(capsys, "cancel", job_id, "--address", address)
    assert code == 0 and "SUCCEEDED" in out

    code, out, err = maskray(capsys, "logs", "maskray-00000000-00000000", "--address", address)
    assert code == 2 and err.count("\n") == 1 and "no job maskray-00000000-00000000" in err


def test_cancelled_job_keeps_committed_shards_and_resumes(ray_head, data_dir, tmp_path, capsys):
    from maskray.pipeline.output import sink
    from maskray.pipeline.output.reader import open_output

    video = tmp_path / "bikes.mp4"
    shutil.copy(data_dir / "videos" / "bikes.mp4", video)
    output = tmp_path / "out"
    address = ray_head.dashboard_url
    command = ["submit", video, "--output", output, "--weights", "none", "--min-size", "128",
               "--max-size", "256", "--max-instances", "5", "--every", "10", "--segment-seconds", "1",
               "--address", address]

    code, out, err = maskray(capsys, *command)
    assert code == 0, err
    job_id = JOB_ID.search(out).group(0)
    # A second job on an output that is still being written is refused.
    code, _, err = maskray(capsys, *command)
    assert code == 2 and job_id in err

    wait_for(lambda: sink.read_commits(str(output)), 150, "the first committed shard")
    code, out, _ = maskray(capsys, "cancel", job_id, "--address", address)
    assert code == 0 and f"job {job_id}: STOPPED" in out

    manifest = sink.read_job(str(output))
    commits = sink.read_commits(str(output))
    assert 1 <= len(commits) < manifest["shards"], "cancel came too late to test a resume"
    assert not (output / "_SUCCESS").exists()
    # Readers see exactly the committed shards; a part without a commit can only belong to
    # the shard the one worker had in flight, and no reader sees it.
    snapshot = open_output(str(output))
    frames = snapshot.frames().to_table()
    assert frames.num_rows == sum(record.frames for record in snapshot.commits.values())
    for table in ("instances", "frames"):
        named = {record.paths()[table] for record in commits.values()}
        uncommitted = {f"{table}/{p.name}" for p in (output / table).glob("*.parquet")} - named
        assert len(uncommitted) <= 1

    code, out, _ = maskray(capsys, "jobs", "--address", address)
    line = next(line for line in out.splitlines() if line.startswith(job_id))
    # The worker the driver left may still commit its shard while Ray ends it.
    done = {len(commits), len(sink.read_commits(str(output)))}
    assert "STOPPED" in line and any(f"{n}/{manifest['shards']} shards" in line for n in done)

    code, out, err = maskray(capsys, *command, "--wait")
    assert code == 0, err + out
    assert "resuming" in out
    assert (output / "_SUCCESS").exists()
    counts = open_output(str(output)).sql("SELECT frame, count(*) AS n FROM frames GROUP BY frame")
    seen = dict(zip(counts.column("frame").to_pylist(), counts.column("n").to_pylist()))
    assert seen == {frame: 1 for frame in range(0, 250, 10)}


def test_failed_job_reports_the_drivers_error(ray_head, tmp_path, capsys):
    """A mistake only the cluster can see (here a missing source) fails the Ray job; the
    client shows maskray's one-line error and exits 2, as a local run would."""
    missing = tmp_path / "nowhere"
    address = ray_head.dashboard_url
    code, out, err = maskray(capsys, "submit", missing, "--output", tmp_path / "out", "--weights", "none",
                             "--address", address, "--wait")
    assert code == 2 and f"FAILED: source not found: {missing}" in err
    job_id = JOB_ID.search(out).group(0)
    code, out, _ = maskray(capsys, "status", job_id, "--address", address)
    assert f"job {job_id}: FAILED" in out and "source not found" in out
