"""The output contract in one place: path names only in layout.py, typed commit records, the
lease, `--overwrite`'s reach, and readers that stay one line on damaged or foreign records.
No Ray here: these run in seconds."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from maskray.errors import UsageError
from maskray.pipeline import storage
from maskray.pipeline.output import layout, lease, sink
from maskray.pipeline.output.layout import CommitRecord, DamagedOutputError, LeaseRecord
from maskray.pipeline.output.reader import open_output
from maskray.pipeline.output.status import output_status
from results_helpers import run_maskray, write_output
from submit_helpers import REPO

NAMES = ("_commits", "_SUCCESS", "_job.json", "_driver.json", "_leases")


def _code_strings(path: Path):
    """String constants of a module's code (docstrings left out: they may name the files)."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_output_path_names_are_written_only_in_layout():
    found = []
    for path in Path(REPO).rglob("*.py"):
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith(("tests/", ".venv/", "build/")) or relative == "pipeline/output/layout.py":
            continue
        for line, text in _code_strings(path):
            found += [f"{relative}:{line}: {name}" for name in NAMES if name in text]
    assert found == []


def _write_small_output(output: str) -> None:
    from results_helpers import empty_prediction
    from maskray.pipeline.output.schema import FrameRef

    frames = [(FrameRef(f"/data/{i}.png", 0, None, 32, 16), empty_prediction(16, 32)) for i in range(4)]
    write_output(output, frames, shard_size=2)


def test_commit_record_round_trips_and_a_truncated_one_names_its_file(tmp_path, capsys):
    record = CommitRecord(shard="s1", job_id="j1", attempt=2, frames=3, errors=1, instances=5,
                          files={"frames": {"path": "frames/s1.a2-x.parquet", "bytes": 9},
                                 "instances": {"path": "instances/s1.a2-x.parquet", "bytes": 9}})
    again = CommitRecord.from_json(record.to_json())
    assert again == record and again.planned == "s1" and again.transient_errors == 0

    output = str(tmp_path / "out")
    _write_small_output(output)
    damaged = layout.commit_uri(output, "s0001")
    Path(damaged).write_bytes(Path(damaged).read_bytes()[:40])  # a truncated upload
    with pytest.raises(DamagedOutputError, match="s0001.json"):
        sink.read_commits(output)
    for command in (["status", output], ["query", output, "SELECT count(*) FROM frames"]):
        code, out, err = run_maskray(command, capsys)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and "damaged" in lines[0] and "s0001.json" in lines[0], err
        assert "Traceback" not in err


def test_readers_ignore_commits_of_another_job(tmp_path):
    output = str(tmp_path / "out")
    _write_small_output(output)  # job "test-job", 2 shards of 2 frames
    stray = CommitRecord(shard="zz", job_id="another-job", attempt=1, frames=2, errors=0, instances=0,
                         files=dict(open_output(output).commits["s0000"].files))
    storage.write_bytes_atomic(layout.commit_uri(output, "zz"), stray.to_json())
    assert open_output(output).frames().count_rows() == 4
    status = output_status(output)
    assert status.frames_done == 4 and status.shards_done == 2 and status.state == "done"

    # A zombie writer of an older job cannot commit into an output another job now holds.
    zombie = sink.OutputSink(output, "old-job").shard_writer("s0000", 3, {})
    with pytest.raises(sink.StaleWriterError, match="test-job"):
        zombie.commit(frames=0, errors=0, instances=0)
    assert open_output(output).commits["s0000"].job_id == "test-job"


def test_bisected_pieces_count_once_they_tile_their_shard():
    def piece(planned, path):
        return CommitRecord(shard=f"{planned}~{path}", job_id="j", attempt=1, frames=1, errors=0,
                            instances=0, files={}, planned=planned, piece=path)

    whole = CommitRecord(shard="a", job_id="j", attempt=1, frames=1, errors=0, instances=0, files={})
    assert layout.covered_shards([whole, piece("b", "0"), piece("b", "10"), piece("b", "11"),
                                  piece("c", "0"), piece("c", "10")]) == {"a", "b"}


def test_overwrite_clears_only_the_files_maskray_committed(tmp_path):
    output = tmp_path / "out"
    _write_small_output(str(output))
    mine = [output / "frames" / "photo.png", output / "instances" / "notes.txt", output / "keep.csv"]
    for path in mine:
        path.write_text("the user's own file")
    named = [output / p for r in sink.read_commits(str(output)).values() for p in r.paths().values()]
    sink.clear_output(str(output))
    assert all(path.read_text() == "the user's own file" for path in mine)
    assert not any(path.exists() for path in named) and named
    assert not (output / layout.JOB_FILE).exists() and not (output / layout.SUCCESS_FILE).exists()


def test_overwrite_is_refused_where_output_and_source_overlap(tmp_path):
    project = tmp_path / "proj"
    (project / "frames").mkdir(parents=True)
    for output, source in ((project, project / "frames"), (project / "frames" / "out", project / "frames"),
                           (project / "frames", project / "frames")):
        with pytest.raises(UsageError, match="overlaps source"):
            sink.refuse_overlap(str(output), [str(source)])
    sink.refuse_overlap(str(tmp_path / "out"), [str(project / "frames"), str(tmp_path / "outside")])


