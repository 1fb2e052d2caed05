"""Talking to a Ray Jobs API: which address, one client, and Ray's errors as one line.

The address is the one given, else $RAY_API_SERVER_ADDRESS or $RAY_ADDRESS (Ray's variables,
in Ray's order), else the local default. Token-authenticated clusters work as with `ray job`:
RAY_AUTH_MODE=token with RAY_AUTH_TOKEN or ~/.ray/auth_token; extra HTTP headers (e.g. for a
proxied dashboard) come from $RAY_JOB_HEADERS as JSON. Both are sent, never stored.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator, Optional

from maskray.errors import MaskrayError, UsageError, first_line

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
ADDRESS_VARIABLES = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")


def is_jobs_api_address(address: Optional[str]) -> bool:
    """True for `http://` and `https://` addresses: those mean the Ray Jobs API."""
    return bool(address) and address.lower().startswith(("http://", "https://"))


def resolve_address(address: Optional[str]) -> str:
    """The address given, else $RAY_API_SERVER_ADDRESS or $RAY_ADDRESS, else the local default."""
    if address:
        return address
    for name in ADDRESS_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return DEFAULT_ADDRESS


def connect(address: str):
    """A `JobSubmissionClient` for a resolved `address`; a one-line error if it cannot be used."""
    from ray.job_submission import JobSubmissionClient

    headers = None
    if os.environ.get("RAY_JOB_HEADERS"):
        try:
            headers = json.loads(os.environ["RAY_JOB_HEADERS"])
        except ValueError:
            raise UsageError("RAY_JOB_HEADERS must be a JSON object of HTTP headers") from None
    try:
        # Ray's client lets $RAY_ADDRESS override the address it is given; here the
        # address the user typed wins.
        with _without_address_variables():
            return JobSubmissionClient(address, headers=headers)
    except _authentication_error() as error:
        raise _auth_usage_error(address, error) from None
    except (ConnectionError, OSError, _requests_error()) as error:
        raise MaskrayError(f"cannot reach the Ray Jobs API at {address}: {first_line(error)}") from None
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"cannot use Ray address {address}: {first_line(error)}") from None


@contextlib.contextmanager
def api_errors(address: str, job_id: Optional[str] = None) -> Iterator[None]:
    """Ray's errors (a RuntimeError carrying an HTTP body) become one line for the user."""
    try:
        yield
    except _authentication_error() as error:
        raise _auth_usage_error(address, error) from None
    except (ConnectionError, _requests_error()) as error:
        raise MaskrayError(f"lost the Ray Jobs API at {address}: {first_line(error)}") from None
    except RuntimeError as error:
        text = str(error)
        if job_id is not None and ("404" in text or "does not exist" in text):
            raise UsageError(f"no job {job_id} on {address} (see `maskray jobs --address {address}`)") from None
        raise MaskrayError(f"the Ray Jobs API at {address} refused: {first_line(error)}") from None


@contextlib.contextmanager
def _without_address_variables() -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in ADDRESS_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _requests_error():
    import requests

    return requests.exceptions.RequestException


def _authentication_error():
    from ray.exceptions import AuthenticationError

    return AuthenticationError


def _auth_usage_error(address: str, error: BaseException) -> UsageError:
    return UsageError(
        f"the Ray cluster at {address} refused the request ({first_line(error)}); it uses token"
        " authentication: set RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN"
        " or ~/.ray/auth_token"
    )
