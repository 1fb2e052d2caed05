"""A real, private Ray head for tests: `ray start --head --block` on free 127.0.0.1 ports.

Why not `ray stop` at teardown: it stops every Ray process of this user on the machine,
including other test runs' clusters. Instead the head runs in the foreground (`--block`) in
its own process group and temp dir, and teardown:
  1. sends SIGTERM to that `ray start` process, which stops exactly the processes it started
     (GCS, raylet, dashboard, ...); the raylet takes its workers and job drivers with it;
  2. kills the process group, in case the first step did not finish in time;
  3. kills any process left whose command line or environment names this head's temp dir
     (e.g. a job driver that outlived its supervisor), and nothing else.
Every port is chosen free, so several heads (and embedded `ray.init` clusters) can coexist.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from typing import Optional

# The repository's venv: `ray` and `maskray` there resolve to this checkout's code.
VENV_BIN = os.path.dirname(sys.executable)


@dataclass
class RayHead:
    dashboard_url: str
    gcs_address: str
    temp_dir: str
    process: subprocess.Popen
    log_path: str

    def log_tail(self, chars: int = 3000) -> str:
        try:
            with open(self.log_path, errors="replace") as stream:
                return stream.read()[-chars:]
        except OSError:
            return ""


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 right now (held together so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start_head(num_cpus: int = 2, timeout: float = 120.0, auth_mode: str = "disabled") -> RayHead:
    """Start a head and wait until its Jobs API answers; raises with the head's log if not.

    A port picked free can be taken by another process before Ray binds it: then `ray
    start` exits, and one more try with fresh ports follows.
    """
    try:
        return _start_head_once(num_cpus, timeout, auth_mode)
    except _StartExited:
        return _start_head_once(num_cpus, timeout, auth_mode)


class _StartExited(RuntimeError):
    pass


def _start_head_once(num_cpus: int, timeout: float, auth_mode: str) -> RayHead:
    # Short path: Ray puts Unix sockets under it and those paths are limited to ~107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="mrh", dir="/tmp")
    (gcs, dashboard, client, agent_http, agent_grpc, metrics, env_agent, node_manager,
     object_manager) = free_ports(9)
    command = [
        os.path.join(VENV_BIN, "ray"), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1", "--port", str(gcs),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
        "--ray-client-server-port", str(client),
        "--dashboard-agent-listen-port", str(agent_http),
        "--dashboard-agent-grpc-port", str(agent_grpc),
        "--metrics-export-port", str(metrics),
        "--runtime-env-agent-port", str(env_agent),
        "--node-manager-port", str(node_manager),
        "--object-manager-port", str(object_manager),
        "--num-cpus", str(num_cpus), "--num-gpus", "0",
        "--object-store-memory", str(200 * 1024 * 1024),
        "--temp-dir", temp_dir, "--disable-usage-stats",
    ]
    env = dict(os.environ)
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(name, None)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"  # no drain wait when we stop it
    # Ray 2.5x+ turns token auth on for a head when ~/.ray/auth_token exists (any earlier
    # `ray.init` on this machine writes one). Say explicitly what this head does, so the test
    # does not depend on that file.
    env["RAY_AUTH_MODE"] = auth_mode
    # Marks every process of this head (inherited by raylet, workers, job drivers).
    env["MASKRAY_TEST_RAY_HEAD"] = temp_dir
    log_path = os.path.join(temp_dir, "ray-start.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=temp_dir,
            start_new_session=True,
        )
    head = RayHead(
        dashboard_url=f"http://127.0.0.1:{dashboard}", gcs_address=f"127.0.0.1:{gcs}",
        temp_dir=temp_dir, process=process, log_path=log_path,
    )
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            tail = head.log_tail()
            stop_head(head)
            raise _StartExited(f"ray start exited with {process.returncode}:\n{tail}")
        if _jobs_api_ready(head.dashboard_url):
            return head
        if time.monotonic() > deadline:
            tail = head.log_tail()
            stop_head(head)
            raise RuntimeError(f"the Ray head did not answer within {timeout:.0f}s:\n{tail}")
        time.sleep(0.5)


def _jobs_api_ready(url: str) -> bool:
    try:
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with no_proxy.open(url + "/api/version", timeout=2) as response:
            return "ray_version" in json.loads(response.read())
    except (OSError, ValueError):
        return False


def stop_head(head: RayHead, timeout: float = 30.0) -> None:
    """Stop this head's processes only (see the module docstring), then remove its temp dir."""
    process = head.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    _kill_group(process.pid)
    if process.poll() is None:
        process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _processes_of(head.temp_dir, signal.SIGKILL):
        time.sleep(0.3)
    shutil.rmtree(head.temp_dir, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _processes_of(temp_dir: str, sig: Optional[int]) -> list[int]:
    """Pids whose command line or environment names `temp_dir`; signals them when `sig`."""
    needle = temp_dir.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        matched = False
        for name in ("cmdline", "environ"):
            try:
                with open(f"/proc/{entry}/{name}", "rb") as stream:
                    if needle in stream.read():
                        matched = True
                        break
            except OSError:
                continue
        if matched:
            found.append(int(entry))
            if sig is not None:
                try:
                    os.kill(int(entry), sig)
                except (ProcessLookupError, PermissionError):
                    pass
    return found
