"""A damaged `_job.json` is named, never taken for another job, never replaced unasked
(issue 23); no Ray is started (the refusal comes before it)."""

from __future__ import annotations

import shutil

from submit_helpers import SMALL_FLAGS, run_cli


def test_a_damaged_job_file_is_one_line_saying_so_and_is_kept(tmp_path, data_dir):
    source = tmp_path / "photos"
    source.mkdir()
    shutil.copy(data_dir / "images" / "coins.png", source / "coins.png")
    output = tmp_path / "out"
    output.mkdir()
    damaged = b'{"job_id": "1a2b3c4d5e6f", "fingerprint": "9f8e'  # cut short by a full disk or an editor
    (output / "_job.json").write_bytes(damaged)
    run = run_cli("submit", source, "--output", output, *SMALL_FLAGS, timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert f"{output}/_job.json is unreadable" in lines[0] and "different job" not in lines[0]
    assert "--overwrite" in lines[0] and "restore it" in lines[0]
    assert (output / "_job.json").read_bytes() == damaged
