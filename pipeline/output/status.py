"""A job's state computed from its output folder alone, so it works from any machine.

Reads `_job.json` (planned shards and frames), `_commits/` (what is done), `_SUCCESS`, and
`_driver.json` (the driver's last heartbeat). A driver that stopped beating without writing
`_SUCCESS` was killed or lost: the job is reported failed, and re-running the same
`maskray submit` resumes it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Optional

from maskray.models.errors import UsageError, first_line
from maskray.pipeline.output import sink

STALE_AFTER_BEATS = 4  # missed heartbeats before a "running" driver counts as gone


@dataclass
class OutputStatus:
    output: str
    job_id: Optional[str]
    state: str  # running | done | failed
    message: str
    shards_done: int
    shards_total: Optional[int]
    frames_done: int
    frames_total: Optional[int]
    instances: int
    errors: int
    frames_per_s: Optional[float]
    model: Optional[str]
    weights_id: Optional[str]

    def to_dict(self) -> dict:
        return asdict(self)


def output_status(output: str, now: Optional[float] = None) -> OutputStatus:
    """The status of the job writing (or that wrote) `output`; UsageError if none is there."""
    try:
        manifest = sink.read_job(output)
    except OSError as error:
        raise UsageError(f"cannot read {output}: {first_line(error)}") from None
    if manifest is None:
        raise UsageError(f"no maskray job in {output} (no _job.json)")
    commits = sink.read_commits(output)
    driver = sink.read_driver_state(output) or {}
    now = time.time() if now is None else now

    if sink.has_success(output):
        state, message = "done", ""
    elif driver.get("state") == "failed":
        state, message = "failed", driver.get("message", "")
    else:
        state, message = "running", ""
        updated = driver.get("updated")
        beat = float(driver.get("heartbeat_s") or 30.0)
        if updated is not None and now - float(updated) > STALE_AFTER_BEATS * beat:
            state = "failed"
            message = (f"driver stopped without finishing (last heartbeat {now - float(updated):.0f}s ago);"
                       " run the same submit again to resume")
    return OutputStatus(
        output=output,
        job_id=manifest.get("job_id"),
        state=state,
        message=message,
        shards_done=len(commits),
        shards_total=manifest.get("shards"),
        frames_done=sum(int(r.get("frames", 0)) for r in commits.values()),
        frames_total=manifest.get("frames"),
        instances=sum(int(r.get("instances", 0)) for r in commits.values()),
        errors=sum(int(r.get("errors", 0)) for r in commits.values()),
        frames_per_s=driver.get("frames_per_s"),
        model=manifest.get("model"),
        weights_id=manifest.get("weights_id"),
    )


def format_status(status: OutputStatus) -> str:
    """Lines a person reads: state, shards and frames done / total, instances, errors."""
    def of(done, total):
        return f"{done}/{total}" if total is not None else f"{done}/?"

    lines = [
        f"job       {status.job_id}  ({status.output})",
        f"state     {status.state}" + (f": {status.message}" if status.message else ""),
        f"shards    {of(status.shards_done, status.shards_total)}",
        f"frames    {of(status.frames_done, status.frames_total)}",
        f"instances {status.instances}",
        f"errors    {status.errors}",
        f"model     {status.model} (weights {status.weights_id or '?'})",
    ]
    if status.frames_per_s:
        lines.append(f"rate      {status.frames_per_s:.1f} frames/s" + (" (last run)" if status.state != "running" else ""))
    return "\n".join(lines)
