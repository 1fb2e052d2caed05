"""A job's state computed from its output folder alone, so it works from any machine.

Reads `_job.json` (planned shards and frames), this job's commit log (what is done: a
manifest and the records not folded yet, summed column-wise),
`_SUCCESS`, the lease (is a driver alive, and who) and `_driver.json` (its phase and rate).
A job without `_SUCCESS` whose driver holds no live lease was killed or lost, including a
driver killed before its first heartbeat (its lease expires): the job is reported stopped,
and re-running the same `maskray submit` resumes it. Lease ages are judged with the clock
skew margin of `lease.py`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Optional

from maskray.models.errors import UsageError, first_line
from maskray.pipeline.output import commit_log, layout, lease, sink


class NoJobError(UsageError):
    """OUT holds no job file: nothing was submitted there (yet)."""


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
    driver: Optional[str] = None  # the lease holder: owner, host, pid, silence
    phase: Optional[str] = None  # planning | starting workers | loading the model | running

    def to_dict(self) -> dict:
        return asdict(self)


def output_status(output: str, now: Optional[float] = None) -> OutputStatus:
    """The status of the job writing (or that wrote) `output`; UsageError if none is there,
    DamagedOutputError (one line naming the file) if one of its records is damaged."""
    try:
        manifest = sink.read_job(output)
    except OSError as error:
        raise UsageError(f"cannot read {output}: {first_line(error)}") from None
    if manifest is None:
        raise NoJobError(f"no maskray job in {output} (no {layout.JOB_FILE})")
    job_id = manifest.get("job_id")
    committed = commit_log.read_committed(output, job_id)
    driver = sink.read_driver_state(output) or {}
    if driver.get("job_id") not in (None, job_id):
        driver = {}
    success = sink.read_success(output)
    now = time.time() if now is None else now
    holder = lease.live_holder(output, now)

    if success is not None and success.get("job_id", job_id) == job_id:
        state, message = "done", ""
    elif holder is not None:
        state, message = "running", ""
    elif driver.get("state") == "stopped":  # Ctrl-C: the driver's own last word
        state, message = "stopped", driver.get("message", "")
    elif driver.get("state") == "failed":
        state, message = "failed", driver.get("message", "")
    else:
        state = "failed"
        updated = driver.get("updated")
        silent = f"last heartbeat {max(0.0, now - float(updated)):.0f}s ago" if updated else "no heartbeat"
        message = f"driver stopped without finishing ({silent}); run the same submit again to resume"
    return OutputStatus(
        output=output,
        job_id=job_id,
        state=state,
        message=message,
        shards_done=len(committed.covered_shards()),
        shards_total=manifest.get("shards"),
        frames_done=committed.total("frames"),
        frames_total=manifest.get("frames"),
        instances=committed.total("instances"),
        errors=committed.total("errors"),
        frames_per_s=driver.get("frames_per_s"),
        model=manifest.get("model"),
        weights_id=manifest.get("weights_id"),
        driver=lease.describe_holder(holder, now) if holder is not None else None,
        phase=driver.get("phase") if state == "running" else None,
    )


def format_status(status: OutputStatus) -> str:
    """Lines a person reads: state, shards and frames done / total, instances, errors."""
    def of(done, total):
        return f"{done}/{total}" if total is not None else f"{done}/?"

    running = f" ({status.phase})" if status.phase else ""
    lines = [
        f"job       {status.job_id}  ({status.output})",
        f"state     {status.state}{running}" + (f": {status.message}" if status.message else ""),
    ]
    if status.driver:
        lines.append(f"driver    {status.driver}")
    lines += [
        f"shards    {of(status.shards_done, status.shards_total)}",
        f"frames    {of(status.frames_done, status.frames_total)}",
        f"instances {status.instances}",
        f"errors    {status.errors}",
        f"model     {status.model} (weights {status.weights_id or '?'})",
    ]
    if status.frames_per_s:
        lines.append(f"rate      {status.frames_per_s:.1f} frames/s" + (" (last run)" if status.state != "running" else ""))
    return "\n".join(lines)
