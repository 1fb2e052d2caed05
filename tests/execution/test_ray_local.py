"""Issue 12, item 11: the private Ray that `maskray submit/train/ablate/demo` start.

Before: its GCS and raylet listened on every interface, `RAY_AUTH_MODE=disabled` in the
environment left it open, and Ray's token file was readable by every local user.
The session runs in a fresh interpreter, as the `maskray` command does, with a hostile
environment: auth disabled and a token of the user's own that must not be the cluster's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from maskray.jobs.ray_local import ray_session
from maskray.errors import UsageError

pytestmark = pytest.mark.ray  # every test here starts (or joins) a real Ray

SESSION = r"""
import json, os, subprocess, sys
from maskray.jobs.ray_local import ray_session

report = {}
with ray_session() as started:
    import psutil  # Ray's own copy, importable once Ray is
    import ray

    @ray.remote
    def worker_auth_mode():
        return os.environ.get("RAY_AUTH_MODE")

    report["started"] = started
    report["worker_auth_mode"] = ray.get(worker_auth_mode.remote())
    gcs = ray.get_runtime_context().gcs_address
    report["gcs"] = gcs
    token = os.environ["RAY_AUTH_TOKEN_PATH"]
    report["token_mode"] = oct(os.stat(token).st_mode & 0o777)
    report["token_folder_mode"] = oct(os.stat(os.path.dirname(token)).st_mode & 0o777)
    report["token_is_users"] = open(token).read() == "the-users-own-token"
    listening = set()
    for process in psutil.Process().children(recursive=True):
        try:
            for connection in process.net_connections(kind="inet"):
                if connection.status == psutil.CONN_LISTEN:
                    listening.add((process.name(), connection.laddr.ip))
        except psutil.Error:
            pass
    report["listening"] = sorted(listening)
    # Someone on this machine without the cluster's token (auth disabled on their side).
    outsider = dict(os.environ, RAY_AUTH_MODE="disabled")
    outsider.pop("RAY_AUTH_TOKEN_PATH")
    joined = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address={gcs!r}); print('JOINED')"],
                            env=outsider, capture_output=True, text=True, timeout=240)
    report["outsider_joined"] = "JOINED" in joined.stdout
report["after"] = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
report["token_left"] = os.path.exists(token)
print("REPORT " + json.dumps(report))
"""


def test_private_ray_is_loopback_only_token_forced_and_token_file_private():
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_AUTH_TOKEN="the-users-own-token")
    done = subprocess.run([sys.executable, "-c", SESSION], env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.split("REPORT ", 1)[1])
    assert report["started"] is True
    assert report["worker_auth_mode"] == "token"
    assert report["gcs"].startswith("127.0.0.1:")
    names = {name for name, _ in report["listening"]}
    assert {"gcs_server", "raylet"} <= names, report["listening"]
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for _, ip in report["listening"]), report["listening"]
    assert report["token_mode"] == "0o600" and report["token_folder_mode"] == "0o700"
    assert report["token_is_users"] is False
    assert report["outsider_joined"] is False
    # The caller's environment is given back as it was, and the cluster's token is gone.
    assert report["after"] == {"RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": "the-users-own-token",
                               "RAY_AUTH_TOKEN_PATH": None}
    assert report["token_left"] is False


def test_a_closed_address_is_one_line_in_seconds(no_ray_in_process):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UsageError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}") as refused:
        with ray_session(f"127.0.0.1:{port}"):
            pass
    assert "\n" not in str(refused.value)


def test_a_second_private_ray_in_one_process_starts(tmp_path):
    """A notebook, or a program running two jobs, after a Ray of the user's own: Ray caches the
    token it first read, and the next private cluster failed with "Failed to start GCS" until
    maskray had Ray read it again."""
    script = (
        "from maskray.jobs.ray_local import ray_session\n"
        "import ray\n"
        "ray.init(num_cpus=1, include_dashboard=False)  # the user's own Ray first, with its own token\n"
        "ray.shutdown()\n"
        "for _ in range(2):\n"
        "    with ray_session() as started:\n"
        "        assert started and ray.cluster_resources().get('CPU', 0) >= 1\n"
        "print('BOTH')\n"
    )
    # Ray's defaults for the user's own cluster: a token it makes in ~/.ray (here a temporary home).
    defaults = {name: value for name, value in os.environ.items() if not name.startswith("RAY_AUTH")}
    done = subprocess.run([sys.executable, "-c", script], env={**defaults, "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("BOTH")
