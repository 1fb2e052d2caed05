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
    metrics_port: int = 0  # Ray's --metrics-export-port of this node (Prometheus text)
    node_id: str = ""  # a joined node's id (start_node); "" for a head

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


def start_head(num_cpus: int = 2, timeout: float = 120.0, auth_mode: str = "disabled",
               num_gpus: int = 0) -> RayHead:
    """Start a head and wait until its Jobs API answers; raises with the head's log if not.

    A port picked free can be taken by another process before Ray binds it: then `ray
    start` exits, and one more try with fresh ports follows. `num_gpus` are fake GPUs (a
    resource count; workers without CUDA run on the CPU).
    """
    try:
        return _start_head_once(num_cpus, timeout, auth_mode, num_gpus)
    except _StartExited:
        return _start_head_once(num_cpus, timeout, auth_mode, num_gpus)


class _StartExited(RuntimeError):
    pass


def _start_head_once(num_cpus: int, timeout: float, auth_mode: str, num_gpus: int) -> RayHead:
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
        "--num-cpus", str(num_cpus), "--num-gpus", str(num_gpus),
        "--object-store-memory", str(200 * 1024 * 1024),
        "--temp-dir", temp_dir, "--disable-usage-stats",
    ]
    process, log_path = _launch(command, temp_dir, auth_mode)
    head = RayHead(
        dashboard_url=f"http://127.0.0.1:{dashboard}", gcs_address=f"127.0.0.1:{gcs}",
        temp_dir=temp_dir, process=process, log_path=log_path, metrics_port=metrics,
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


def ray_env(auth_mode: str) -> dict:
    """The environment for `ray start` and for a driver joining it: this venv, no inherited
    cluster address, and the auth mode said explicitly. Ray 2.5x+ turns token auth on when
    ~/.ray/auth_token exists (any earlier `ray.init` here writes one), so a test must not
    depend on that file; with "token" the token is RAY_AUTH_TOKEN (see `auth_token`)."""
    env = dict(os.environ)
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(name, None)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env["RAY_AUTH_MODE"] = auth_mode
    if auth_mode == "token":
        env["RAY_AUTH_TOKEN"] = auth_token()
    return env


_TOKEN: list[str] = []


def auth_token() -> str:
    """One random token for this test session's token-authenticated clusters."""
    if not _TOKEN:
        _TOKEN.append(os.urandom(16).hex())
    return _TOKEN[0]


# Ray's own settings for every test cluster (and a test's embedded Ray): a killed node is declared
# dead after 3 failed health checks 1 s apart, not Ray's 5 at 3 s, so the node-loss tests wait
# seconds for the GCS, not ~15 s each. (A check only fails on an error or after its 10 s timeout,
# so a busy raylet is not taken for dead.)
QUICK_NODE_DEATH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}


def _launch(command: list[str], temp_dir: str, auth_mode: str) -> tuple[subprocess.Popen, str]:
    env = ray_env(auth_mode)
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"  # no drain wait when we stop it
    # On a few busy shared cores the raylet's agents can take longer than Ray's default to
    # start, and the raylet then aborts: give them minutes.
    env.setdefault("RAY_agent_register_timeout_ms", "300000")
    for name, value in QUICK_NODE_DEATH.items():
        env.setdefault(name, value)
    # Marks every process of this node (inherited by raylet, workers, job drivers).
    env["MASKRAY_TEST_RAY_HEAD"] = temp_dir
    log_path = os.path.join(temp_dir, "ray-start.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=temp_dir,
            start_new_session=True,
        )
    return process, log_path


def start_node(head: RayHead, num_cpus: int, num_gpus: int = 0, auth_mode: str = "disabled",
               timeout: float = 120.0, tries: int = 3) -> RayHead:
    """A second node joining `head` (`ray start --address=... --block`), in its own process
    group and temp dir; waits until the head counts it. Stop it with `stop_head`, or kill
    its process group (`kill_node`) to lose it the way a preempted machine is lost."""
    deadline = time.monotonic() + timeout
    while _alive_nodes(head) < 1:  # the head's own raylet first: on a busy machine it may still fail
        if head.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the head's raylet did not come up:\n{head.log_tail()}")
        time.sleep(0.3)
    for tries_left in range(tries - 1, -1, -1):
        try:
            return _start_node_once(head, num_cpus, num_gpus, auth_mode, deadline)
        except _StartExited:
            # `ray start` gives a raylet 30 s to register, which a busy machine can miss.
            if not tries_left or head.process.poll() is not None:
                raise


