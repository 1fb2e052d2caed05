"""What is in OUT is verified (issue 23): a lost or damaged part is found and redone.

Fast lane: outputs written as the driver writes them (results_helpers.run_as_driver: the real
sink, shard writers, manifests; no Ray), then damaged as a user's tools would (rm, a truncated
copy, flipped bytes); `status`, `verify`, `query`, `export` run through the real CLI.
Ray lane: a finished OUT made once by a real `maskray submit`, damaged in a copy, repaired by
the same `submit` run again, compared with the clean run row by row.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from maskray.errors import UsageError
from maskray.pipeline.output import compaction, layout, sink
from maskray.pipeline.output.commit_log import read_committed
from maskray.pipeline.output.layout import CommitRecord
from maskray.pipeline.output.reader import open_output
from maskray.pipeline.output.schema import FrameRef
from maskray.pipeline.output.status import output_status
from results_helpers import prediction, rectangle, run_as_driver, run_maskray, write_output

ROWS_SQL = "SELECT source, frame, instance, category_id, mask_rle FROM instances ORDER BY 1, 2, 3"


def _frames(count: int = 12) -> list:
    frames = []
    for i in range(count):
        masks = [rectangle(32, 48, 1 + k, 1 + i % 5, 12 + 9 * k, 25) for k in range(1 + i % 3)]
        frames.append((FrameRef(f"/data/{i:03d}.png", 0, None, 48, 32),
                       prediction(masks, [1 + k for k in range(len(masks))], [0.9 - 0.2 * k for k in range(len(masks))])))
    return frames


def _part(output: str, shard: str, table: str) -> str:
    return layout.relative_uri(output, read_committed(output).records[shard].files[table]["path"])


def _one_line_naming(code: int, err: str, name: str) -> None:
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and name in lines[0] and "maskray verify" in lines[0], err
    assert "Traceback" not in err


@pytest.fixture
def finished(tmp_path) -> str:
    output = str(tmp_path / "out")
    run_as_driver(output, _frames(), shard_size=2, every=4)  # 6 shards, 12 parts
    return output


def test_a_clean_output_verifies_and_its_records_carry_size_rows_and_checksum(finished, capsys):
    code, out, err = run_maskray(["verify", finished], capsys)
    assert code == 0 and "6 committed shards, 12 parts" in out and "no problems" in out, (out, err)
    part = read_committed(finished).records["s0002"].files["instances"]
    data = Path(layout.relative_uri(finished, part["path"])).read_bytes()
    import hashlib

    assert part["bytes"] == len(data) and part["sha256"] == hashlib.sha256(data).hexdigest() and part["rows"] == 5
    assert output_status(finished).state == "done"


def test_a_deleted_part_is_named_by_status_verify_query_and_export(finished, tmp_path, capsys):
    victim = _part(finished, "s0003", "instances")
    Path(victim).unlink()
    status = output_status(finished)
    assert status.state == "damaged" and status.shards_done == 5 and status.parts_damaged == 1
    assert Path(victim).name in status.message and "maskray verify" in status.message
    code, out, _ = run_maskray(["status", finished], capsys)
    assert code == 0 and "damaged" in out and "done" not in out.split("state", 1)[1].splitlines()[0]

    code, out, err = run_maskray(["verify", finished], capsys)
    problems = [line for line in out.splitlines() if line.startswith(finished)]
    assert code == 1 and problems == [f"{victim}: missing [shard s0003]"], (out, err)
    assert "1 problem" in out.splitlines()[-1]

    code, _, err = run_maskray(["query", finished, "SELECT count(*) FROM instances"], capsys)
    _one_line_naming(code, err, Path(victim).name)
    # A query that reads no instance part opens none (no request per part): its answer is whole.
    code, out, err = run_maskray(["query", finished, "SELECT count(*) AS n FROM frames", "--format", "csv"], capsys)
    assert code == 0 and out.splitlines()[-1] == "12", (out, err)
    code, _, err = run_maskray(["export", finished, "--coco", str(tmp_path / "r.json")], capsys)
    _one_line_naming(code, err, Path(victim).name)


def test_a_truncated_part_is_one_line_and_exit_1_not_the_usage_code(finished, tmp_path, capsys):
    victim = Path(_part(finished, "s0001", "frames"))
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # a copy cut short
    assert output_status(finished).state == "damaged"
    code, out, _ = run_maskray(["verify", finished], capsys)
    assert code == 1 and f"{victim}: wrong size" in out
    code, _, err = run_maskray(["query", finished, "SELECT count(*) FROM frames"], capsys)
    _one_line_naming(code, err, victim.name)
    code, _, err = run_maskray(["export", finished, "--coco", str(tmp_path / "r.json")], capsys)
    _one_line_naming(code, err, victim.name)
    # A mistaken query is still the user's: exit 2, not a damage report.
    code, _, err = run_maskray(["query", finished, "SELECT nope FROM frames"], capsys)
    assert code == 2 and "query failed" in err


def test_flipped_bytes_of_the_same_size_are_found_by_the_checksum(finished, capsys):
    victim = Path(_part(finished, "s0004", "instances"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert output_status(finished).state == "done"  # the cheap half cannot see it: same size
    code, out, _ = run_maskray(["verify", finished], capsys)
    assert code == 1 and f"{victim}: checksum mismatch" in out and "[shard s0004]" in out


def test_records_of_an_older_maskray_are_checked_for_what_they_have(tmp_path, capsys):
    output = str(tmp_path / "older")
    write_output(output, _frames(6), shard_size=2)  # records in `_commits/` only
    for uri in Path(output, layout.COMMITS).glob("*.json"):  # as written before checksums
        raw = json.loads(uri.read_text())
        for part in raw["files"].values():
            del part["rows"], part["sha256"]
        uri.write_text(json.dumps(raw))
    code, out, err = run_maskray(["verify", output], capsys)
    assert code == 0 and "no problems" in out and "no checksum" in err, (out, err)
    victim = Path(_part(output, "s0001", "instances"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    code, out, _ = run_maskray(["verify", output], capsys)
    assert code == 1 and f"{victim}:" in out  # found by reading the pages or the row count


def test_a_job_file_of_another_model_and_a_damaged_manifest_are_problems(finished, capsys):
    job = sink.read_job(finished)
    sink.write_job(finished, dict(job, model="another-model"))
    pointer = json.loads(Path(layout.manifest_pointer_uri(finished)).read_text())
    manifest = Path(layout.relative_uri(finished, pointer["manifest"]))
    manifest.write_bytes(manifest.read_bytes()[:100])
    code, out, _ = run_maskray(["verify", finished], capsys)
    assert code == 1 and f"damaged maskray file {manifest}" in out


def test_compacted_parts_verify_and_a_lost_merged_file_is_repaired_by_withdrawing_its_shards(finished, capsys):
    compaction.compact(finished, target_bytes=11 * 2**10)
    code, out, err = run_maskray(["verify", finished], capsys)
    assert code == 0 and "no problems" in out, (out, err)
    records = read_committed(finished).records
    merged = records["s0000"].files["instances"]["path"]
    assert layout.is_compacted_part(merged) and records["s0000"].files["instances"]["shards"] > 1
    Path(layout.relative_uri(finished, merged)).unlink()
    code, out, _ = run_maskray(["verify", finished], capsys)
    assert code == 1 and f"{layout.relative_uri(finished, merged)}: missing [shard s0000" in out

    # What a resumed driver does first: withdraw every shard of the lost file (and of merged
    # files it shares with them), so readers see whole shards only and the rest is redone.
    driver = sink.OutputSink(finished)
    driver.on_write_start(lambda previous: previous, overwrite=False, sources=[], lease_ttl_s=60)
    kept = driver.committed(repair=True)
    lost = {shard for shard, record in records.items() if record.files["instances"]["path"] == merged}
    assert lost <= driver.redone and not driver.redone & set(kept) and kept
    driver.on_write_complete({})
    driver.release()
    assert output_status(finished).state == "done" and output_status(finished).shards_done == len(kept)
    frames = open_output(finished).sql("SELECT shard, count(*) AS n FROM frames GROUP BY 1").to_pylist()
    assert {row["shard"]: row["n"] for row in frames} == {shard: 2 for shard in kept}


def test_verify_works_on_s3(s3_bucket, s3_client, capsys):
    output = f"s3://{s3_bucket}/out"
    run_as_driver(output, _frames(8), shard_size=2)
    code, out, err = run_maskray(["verify", output], capsys)
    assert code == 0 and "4 committed shards, 8 parts" in out, (out, err)
    victim = read_committed(output).records["s0001"].files["frames"]["path"]
    s3_client.delete_object(Bucket=s3_bucket, Key=f"out/{victim}")
    assert output_status(output).state == "damaged"
    code, out, _ = run_maskray(["verify", output], capsys)
    assert code == 1 and f"{output}/{victim}: missing [shard s0001]" in out
    code, _, err = run_maskray(["query", output, "SELECT count(*) FROM frames"], capsys)
    _one_line_naming(code, err, victim)


def test_a_damaged_job_file_is_named_not_called_a_different_job(finished, capsys):
    job_file = Path(layout.job_uri(finished))
    job_file.write_bytes(job_file.read_bytes()[:30])
    code, out, _ = run_maskray(["verify", finished], capsys)
    assert code == 1 and f"damaged maskray file {job_file}" in out
    driver = sink.OutputSink(finished)
    with pytest.raises(UsageError, match=r"_job\.json is unreadable .*--overwrite") as refused:
        driver.on_write_start(lambda previous: previous, overwrite=False, sources=[], lease_ttl_s=60)
    assert "different job" not in str(refused.value)
    assert not list(Path(finished, layout.LEASES).glob("*.json"))  # the lease was given back


def test_verify_of_no_output_is_a_usage_error(tmp_path, capsys):
    code, _, err = run_maskray(["verify", str(tmp_path / "nothing")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no output" in err


# ---- Ray lane: a real job, damaged, then repaired by the same submit ----------------------------


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, data_dir):
    """A finished OUT of bikes.mp4 (4 video shards, tracked, their parts kept as committed: the
    test damages one shard's part) and the command that made it."""
    from submit_helpers import SMALL_FLAGS, run_on_shared_ray

    output = tmp_path_factory.mktemp("verify") / "clean"
    command = ["submit", data_dir / "videos" / "bikes.mp4", "--output", output, "--every", "50",
               "--segment-seconds", "2", "--batch-size", "1", "--no-compact", *SMALL_FLAGS]
    done = run_on_shared_ray(*command)
    assert done.returncode == 0, done.stderr
    return output, command


def _rows(output) -> tuple:
    out = open_output(str(output))
    instances = out.sql("SELECT source, frame, instance, category_id, round(score, 4) AS score, mask_rle"
                        " FROM instances ORDER BY 1, 2, 3").to_pylist()
    frames = out.sql("SELECT source, frame, num_instances, status FROM frames ORDER BY 1, 2").to_pylist()
    return instances, frames


@pytest.mark.ray
def test_a_resumed_submit_redoes_the_shards_of_a_deleted_and_a_truncated_part(clean_run, tmp_path, capsys):
    from submit_helpers import run_on_shared_ray

    clean, command = clean_run
    output = tmp_path / "out"
    shutil.copytree(clean, output)
    records = read_committed(str(output)).records
    first, second = sorted(records)[1:3]
    deleted = Path(layout.relative_uri(str(output), records[first].files["instances"]["path"]))
    truncated = Path(layout.relative_uri(str(output), records[second].files["frames"]["path"]))
    deleted.unlink()  # a lifecycle rule, a mistaken rm
    truncated.write_bytes(truncated.read_bytes()[:-40])  # a copy cut short

    status = output_status(str(output))
    assert status.state == "damaged" and status.shards_done == status.shards_total - 2 and status.parts_damaged == 2
    code, out, _ = run_maskray(["verify", output], capsys)
    assert code == 1 and f"{deleted}: missing" in out and f"{truncated}: wrong size" in out
    code, _, err = run_maskray(["query", output, "SELECT count(*) FROM instances"], capsys)
    _one_line_naming(code, err, deleted.name)  # the file the read met
    code, _, err = run_maskray(["query", output, "SELECT count(*) FROM frames"], capsys)
    _one_line_naming(code, err, "2 of 8 committed parts are missing or damaged")
    code, _, err = run_maskray(["export", output, "--coco", str(tmp_path / "r.json")], capsys)
    _one_line_naming(code, err, str(output))  # the first file its reads met

    again = run_on_shared_ray(*[output if part == clean else part for part in command])
    assert again.returncode == 0, again.stderr
    assert "redoing 2 shards whose parts are missing or damaged" in again.stderr
    code, out, err = run_maskray(["verify", output], capsys)
    assert code == 0 and "no problems" in out, (out, err)
    assert output_status(str(output)).state == "done"
    assert _rows(output) == _rows(clean)  # rows equal to the clean run's, none twice
    assert not deleted.exists() and not truncated.exists()  # went with their withdrawn commits
