"""A job's `_job.json`: who it is (the spec's fingerprint, a job id), what it ran with.

The same spec in the same OUT resumes (same job id, and what the first run learnt: its
plan's worker count, the weights it loaded); a different one is refused with the fields
that differ, unless `--overwrite` has removed the previous job.
"""

from __future__ import annotations

import time
import uuid
from typing import Optional

from maskray.errors import UsageError


def job_record(spec, previous: Optional[dict], maskray_version: str) -> dict:
    """The new `_job.json`: the same spec resumes (same job id); a different one is refused
    (`--overwrite` has already removed the previous job when asked)."""
    fingerprint = spec.fingerprint()
    job_id = None
    if previous is not None:
        if previous.get("fingerprint") != fingerprint:
            changed = _changed_fields(previous.get("spec") or {}, spec)
            detail = f" (differs in {', '.join(changed)})" if changed else ""
            raise UsageError(
                f"{spec.output} holds a different job{detail}; use --overwrite to replace it,"
                " or choose another --output"
            )
        job_id = previous.get("job_id")
    manifest = {
        "job_id": job_id or uuid.uuid4().hex[:12],
        "fingerprint": fingerprint,
        "spec": spec.to_dict(),
        "model": spec.model,
        "weights": spec.weights,
        "maskray_version": maskray_version,
        "created": previous.get("created") if job_id else _now(),
    }
    if job_id:  # resuming: keep what the first run learnt (its plan, the weights it loaded)
        # and the track ids `maskray retrack` made (`tracks`: their generation and settings).
        for key in ("plan_workers", "weights_id", "tracks"):
            if previous.get(key):
                manifest[key] = previous[key]
    return manifest


def _changed_fields(previous_spec: dict, spec) -> list[str]:
    compare = getattr(spec, "differences_from_dict", None)
    return compare(previous_spec) if compare else []


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