def _start_node_once(head: RayHead, num_cpus: int, num_gpus: int, auth_mode: str, deadline: float) -> RayHead:
    temp_dir = tempfile.mkdtemp(prefix="mrn", dir="/tmp")
    node_manager, object_manager, metrics, agent_http, agent_grpc, env_agent = free_ports(6)
    command = [
        os.path.join(VENV_BIN, "ray"), "start", "--address", head.gcs_address, "--block",
        "--node-ip-address", "127.0.0.1",
        "--node-manager-port", str(node_manager), "--object-manager-port", str(object_manager),
        "--metrics-export-port", str(metrics), "--dashboard-agent-listen-port", str(agent_http),
        "--dashboard-agent-grpc-port", str(agent_grpc), "--runtime-env-agent-port", str(env_agent),
        "--num-cpus", str(num_cpus), "--num-gpus", str(num_gpus),
        "--object-store-memory", str(200 * 1024 * 1024),
        "--temp-dir", temp_dir, "--disable-usage-stats",
    ]
    before = alive_node_ids(head)
    while not before and time.monotonic() < deadline:  # the head's state API answers at least itself
        time.sleep(0.3)
        before = alive_node_ids(head)
    process, log_path = _launch(command, temp_dir, auth_mode)
    node = RayHead(dashboard_url=head.dashboard_url, gcs_address=head.gcs_address, temp_dir=temp_dir,
                   process=process, log_path=log_path, metrics_port=metrics)
    while not node.node_id:  # a node id the head did not list before: this node joined
        node.node_id = next(iter(alive_node_ids(head) - before), "")
        if node.node_id:
            break
        gone = "the head" if head.process.poll() is not None else "it" if process.poll() is not None else None
        if gone or time.monotonic() > deadline:
            tail = (head if gone == "the head" else node).log_tail()
            stop_head(node)
            why = f"{gone} exited" if gone else "it did not join in time"
            error = _StartExited if gone == "it" else RuntimeError
            raise error(f"the second node did not start ({why}):\n{tail}")
        time.sleep(0.3)
    return node


def kill_node(node: RayHead) -> None:
    """Lose `node` abruptly: SIGKILL its process group and every process marked with its temp dir."""
    _kill_group(node.process.pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _processes_of(node.temp_dir, signal.SIGKILL):
        time.sleep(0.3)


def node_pids(node: RayHead) -> set:
    """Pids of the processes `node` started (its raylet, workers, ...)."""
    return set(_processes_of(node.temp_dir, None))


def alive_node_ids(head: RayHead) -> set:
    """Ids of the cluster's alive nodes, from the head's state API (empty if it does not answer)."""
    try:
        with _dashboard_get(head.dashboard_url + "/api/v0/nodes?detail=false&limit=1000", timeout=10) as response:
            answer = json.loads(response.read())
    except (OSError, ValueError):
        return set()
    found: set = set()

    def walk(value):
        if isinstance(value, dict):
            if value.get("state") == "ALIVE" and "node_id" in value:
                found.add(value["node_id"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(answer)
    return found


def drain_node(head: RayHead, node: RayHead, deadline_s: float, reason: str = "DRAIN_NODE_REASON_PREEMPTION") -> None:
    """Ray's own drain call, as the autoscaler or KubeRay makes it before a spot node goes."""
    subprocess.run(
        [os.path.join(VENV_BIN, "ray"), "drain-node", "--address", head.gcs_address, "--node-id", node.node_id,
         "--reason", reason, "--reason-message", "spot instance reclaimed",
         "--deadline-remaining-seconds", str(int(deadline_s))],
        env=ray_env("token" if _TOKEN else "disabled"), check=True, capture_output=True, timeout=120,
    )


def _alive_nodes(head: RayHead) -> int:
    try:
        with _dashboard_get(head.dashboard_url + "/api/v0/nodes?detail=false", timeout=10) as response:
            answer = json.loads(response.read())
    except (OSError, ValueError):
        return 0
    return _count_alive(answer)


def _count_alive(value) -> int:
    """Node records (`node_id` with `state` ALIVE) anywhere in the state API's answer."""
    if isinstance(value, dict):
        own = 1 if value.get("state") == "ALIVE" and "node_id" in value else 0
        return own + sum(_count_alive(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_alive(v) for v in value)
    return 0


def _dashboard_get(url: str, timeout: float):
    """GET on the dashboard, with the session's token (a token-auth head refuses requests without)."""
    headers = {"Authorization": f"Bearer {_TOKEN[0]}"} if _TOKEN else {}
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return no_proxy.open(urllib.request.Request(url, headers=headers), timeout=timeout)


def _jobs_api_ready(url: str) -> bool:
    try:
        with _dashboard_get(url + "/api/version", timeout=2) as response:
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
