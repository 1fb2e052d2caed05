"""Every error while writing OUT is one line that names the file and what to do (issue 23).

A real full disk: a small tmpfs mounted as OUT (as root; skipped with the reason where
mounting is not permitted), filled by the job itself. Read-only: the same tmpfs remounted
`ro`. Object stores: moto's S3 server refusing a write to a bucket that is not there.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess

import pytest

from maskray.pipeline import storage
from maskray.pipeline.storage import WriteError
from submit_helpers import SMALL_FLAGS, frame_keys, read_table, run_cli

BIKES_FRAMES = [0, 50, 100, 150, 200]  # bikes.mp4 --every 50 --segment-seconds 2: 4 shards


@contextlib.contextmanager
def tmpfs(folder, size: str):
    """A tmpfs of `size` at `folder`, unmounted at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _remount(folder, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True, capture_output=True)


def test_a_read_only_output_is_one_line_naming_the_file_and_what_to_do(tmp_path):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        _remount(disk, "ro")
        target = str(disk / "out" / "_job.json")
        with pytest.raises(WriteError) as raised:
            storage.write_bytes_atomic(target, b"{}")
    line = str(raised.value)
    assert "\n" not in line and line.startswith(f"cannot write {target}: read-only file system")
    assert "choose another --output" in line and "run the same command to resume" in line
    assert isinstance(raised.value, OSError)  # code that tolerates a failed write (a cache) still does


def test_each_write_problem_has_its_own_words():
    for code, words in [(errno.ENOSPC, "no space left"), (errno.EDQUOT, "disk quota exceeded"),
                        (errno.EACCES, "permission denied"), (errno.EROFS, "read-only")]:
        line = str(WriteError.of("/o/x.parquet", OSError(code, "raw")))
        assert line.startswith(f"cannot write /o/x.parquet: {words}") and "raw" not in line


def test_an_object_store_refusing_a_write_is_one_line(s3_server):
    target = "s3://no-such-bucket-maskray/out/_job.json"
    with pytest.raises(WriteError) as raised:
        storage.write_bytes_atomic(target, b"{}")
    line = str(raised.value)
    assert "\n" not in line and line.startswith(f"cannot write {target}: ") and "resume" in line


def test_debug_shows_the_traceback_that_is_otherwise_hidden(tmp_path):
    plain = run_cli("status", tmp_path / "nothing-here")
    debug = run_cli("--debug", "status", tmp_path / "nothing-here")
    assert plain.returncode == debug.returncode == 2
    assert plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr and debug.stderr.strip().endswith(plain.stderr.strip())


@pytest.mark.ray
def test_a_disk_that_fills_during_a_job_is_one_line_then_an_exact_resume(data_dir, tmp_path):
    source = data_dir / "videos" / "bikes.mp4"
    with tmpfs(tmp_path / "disk", "64k") as disk:
        output = disk / "out"
        command = ["submit", source, "--output", output, "--every", "50", "--segment-seconds", "2",
                   "--batch-size", "1", *SMALL_FLAGS]
        full = run_cli(*command)
        lines = full.stderr.strip().splitlines()
        # Parts of a first shard fit (the job started and wrote); a later file did not.
        assert full.returncode == 1, full.stderr
        assert "Traceback" not in full.stderr and lines[-1].startswith(f"maskray: error: cannot write {output}/")
        assert "no space left on the device" in lines[-1] and "run the same command to resume" in lines[-1]
        assert sum(line.startswith("maskray: error") for line in lines) == 1

        _remount(disk, "size=32m")  # the user frees space: the same command goes on
        resumed = run_cli(*command)
        assert resumed.returncode == 0, resumed.stderr
        keys = frame_keys(read_table(str(output), "frames"))
        assert keys == {(str(source), frame): 1 for frame in BIKES_FRAMES}  # every frame, none twice
        instances = read_table(str(output), "instances")
        found = list(zip(instances.column("source").to_pylist(), instances.column("frame").to_pylist(),
                         instances.column("instance").to_pylist()))
        # score 0 and at most 5 instances: a clean run has 5 on each of the 5 frames.
        assert len(found) == len(set(found)) == 5 * len(BIKES_FRAMES)
