"""Shared fixtures: the sample media, and a real S3 endpoint (moto's server on 127.0.0.1).

Tests that start Ray carry the `ray` marker (pyproject.toml): `pytest -m "not ray"` runs the
rest, and where Ray is not installed they are skipped rather than failed.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).parent / "data"

# Fails any test that starts Ray without the `ray` marker (the fast lane starts none).
pytest_plugins = ["ray_guard"]


def pytest_collection_modifyitems(config, items):
    if importlib.util.find_spec("ray") is not None:
        return
    skip = pytest.mark.skip(reason="needs Ray, which is not installed here")
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data: images/ (RGB, greyscale, RGBA) and videos/ (bikes.mp4, carphone_pristine.mp4)."""
    return DATA_DIR


# Distinctive test credentials, so a test can prove they never reach a job's output or logs.
TEST_ACCESS_KEY = "MASKRAYTESTACCESSKEY7"
TEST_SECRET_KEY = "maskray-test-secret-do-not-store-8f2c41"


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 protocol endpoint for the session; yields its URL (http://127.0.0.1:PORT).

    The AWS variables maskray reads are set in os.environ for the session (so Ray workers
    started afterwards see them too) and restored afterwards.
    """
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
    cleared = ("AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_SESSION_TOKEN", "AWS_PROFILE")
    saved = {name: os.environ.get(name) for name in (*settings, *cleared)}
    os.environ.update(settings)
    for name in cleared:
        os.environ.pop(name, None)
    try:
        yield endpoint
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


@pytest.fixture
def s3_client(s3_server):
    """A boto3 S3 client talking to the session's moto server."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1",
                        aws_access_key_id=TEST_ACCESS_KEY, aws_secret_access_key=TEST_SECRET_KEY)


@pytest.fixture
def s3_bucket(s3_client) -> str:
    """A fresh, empty bucket on the moto server; yields its name."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name
