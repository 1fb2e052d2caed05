"""Ctrl-C says how to go on, and `status` says the user stopped the job (issue 23)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from maskray.pipeline.output.status import format_status, output_status
from submit_helpers import REPO, SMALL_FLAGS, commits, kill_session


def _as_a_terminal_starts_it() -> None:
    """SIGINT at its default, as for a command typed in a terminal: pytest run in the background
    of a script (`... &`) ignores SIGINT, and its children would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.ray
def test_ctrl_c_says_run_the_same_command_and_status_says_stopped_by_the_user(data_dir, tmp_path):
    output = tmp_path / "out"
    # 125 frames in 10 shards: seconds of work left after the first commit, so Ctrl-C comes mid-job
    # (with 5 frames in 4 shards the job could end between the first commit and the signal).
    command = ["submit", data_dir / "videos" / "bikes.mp4", "--output", output, "--every", "2",
               "--segment-seconds", "1", "--batch-size", "1", *SMALL_FLAGS]
    process = subprocess.Popen([sys.executable, "-c", "from maskray.cli import main; main()", *map(str, command)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=_as_a_terminal_starts_it)
    try:
        deadline = time.monotonic() + 240
        while not commits(str(output)) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the job ended before Ctrl-C"
        process.send_signal(signal.SIGINT)  # what the terminal sends the driver
        _, err = process.communicate(timeout=120)
    finally:
        kill_session(process.pid)
    lines = err.strip().splitlines()
    assert process.returncode == 130 and lines[-1] == "maskray: stopped; run the same command to resume", err
    assert "Traceback" not in err
    status = output_status(str(output))
    assert status.state == "stopped" and status.message.startswith("stopped by the user")
    assert "stopped: stopped by the user" in format_status(status)
