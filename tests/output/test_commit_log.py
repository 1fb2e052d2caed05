"""The commit log (issue 11): readers of a large job read a manifest, not one record per shard.

Outputs are written as the driver writes them (results_helpers.run_as_driver: the real sink,
lease, shard writers and manifests; no Ray, no model). Request counts come from the S3
endpoint's own request log (moto's server on 127.0.0.1), not from maskray.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from maskray.pipeline.output import commit_log, layout, sink
from maskray.pipeline.output.reader import open_output
from maskray.pipeline.output.schema import FrameRef
from maskray.pipeline.output.status import output_status
from results_helpers import prediction, rectangle, run_as_driver, run_maskray, write_output

SHARDS = 40


def _frames(count: int) -> list:
    """`count` frames of 48x32 px, frame i with i % 3 instances of known areas."""
    frames = []
    for i in range(count):
        masks = [rectangle(32, 48, 2 + k, 2, 12 + 10 * k, 20) for k in range(i % 3)]
        frames.append((FrameRef(f"/data/{i:03d}.png", 0, None, 48, 32),
                       prediction(masks, [1 + k for k in range(len(masks))], [0.9 - 0.1 * k for k in range(len(masks))])))
    return frames


def _expected(frames) -> tuple[int, int]:
    return len(frames), sum(len(p.scores) for _, p in frames)


class RequestLog(logging.Handler):
    """The S3 endpoint's access log: (method, key) of every request it answered."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.requests: list[tuple[str, str]] = []

    def emit(self, record):
        found = re.search(r"(GET|HEAD|PUT|POST|DELETE) (/\S*) HTTP", record.getMessage())
        if found:
            self.requests.append((found.group(1), found.group(2)))

    def count(self, pattern: str = "") -> int:
        return sum(1 for _, path in self.requests if pattern in path)


@pytest.fixture
def s3_requests(s3_server):
    logger = logging.getLogger("werkzeug")
    log, level = RequestLog(), logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(log)
    yield log
    logger.removeHandler(log)
    logger.setLevel(level)


def test_a_finished_job_is_read_from_its_manifest_in_a_few_requests(s3_bucket, s3_requests, capsys):
    output = f"s3://{s3_bucket}/out"
    frames = _frames(SHARDS)
    run_as_driver(output, frames, shard_size=1, every=7)
    frames_done, instances = _expected(frames)

    s3_requests.requests.clear()
    status = output_status(output)
    assert (status.state, status.shards_done, status.frames_done, status.instances) == ("done", SHARDS, frames_done, instances)
    status_requests = list(s3_requests.requests)
    # _job.json, _manifest.json, the manifest, _driver.json, _SUCCESS (a HEAD and a GET each),
    # the lease folder: not one per shard.
    assert 3 <= len(status_requests) <= 16, status_requests
    assert s3_requests.count(f"/{layout.COMMITS}") == 0

    s3_requests.requests.clear()
    code, out, err = run_maskray(["query", output, "SELECT count(*) AS n FROM instances", "--format", "csv"], capsys)
    assert code == 0 and out.splitlines()[1] == str(instances), err
    # Reading the parts themselves takes requests per part; the commit records take none.
    assert s3_requests.count(f"/{layout.COMMITS}") == 0
    assert s3_requests.count(f"/{layout.MANIFESTS}/") <= 3
    assert s3_requests.count("/instances/") >= SHARDS  # the log does see every request

    # The same job as an older maskray left it (records in `_commits/` only): one read per shard.
    older = f"s3://{s3_bucket}/older"
    write_output(older, frames, shard_size=1)
    s3_requests.requests.clear()
    assert output_status(older).frames_done == frames_done
    assert s3_requests.count(f"/{layout.COMMITS}/") >= SHARDS
    print(f"status requests at {SHARDS} shards: {len(status_requests)} with a manifest,"
          f" {len(s3_requests.requests)} without")


def test_a_running_job_reads_the_manifest_and_only_the_records_not_folded(tmp_path):
    output = str(tmp_path / "out")
    frames = _frames(23)
    driver = run_as_driver(output, frames, shard_size=1, every=10, finish=False)
    # 23 commits, manifests after 10 and 20: three records are still files.
    assert sorted(os.listdir(tmp_path / "out" / layout.COMMITS)) == ["s0020.json", "s0021.json", "s0022.json"]
    pointer = commit_log.read_pointer(output)
    assert pointer["generation"] == 2 and not pointer["complete"] and pointer["shards"] == 20
    seen = open_output(output)
    assert seen.committed_shards() == [f"s{i:04d}" for i in range(23)]
    assert seen.frames().count_rows() == 23
    assert output_status(output).state == "running"

    driver.committed()
    driver.on_write_complete({})
    driver.release()
    assert os.listdir(tmp_path / "out" / layout.COMMITS) == []
    assert commit_log.read_pointer(output)["complete"]
    # Only the last two manifests stay (a reader that read the older pointer still finds its one).
    assert sorted(os.listdir(tmp_path / "out" / layout.MANIFESTS)) == ["0000000002.parquet", "0000000003.parquet"]


