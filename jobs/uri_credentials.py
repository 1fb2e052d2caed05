"""Credentials written into a URI are refused, before a job spec can hold them.

A spec is stored in `OUT/_job.json`, shown by `maskray status`, and sent as the Ray Jobs
API entrypoint (listed on the dashboard), so `s3://KEY:SECRET@bucket/...` would publish the
secret in all of them. Storage access comes from the environment of each process instead
(`AWS_ACCESS_KEY_ID`, a profile, an instance role, `GOOGLE_APPLICATION_CREDENTIALS`).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from maskray.errors import UsageError

# Query parameters that carry a secret (pre-signed URLs, `?access_key=...&secret_key=...`).
_BUCKET_SCHEMES = ("s3", "gs", "gcs")
_SECRET_PARAMETER = re.compile(r"key|secret|token|password|passwd|signature|credential|sig$", re.IGNORECASE)


def has_credentials(uri: str) -> bool:
    """Whether `uri` holds a user name, password or key: `scheme://user[:pass]@host/...` or a
    query parameter such as `access_key`, `X-Amz-Signature`, `token`. Local paths never do."""
    if "://" not in uri:
        return False
    query = urlsplit(uri).query
    return _has_user_information(uri) or any(
        _SECRET_PARAMETER.search(name) for name, _ in parse_qsl(query, keep_blank_values=True))


def redacted(uri: str) -> str:
    """`uri` with its user information and query replaced by `***`, safe to print."""
    scheme, rest = uri.split("://", 1)
    rest, question, _ = rest.partition("?")
    if _has_user_information(uri):  # up to the first '@': AWS and GCS secrets never hold one
        rest = "***@" + rest.split("@", 1)[1] if "@" in rest else "***"
    return f"{scheme}://{rest}" + ("?***" if question else "")


def _has_user_information(uri: str) -> bool:
    scheme, rest = uri.split("://", 1)
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    # A secret key may hold a '/' (`s3://KEY:SE/CRET@bucket`), ending the authority early; a
    # bucket name never holds ':', so there it marks credentials too.
    return "@" in authority or (scheme.lower() in _BUCKET_SCHEMES and ":" in authority)


def refuse_credentials(uri: str, flag: str) -> None:
    """UsageError (one line, the secret left out) when `uri` holds credentials."""
    if has_credentials(uri):
        raise UsageError(
            f"{flag} {redacted(uri)} has credentials in the URI; maskray never stores them: give them "
            "through the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
            "GOOGLE_APPLICATION_CREDENTIALS) and drop them from the URI"
        )