def test_a_second_driver_is_refused_and_an_expired_lease_is_taken_over(tmp_path):
    output = str(tmp_path / "out")
    first = lease.Lease(output, ttl_s=60).acquire()
    with pytest.raises(UsageError) as refused:
        lease.Lease(output, ttl_s=60).acquire()
    message = str(refused.value)
    assert first.owner in message and f"pid {os.getpid()}" in message and "silent for" in message
    assert [held.owner for held in lease.read_leases(output)] == [first.owner]  # the loser left nothing

    # Silent past its expiry (plus the skew margin): the next driver takes over, and the old
    # holder learns it at its next heartbeat.
    first.record.renewed = time.time() - 60 - lease.SKEW_MARGIN_S - 5
    storage.write_bytes_atomic(first.uri, first.record.to_json())
    second = lease.Lease(output, ttl_s=60).acquire()
    assert [held.owner for held in lease.read_leases(output)] == [second.owner]
    with pytest.raises(lease.LeaseLostError):
        first.renew()


def test_lease_ages_tolerate_clock_skew():
    now = time.time()
    ahead = LeaseRecord(owner="a", host="elsewhere", pid=1, acquired=now, renewed=now + 20, ttl_s=60)
    assert ahead.silent_s(now) == 0.0 and lease.is_live(ahead, now)
    behind = LeaseRecord(owner="b", host="elsewhere", pid=1, acquired=now, renewed=now - 60 - 20, ttl_s=60)
    assert lease.is_live(behind, now)  # late by less than the margin: still its holder's
    assert not lease.is_live(behind, now + lease.SKEW_MARGIN_S)


def test_a_driver_killed_before_its_first_heartbeat_is_not_running_forever(tmp_path):
    output = str(tmp_path / "out")
    script = textwrap.dedent(f"""
        import os, signal
        from maskray.pipeline.output.sink import OutputSink
        OutputSink({output!r}).on_write_start(lambda previous: {{"job_id": "j1", "shards": 3, "frames": 9}},
                                              overwrite=False, sources=[], lease_ttl_s=120)
        os.kill(os.getpid(), signal.SIGKILL)  # gone before any heartbeat
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    # Its process is gone from this host: stopped at once.
    at_once = output_status(output)
    assert at_once.state == "failed" and "resume" in at_once.message and at_once.driver is None

    # Had it run on another machine, only time tells: running until its lease expires.
    [record] = lease.read_leases(output)
    record.host = "another-machine"
    storage.write_bytes_atomic(layout.lease_uri(output, record.owner), record.to_json())
    now = output_status(output)
    assert now.state == "running" and "another-machine" in now.driver and "silent for" in now.driver
    later = output_status(output, now=time.time() + 120 + lease.SKEW_MARGIN_S + 5)
    assert later.state == "failed" and "resume" in later.message and later.driver is None


def test_a_resume_redoes_shards_with_transient_errors_and_unfinished_bisections(tmp_path):
    from maskray.pipeline.execution.plan_feed import committed_in_plan

    output = str(tmp_path / "out")
    sink.write_job(output, {"job_id": "j"})
    writer_sink = sink.OutputSink(output, "j")

    def commit(shard, planned="", piece="", transient=0):
        writer = writer_sink.shard_writer(shard, 1, {})
        return writer.commit(frames=1, errors=transient, instances=0, transient_errors=transient,
                             planned=planned or shard, piece=piece)

    kept = commit("whole")
    flaky = commit("flaky", transient=1)
    half = commit("cut~0", planned="cut", piece="0")  # its other half never committed
    left = committed_in_plan(writer_sink, {"whole", "flaky", "cut"})
    assert list(left) == ["whole"]
    assert sorted(sink.read_commits(output)) == ["whole"]
    for gone in (flaky, half):  # withdrawn with their parts
        assert not any((tmp_path / "out" / path).exists() for path in gone.paths().values())
    assert all((tmp_path / "out" / path).exists() for path in kept.paths().values())


def test_a_streamed_plan_skips_committed_shards_and_withdraws_others_only_once_complete(tmp_path):
    """As shards are planned: a committed one is skipped, a transient one redone; a commit
    outside the plan stays until the plan is complete (it may yet be planned), then goes."""
    import io

    from maskray.pipeline.execution.plan_feed import PlanFeed
    from maskray.pipeline.execution.progress import Progress
    from maskray.pipeline.inputs.shards import Shard

    output = str(tmp_path / "out")
    sink.write_job(output, {"job_id": "j"})
    writer_sink = sink.OutputSink(output, "j")
    for shard, transient in (("whole", 0), ("flaky", 1), ("moved", 0)):
        writer_sink.shard_writer(shard, 1, {}).commit(frames=2, errors=transient, instances=0,
                                                      transient_errors=transient)

    class TwoSteps:  # planning that ends on its second poll
        def __init__(self):
            self.steps = [["whole", "flaky"], ["new"]]

        @property
        def done(self):
            return not self.steps

        def poll(self, timeout=0.0):
            return [Shard(id=i, kind="images", uris=(i,), end_frame=1, expected_frames=2) for i in self.steps.pop(0)]

    manifest, log = {"job_id": "j"}, io.StringIO()
    committed = writer_sink.committed()
    feed = PlanFeed(TwoSteps(), writer_sink, manifest, committed, Progress(None, None, stream=log), 0.0)
    assert [t.shard.id for t in feed.take()] == ["flaky"] and not feed.done
    assert sorted(sink.read_commits(output)) == ["moved", "whole"] and "shards" not in sink.read_job(output)
    assert [t.shard.id for t in feed.take()] == ["new"] and feed.done
    assert sorted(sink.read_commits(output)) == ["whole"] and sorted(committed) == ["whole"]
    job = sink.read_job(output)
    assert job["shards"] == 3 and job["frames"] == 6 and job["planned_at"] > 0
    assert "resuming: 1/3 shards already committed" in log.getvalue()
