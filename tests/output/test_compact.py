"""`maskray compact OUT` (issue 11): fewer, larger files; every row exactly once; one switch.

Outputs are written as the driver writes them (results_helpers.run_as_driver); compaction runs
through the real CLI; readers are the real `query`, `status`, `export` and the Python API.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from maskray.pipeline import storage
from maskray.pipeline.output import commit_log, compaction, layout, sink
from maskray.pipeline.output.lease import Lease
from maskray.pipeline.output.reader import open_output
from maskray.pipeline.output.schema import FrameRef
from maskray.pipeline.output.status import output_status
from results_helpers import prediction, rectangle, run_as_driver, run_maskray, write_output

ROWS_SQL = ("SELECT source, frame, instance, category_id, score, x1, y1, x2, y2, mask_rle, mask_area, shard"
            " FROM instances ORDER BY source, frame, instance")


def _frames(count: int) -> list:
    frames = []
    for i in range(count):
        masks = [rectangle(32, 48, 1 + k, 1 + i % 7, 10 + 9 * k, 25) for k in range(1 + i % 3)]
        frames.append((FrameRef(f"/data/{i:03d}.png", 0, None, 48, 32),
                       prediction(masks, [1 + k for k in range(len(masks))], [0.95 - 0.2 * k for k in range(len(masks))])))
    return frames


def _snapshot(output: str) -> dict:
    """What a user checks: every instance row, the frames, and the status counts."""
    out = open_output(output)
    status = output_status(output)
    return {
        "instances": out.sql(ROWS_SQL).to_pylist(),
        "frames": out.sql("SELECT source, frame, num_instances, status FROM frames ORDER BY 1, 2").to_pylist(),
        "status": (status.state, status.shards_done, status.frames_done, status.instances, status.errors),
    }


def _part_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for table in layout.TABLE_NAMES for p in (root / table).glob("*.parquet"))


def test_compact_merges_parts_and_keeps_every_row_once(tmp_path, capsys):
    output = tmp_path / "out"
    run_as_driver(str(output), _frames(30), shard_size=2, every=4)
    before = _snapshot(str(output))
    old_parts = _part_files(output)
    assert len(old_parts) == 30 and len(before["instances"]) == 60

    code, out, err = run_maskray(["compact", str(output)], capsys)
    assert code == 0 and "15 shards: 30 files -> 2" in out, (out, err)
    assert _snapshot(str(output)) == before
    assert [Path(p).name.startswith("compacted-") for p in _part_files(output)] == [True, True]
    # The old parts are gone (deleted after the switch); nothing else was touched.
    assert not any((output / p).exists() for p in old_parts)

    coco = tmp_path / "results.json"
    code, _, err = run_maskray(["export", str(output), "--coco", str(coco)], capsys)
    assert code == 0 and len(json.loads(coco.read_text())) == 60, err

    code, out, _ = run_maskray(["compact", str(output)], capsys)  # again: nothing left to merge
    assert code == 0 and "nothing to compact" in out


def test_compact_on_s3_bounds_file_sizes(s3_bucket, capsys):
    output = f"s3://{s3_bucket}/out"
    run_as_driver(output, _frames(24), shard_size=1)
    before = _snapshot(output)
    sizes = [r.files["instances"]["bytes"] for r in sink.read_commits(output).values()]
    target = 6 * max(sizes)  # about six parts a merged file
    done = compaction.compact(output, target_bytes=target)
    assert done.parts_before == 48 and 2 <= done.merged_files < 24
    assert _snapshot(output) == before
    merged = {r.files["instances"]["path"] for r in sink.read_commits(output).values()}
    assert all(layout.is_compacted_part(p) for p in merged) and len(merged) >= 4
    for path in merged:
        assert storage.list_files(layout.relative_uri(output, path))[0][1] <= target


def test_compact_is_refused_while_a_job_runs_or_before_it_finished(tmp_path, capsys):
    output = tmp_path / "out"
    driver = run_as_driver(str(output), _frames(4), shard_size=1, finish=False)
    code, _, err = run_maskray(["compact", str(output)], capsys)  # the driver still holds the lease
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "being written" in lines[0] and "Traceback" not in err

    driver.release()  # the driver stopped without finishing
    code, _, err = run_maskray(["compact", str(output)], capsys)
    assert code == 2 and "has not finished" in err and len(err.strip().splitlines()) == 1
    assert len(_part_files(output)) == 8  # nothing merged, nothing deleted

    code, _, err = run_maskray(["compact", str(tmp_path / "nothing-here")], capsys)
    assert code == 2 and "no maskray job" in err


def test_while_compact_holds_the_output_others_are_told_it_is_compact(tmp_path, capsys):
    output = tmp_path / "out"
    run_as_driver(str(output), _frames(2), shard_size=1)
    running = Lease(str(output), 60.0, command="compact").acquire()  # a compaction in progress
    try:
        code, _, err = run_maskray(["compact", str(output)], capsys)
    finally:
        running.release()
    assert code == 2 and f"being written by another maskray compact: compact {running.owner}" in err


def test_a_crash_before_the_switch_leaves_the_old_view_and_a_rerun_finishes(tmp_path, monkeypatch, capsys):
    output = tmp_path / "out"
    run_as_driver(str(output), _frames(12), shard_size=1)
    before = _snapshot(str(output))
    old_parts = _part_files(output)

    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(commit_log, "publish", die)  # the merged files are written, then the process dies
    with pytest.raises(KeyboardInterrupt):
        compaction.compact(str(output))
    monkeypatch.undo()
    assert any(layout.is_compacted_part(p) for p in _part_files(output))  # written, but named by nothing
    assert _snapshot(str(output)) == before
    assert all((output / p).exists() for p in old_parts)
    Lease(str(output), 60).acquire().release()  # the crashed run gave the lease back

    code, out, _ = run_maskray(["compact", str(output)], capsys)
    assert code == 0 and "files -> 2" in out
    assert _snapshot(str(output)) == before
    assert not any((output / p).exists() for p in old_parts)


def test_a_crash_after_the_switch_is_cleaned_up_by_the_next_run(tmp_path, monkeypatch, capsys):
    output = tmp_path / "out"
    run_as_driver(str(output), _frames(10), shard_size=1)
    before = _snapshot(str(output))
    old_parts = _part_files(output)
    calls = []

    def die_on_second(*args):
        calls.append(args)
        if len(calls) == 2:  # the clean-up after the switch
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(compaction, "finish_cleanup", die_on_second)
    with pytest.raises(KeyboardInterrupt):
        compaction.compact(str(output))
    monkeypatch.undo()
    assert _snapshot(str(output)) == before  # the new view, whole; the old parts still lie there
    assert all((output / p).exists() for p in old_parts)

    code, out, _ = run_maskray(["compact", str(output)], capsys)
    assert code == 0 and "nothing to compact" in out
    assert not any((output / p).exists() for p in old_parts)
    assert _snapshot(str(output)) == before


def test_readers_during_compaction_see_the_old_parts_or_the_new_never_a_mix(tmp_path):
    output = str(tmp_path / "out")
    run_as_driver(output, _frames(40), shard_size=1)
    expected = _snapshot(output)
    opened_before = open_output(output)
    opened_before.committed_shards()  # its snapshot is the old manifest

    seen, failures, stop = [], [], threading.Event()

    def read_repeatedly():
        while not stop.is_set():
            try:
                row = open_output(output).sql("SELECT count(*) AS n, sum(mask_area) AS a FROM instances").to_pylist()[0]
                seen.append((row["n"], int(row["a"])))
            except Exception as error:  # a reader must never fail either
                failures.append(repr(error))

    reader = threading.Thread(target=read_repeatedly)
    reader.start()
    try:
        compaction.compact(output, target_bytes=10 * 2**20)
    finally:
        stop.set()
        reader.join()
    total = (len(expected["instances"]), sum(r["mask_area"] for r in expected["instances"]))
    assert failures == [] and seen and set(seen) == {total}
    # An Output opened before the switch reads again from the new manifest (its old parts are gone).
    assert opened_before.sql(ROWS_SQL).to_pylist() == expected["instances"]


def test_a_shard_withdrawn_after_compaction_leaves_the_merged_file(tmp_path):
    output = tmp_path / "out"
    run_as_driver(str(output), _frames(6), shard_size=1)
    compaction.compact(str(output))
    before = _snapshot(str(output))["instances"]
    # A resume whose sources changed withdraws a shard that now lives in a merged file.
    resumed = sink.OutputSink(str(output))
    resumed.on_write_start(lambda previous: previous, overwrite=False, sources=[], lease_ttl_s=60)
    records = resumed.committed()
    resumed.withdraw(records["s0002"])
    resumed.on_write_complete({})
    resumed.release()
    after = open_output(str(output)).sql(ROWS_SQL).to_pylist()
    assert after == [row for row in before if row["shard"] != "s0002"] and len(after) < len(before)
    assert output_status(str(output)).frames_done == 5
    merged = {p for r in sink.read_commits(str(output)).values() for p in r.paths().values()}
    assert all((output / p).exists() for p in merged)
    # A second compaction rewrites the merged files without the withdrawn rows.
    assert compaction.compact(str(output)).merged_files == 2
    assert open_output(str(output)).sql(ROWS_SQL).to_pylist() == after
    (merged,) = {r.files["instances"]["path"] for r in sink.read_commits(str(output)).values()}
    assert pq.read_table(output / merged).num_rows == len(after)


def test_an_output_written_before_manifests_existed_is_compacted_too(tmp_path, capsys):
    output = tmp_path / "out"
    write_output(str(output), _frames(8), shard_size=2)  # records in `_commits/` only
    before = _snapshot(str(output))
    code, out, _ = run_maskray(["compact", str(output)], capsys)
    assert code == 0 and "8 files -> 2" in out
    assert _snapshot(str(output)) == before
    assert os.listdir(output / layout.COMMITS) == []


def _finished_by_a_driver_still_holding_the_lease(output: str):
    """The moment a job ends: every shard committed, `_SUCCESS` written, the lease still held."""
    driver = run_as_driver(output, _frames(12), shard_size=2, finish=False)
    driver.committed()
    driver.on_write_complete({"shards": 6})
    return driver


def test_the_end_of_a_job_compacts_under_the_drivers_own_lease(tmp_path, capsys):
    from maskray.pipeline.execution.end_compaction import compact_finished_job

    output = tmp_path / "out"
    driver = _finished_by_a_driver_still_holding_the_lease(str(output))
    before = _snapshot(str(output))
    # While the driver holds OUT, nobody else compacts it (or submits to it).
    code, _, err = run_maskray(["compact", str(output)], capsys)
    assert code == 2 and "being written by another maskray submit" in err
    lines = []
    compact_finished_job(str(output), driver.lease, lines.append)
    assert len(lines) == 1 and lines[0].startswith("compacted 6 shards: 12 files -> 2 in "), lines
    assert _snapshot(str(output)) == before
    assert all(layout.is_compacted_part(p) for p in _part_files(output))
    assert driver.lease.held()  # still the driver's, which gives it back when the job ends
    driver.release()


def test_a_failed_compaction_at_the_end_of_a_job_is_one_line_and_the_job_stays_whole(tmp_path, monkeypatch, capsys):
    from maskray.pipeline.execution.end_compaction import compact_finished_job

    output = tmp_path / "out"
    driver = _finished_by_a_driver_still_holding_the_lease(str(output))
    before, old_parts = _snapshot(str(output)), _part_files(output)

    def full_disk(uri, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(compaction.storage, "write_bytes_atomic", full_disk)
    lines = []
    compact_finished_job(str(output), driver.lease, lines.append)  # no exception: the job is done
    monkeypatch.undo()
    assert len(lines) == 1 and "parts left as committed" in lines[0] and "No space left" in lines[0]
    assert f"maskray compact {output}" in lines[0]
    assert _snapshot(str(output)) == before and _part_files(output) == old_parts
    driver.release()
    code, out, _ = run_maskray(["compact", str(output)], capsys)  # what the line says to run
    assert code == 0 and "12 files -> 2" in out
    assert _snapshot(str(output)) == before
