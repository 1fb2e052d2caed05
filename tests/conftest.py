"""Shared fixtures: the sample media, and a real S3 endpoint (moto's server on 127.0.0.1).

Tests that start Ray carry the `ray` marker (pyproject.toml): `pytest -m "not ray"` runs the
rest, and where Ray is not installed they are skipped rather than failed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from pathlib import Path

import pytest

from s3_endpoint import TEST_ACCESS_KEY, TEST_SECRET_KEY, session_s3, stop_session_s3
from submit_helpers import local_ray, stop_shared_ray

DATA_DIR = Path(__file__).parent / "data"

# Ray Train's controller looks at its workers every 2 s (Ray's default): a test's one-step
# training run would spend seconds of each start and end waiting for that look. Every Ray
# this session starts (shared, private, `ray start`, a CLI's own) inherits the variable.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")

# Fails any test that starts Ray without the `ray` marker (the fast lane starts none).
pytest_plugins = ["ray_guard", "cpu_durations"]


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


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 protocol endpoint for the session; yields its URL (http://127.0.0.1:PORT).

    The AWS variables maskray reads are set in os.environ for the rest of the session (so Ray
    workers started afterwards see them too) and restored at its end (tests/s3_endpoint.py).
    """
    return session_s3()


@pytest.fixture
def shared_ray():
    """The session's shared local Ray (submit_helpers.local_ray), up in this process: what
    `maskray submit/train/ablate` run in-process then use as it is, instead of starting a
    private Ray of their own for every call (seconds each on a small machine)."""
    with local_ray() as ray:
        yield ray


@pytest.fixture
def no_ray_in_process():
    """For a test of how maskray starts or joins Ray itself: the session's shared Ray (which
    maskray would use as it is) is stopped first; it starts again when next needed."""
    stop_shared_ray()
    if "ray" in sys.modules:
        assert not sys.modules["ray"].is_initialized(), "a Ray that is not the shared one is still up"


def pytest_sessionfinish(session, exitstatus):
    """The session's shared Ray first (its workers use the endpoint), then the S3 endpoint."""
    stop_shared_ray()
    stop_session_s3()


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
