"""The session's real S3 endpoint: moto's server on 127.0.0.1, started once when first needed.

Started by the `s3_server` fixture, or by the session's shared Ray (submit_helpers.local_ray)
before that Ray starts, so its workers inherit the AWS variables set here. Stopped, and the
variables restored, at the end of the session (conftest.pytest_sessionfinish).
"""

from __future__ import annotations

import os
from typing import Optional

# Distinctive test credentials, so a test can prove they never reach a job's output or logs.
TEST_ACCESS_KEY = "MASKRAYTESTACCESSKEY7"
TEST_SECRET_KEY = "maskray-test-secret-do-not-store-8f2c41"

_CLEARED = ("AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_SESSION_TOKEN", "AWS_PROFILE")
_running: dict = {}  # "server", "endpoint", "saved" while it runs


def session_s3() -> str:
    """The endpoint URL (http://127.0.0.1:PORT), starting the server on first use; the AWS
    variables maskray reads are set in os.environ from then on."""
    if _running:
        return _running["endpoint"]
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    settings = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # never wait for an instance-metadata lookup
    }
    saved = {name: os.environ.get(name) for name in (*settings, *_CLEARED)}
    os.environ.update(settings)
    for name in _CLEARED:
        os.environ.pop(name, None)
    _running.update(server=server, endpoint=endpoint, saved=saved)
    return endpoint


def running_endpoint() -> Optional[str]:
    return _running.get("endpoint")


def stop_session_s3() -> None:
    """Stop the server (if it ran) and give the AWS variables back as they were."""
    if not _running:
        return
    for name, value in _running["saved"].items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _running.pop("server").stop()
    _running.clear()
