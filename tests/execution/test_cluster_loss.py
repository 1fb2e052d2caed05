"""A driver that survives its cluster: with the embedded Ray's raylet killed mid-job, or the
cluster it joined gone,
`maskray submit` exits 1 with one line within about a minute, instead of waiting forever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ray_head import QUICK_NODE_DEATH
from submit_helpers import REPO, SMALL_FLAGS, commits

pytestmark = pytest.mark.ray  # a real Ray cluster that is lost

# Ray's own settings, so the losses are seen in seconds rather than Ray's defaults (a dead
# raylet: ray_head.QUICK_NODE_DEATH; the driver gives up on the GCS after half of Ray's 60 s
# reconnect limit): what is tested is what maskray does once they are seen.
QUICK_RECONNECT_LIMIT = {"RAY_gcs_rpc_server_reconnect_timeout_s": "16"}  # lost after 8 s


def _start_submit(command: list, env: dict, stderr_path) -> subprocess.Popen:
    """`maskray submit` in its own session, returned once its job has started (shards to do)."""
    with open(stderr_path, "wb") as stderr:
        submit = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while "shards to do" not in stderr_path.read_text(errors="replace"):
            assert submit.poll() is None, stderr_path.read_text()
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.5)
    except BaseException:
        _kill_session(submit.pid)
        raise
    return submit


def _kill_session(session: int) -> None:
    """Every process of the submit's session: the driver and its embedded Ray (ours only)."""
    for pid in _session_pids(session):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_killed_raylet_ends_submit_with_one_line_and_exit_1(data_dir, tmp_path):
    output = tmp_path / "out"
    command = [sys.executable, "-c", "from maskray.cli import main; main()", "submit",
               str(data_dir / "videos" / "bikes.mp4"), "--output", str(output), "--segment-seconds", "60",
               "--batch-size", "1", *SMALL_FLAGS]
    stderr_path = tmp_path / "stderr.txt"
    submit = _start_submit(command, dict(os.environ, **QUICK_NODE_DEATH), stderr_path)
    try:
        assert not commits(str(output))  # one long shard: still running
        raylets = [pid for pid in _session_pids(submit.pid) if _is_raylet(pid)]
        assert len(raylets) == 1
        os.kill(raylets[0], signal.SIGKILL)
        killed_at = time.monotonic()
        code = submit.wait(timeout=180)
        waited = time.monotonic() - killed_at
    finally:
        _kill_session(submit.pid)  # the embedded Ray's leftovers
    lines = [line for line in stderr_path.read_text(errors="replace").splitlines() if line.startswith("maskray: error")]
    assert code == 1, stderr_path.read_text()[-2000:]
    assert waited < 60  # a dead raylet declared after 3 failed health checks 1 s apart
    assert len(lines) == 1 and "lost the Ray cluster" in lines[0]
    assert "Traceback" not in stderr_path.read_text(errors="replace")


def _session_pids(session: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getsid(int(name)) == session:
                    found.append(int(name))
            except (ProcessLookupError, PermissionError):
                continue
    return found


def _is_raylet(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            return stream.read().split(b"\0")[0].endswith(b"/raylet")
    except OSError:
        return False


def test_joined_cluster_going_away_ends_submit_with_one_line_and_exit_1(data_dir, tmp_path):
    """`--address <head>` joins a cluster; killing that whole cluster mid-job ends the driver."""
    from ray_head import kill_node, ray_env, start_head, stop_head

    head = start_head(num_cpus=2, auth_mode="token", timeout=400)
    output = tmp_path / "out"
    stderr_path = tmp_path / "stderr.txt"
    try:
        command = [sys.executable, "-c", "from maskray.cli import main; main()", "submit",
                   str(data_dir / "videos" / "bikes.mp4"), "--output", str(output), "--address", head.gcs_address,
                   "--segment-seconds", "60", "--batch-size", "1", *SMALL_FLAGS]
        submit = _start_submit(command, {**ray_env("token"), **QUICK_RECONNECT_LIMIT}, stderr_path)
        try:
            kill_node(head)  # the whole cluster: GCS, raylet, the workers
            killed_at = time.monotonic()
            code = submit.wait(timeout=180)
            waited = time.monotonic() - killed_at
        finally:
            if submit.poll() is None:
                os.killpg(submit.pid, signal.SIGKILL)
                submit.wait()
    finally:
        stop_head(head)
    text = stderr_path.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("maskray: error")]
    assert code == 1, text[-2000:]
    assert waited < 60  # 8 s without an answer, checked every 3 s, on 2 busy cores
    assert len(lines) == 1 and "lost the Ray cluster" in lines[0] and "no answer from it" in lines[0], text[-2000:]
    assert "Traceback" not in text