def test_withdrawn_commits_never_come_back_through_a_manifest(tmp_path):
    output = str(tmp_path / "out")
    driver = run_as_driver(output, _frames(12), shard_size=1, every=5, finish=False)
    committed = driver.committed()
    gone = committed["s0001"]  # folded into the first manifest
    assert not (tmp_path / "out" / layout.commit_uri("", "s0001").lstrip("/")).exists()
    driver.withdraw(gone)
    # Until the next manifest, readers still see it whole (its parts wait for the switch)...
    assert all((tmp_path / "out" / p).exists() for p in gone.paths().values())
    # ...but the driver (a resume, or its reconcile) never gets it back.
    assert "s0001" not in driver.committed()
    driver.on_write_complete({})
    driver.release()
    assert "s0001" not in open_output(output).committed_shards()
    assert open_output(output).frames().count_rows() == 11
    assert not any((tmp_path / "out" / p).exists() for p in gone.paths().values())
    assert output_status(output).frames_done == 11


def test_a_resume_reopens_a_finished_log_so_new_commits_are_seen(tmp_path):
    output = str(tmp_path / "out")
    run_as_driver(output, _frames(6), shard_size=1)
    assert commit_log.read_pointer(output)["complete"]
    again = sink.OutputSink(output)
    again.on_write_start(lambda previous: previous, overwrite=False, sources=[], lease_ttl_s=60)
    assert not commit_log.read_pointer(output)["complete"]
    assert sorted(again.committed()) == [f"s{i:04d}" for i in range(6)]
    from results_helpers import empty_prediction, write_shard

    write_shard(output, "s9999", [(FrameRef("/data/new.png", 0, None, 8, 8), empty_prediction(8, 8))])
    assert "s9999" in open_output(output).committed_shards()
    again.release()


def test_a_crash_around_the_switch_keeps_one_consistent_view(tmp_path, monkeypatch):
    output = str(tmp_path / "out")
    frames = _frames(8)
    driver = run_as_driver(output, frames, shard_size=1, every=1000, finish=False)
    expected = open_output(output).sql("SELECT source, instance FROM instances ORDER BY 1, 2").to_pylist()

    # 1. The manifest is written but the driver dies before the pointer: nothing changed for readers.
    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(commit_log, "write_pointer", die)
    with pytest.raises(KeyboardInterrupt):
        driver.log.publish(complete=False)
    monkeypatch.undo()
    assert commit_log.read_pointer(output) is None and len(os.listdir(tmp_path / "out" / layout.COMMITS)) == 8
    assert open_output(output).sql("SELECT source, instance FROM instances ORDER BY 1, 2").to_pylist() == expected

    # 2. The pointer is switched but the folded records are not deleted yet: each shard once.
    resumed = sink.OutputSink(output, "test-job")
    resumed.committed()
    monkeypatch.setattr(resumed.log, "_after_switch", lambda *args: None)
    resumed.log.publish(complete=False)
    assert commit_log.read_pointer(output)["shards"] == 8 and len(os.listdir(tmp_path / "out" / layout.COMMITS)) == 8
    assert open_output(output).sql("SELECT source, instance FROM instances ORDER BY 1, 2").to_pylist() == expected
    assert output_status(output).frames_done == 8


def test_overwrite_clears_manifests_and_the_parts_they_name(tmp_path):
    output = tmp_path / "out"
    run_as_driver(str(output), _frames(6), shard_size=2, every=1)
    mine = output / "instances" / "notes.txt"
    mine.write_text("the user's own file")
    named = [output / p for r in sink.read_commits(str(output)).values() for p in r.paths().values()]
    sink.clear_output(str(output))
    assert named and not any(path.exists() for path in named)
    assert not (output / layout.MANIFEST_POINTER).exists() and not list((output / layout.MANIFESTS).iterdir())
    assert mine.read_text() == "the user's own file"


def test_status_of_many_shards_sums_the_manifest(tmp_path):
    """10^4 records in one manifest: status reads them as columns and checks the parts from one
    listing (well under the 2 s target)."""
    import time

    from maskray.pipeline.output.layout import CommitRecord

    output = str(tmp_path / "out")
    count = 10_000
    records = [CommitRecord(shard=f"s{i:06d}", job_id="j", attempt=1, frames=10, errors=i % 2, instances=3,
                            files={"frames": {"path": f"frames/s{i:06d}.a1.parquet", "bytes": 900}})
               for i in range(count)]
    sink.write_job(output, {"job_id": "j", "shards": count, "frames": 10 * count})
    (Path(output) / "frames").mkdir()
    for record in records:  # status lists the parts (one listing) to check each is there, whole
        (Path(output) / record.files["frames"]["path"]).write_bytes(b"x" * 900)
    commit_log.publish(output, "j", 1, commit_log.records_to_table(records), complete=True)
    sink.write_success(output, {"job_id": "j"})
    started = time.perf_counter()
    status = output_status(output)
    elapsed = time.perf_counter() - started
    assert (status.shards_done, status.frames_done, status.errors, status.instances) == (count, 10 * count, count // 2, 3 * count)
    assert elapsed < 2.0, elapsed
    assert Counter(Path(p).parent.name for p in open_output(output).part_paths("frames")) == {"frames": count}
