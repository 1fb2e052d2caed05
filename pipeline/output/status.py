"""A job's state computed from its output folder alone, so it works from any machine.

Reads `_job.json` (planned shards and frames), this job's commit log (what is done: a
manifest and the records not folded yet, summed column-wise),
`_SUCCESS`, the lease (is a driver alive, and who) and `_driver.json` (its phase and rate).
A job without `_SUCCESS` whose driver holds no live lease was killed or lost, including a
driver killed before its first heartbeat (its lease expires): the job is reported stopped,
and re-running the same `maskray submit` resumes it. Lease ages are judged with the clock
skew margin of `lease.py`. One listing of each table's folder checks that every committed part
is there at its recorded size (`part_check.py`): a job with a part missing or cut short is
`damaged`, never `done`, and its shards count as not done.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Optional

from maskray.errors import UsageError, first_line
from maskray.pipeline.output import commit_log, layout, lease, part_check, sink


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
    retries: Optional[int] = None  # attempts charged to shards' retry budgets (this run)
    preemptions: Optional[int] = None  # drain notices (preemptions) for nodes running the job's replicas
    requeued_shards: Optional[int] = None  # shards put back from drained or lost nodes: no retry charged
    nodes_lost: Optional[int] = None  # of those, shards whose node died without notice
    replicas: Optional[list] = None  # per node: replicas by state (starting, idle, working, draining), frames/s
    parts_damaged: int = 0  # committed parts missing or of the wrong size (one listing: part_check.py)
    tracks: Optional[str] = None  # which tracker settings made the current track ids (`maskray retrack`)

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
    now = time.time() if now is None else now
    holder = lease.live_holder(output, now)
    damaged = part_check.check_parts(output, committed.table) if len(committed) else []
    if damaged and holder is not None:  # or replaced meanwhile (a retry, compaction): look again
        committed = commit_log.read_committed(output, job_id)
        damaged = part_check.check_parts(output, committed.table)
    redo = {shard for problem in damaged for shard in problem.shards}
    whole = committed.without(redo)
    driver = sink.read_driver_state(output) or {}
    if driver.get("job_id") not in (None, job_id):
        driver = {}
    success = sink.read_success(output)

    if damaged and holder is None:  # never "done" over a missing part
        state = "damaged"
        message = part_check.summary_line(output, damaged, part_check.part_count(committed.table))
    elif success is not None and success.get("job_id", job_id) == job_id:
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
        shards_done=len(whole.covered_shards()),
        shards_total=manifest.get("shards"),
        frames_done=whole.total("frames"),
        frames_total=manifest.get("frames"),
        instances=whole.total("instances"),
        errors=whole.total("errors"),
        frames_per_s=driver.get("frames_per_s"),
        model=manifest.get("model"),
        weights_id=manifest.get("weights_id"),
        driver=lease.describe_holder(holder, now) if holder is not None else None,
        phase=driver.get("phase") if state == "running" else None,
        retries=driver.get("retries"),
        preemptions=driver.get("preemptions"),
        requeued_shards=driver.get("requeued_shards"),
        nodes_lost=driver.get("nodes_lost"),
        replicas=driver.get("replicas") if state == "running" else None,
        parts_damaged=len(damaged),
        tracks=_tracks_line(manifest),
    )


def _tracks_line(job: dict) -> Optional[str]:
    """Who made the current track ids, and with which tracker settings (changed from the defaults)."""
    spec, retracked = job.get("spec") or {}, job.get("tracks")
    if not retracked and not (spec.get("track", True) and spec.get("tracker")):
        return None  # the job's own tracks with the defaults (or none): nothing to say
    settings = retracked.get("tracker", {}) if retracked else spec.get("tracker") or {}
    text = ", ".join(f"{k}={v}" for k, v in sorted(settings.items())) or "default settings"
    if retracked:
        return f"retracked {retracked.get('made_at', '')} with {text} (generation {retracked.get('generation')})"
    return f"made by the job with {text}"


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
    if status.parts_damaged and status.state != "damaged":
        lines.append(f"damaged   {status.parts_damaged} committed parts missing or of the wrong size:"
                     f" run `maskray verify {status.output}`")
    if status.tracks:
        lines.append(f"tracks    {status.tracks}")
    lines += [
        f"shards    {of(status.shards_done, status.shards_total)}",
        f"frames    {of(status.frames_done, status.frames_total)}",
        f"instances {status.instances}",
        f"errors    {status.errors}",
        f"model     {status.model} (weights {status.weights_id or '?'})",
    ]
    if status.retries is not None:
        lines.append(f"cluster   {status.preemptions or 0} preemptions, {status.requeued_shards or 0} shards"
                     f" requeued (not charged, {status.nodes_lost or 0} from lost nodes); {status.retries} retries")
    for node in status.replicas or ():
        states = ", ".join(f"{node[s]} {s}" for s in ("starting", "idle", "working", "draining") if node.get(s))
        lines.append(f"node      {node['node'][:12]} {node.get('host', '')}: {states}, {node['frames_per_s']:.1f} frames/s")
    if status.frames_per_s:
        lines.append(f"rate      {status.frames_per_s:.1f} frames/s" + (" (last run)" if status.state != "running" else ""))
    return "\n".join(lines)
