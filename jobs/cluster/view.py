"""Ray jobs as maskray shows them: state from Ray, progress from the job's output.

A maskray job carries its output URI in the Ray job's metadata; progress comes from that
output's commit records (`pipeline.job_status`), the same numbers `maskray status OUT` shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from maskray.errors import MaskrayError, first_line
from maskray.pipeline.text_table import text_table

OUTPUT_KEY = "maskray.output"
FINGERPRINT_KEY = "maskray.fingerprint"
VERSION_KEY = "maskray.version"
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")
ERROR_PREFIX = "maskray: error: "


@dataclass
class ClusterJob:
    """One Ray job: its id, Ray's state and message, and for maskray jobs the output."""

    job_id: str
    state: str  # PENDING | RUNNING | SUCCEEDED | FAILED | STOPPED
    message: str
    start_time: Optional[float]  # seconds since the epoch
    end_time: Optional[float]
    exit_code: Optional[int]  # the driver's, once it ended
    output: Optional[str]  # None for a job maskray did not submit
    progress: Optional[str] = None

    @classmethod
    def from_details(cls, details) -> "ClusterJob":
        """From Ray's `JobDetails`."""
        metadata = details.metadata or {}
        return cls(
            job_id=details.submission_id or details.job_id,
            state=str(details.status),
            message=details.message or "",
            start_time=details.start_time / 1000 if details.start_time else None,
            end_time=details.end_time / 1000 if details.end_time else None,
            exit_code=getattr(details, "driver_exit_code", None),
            output=metadata.get(OUTPUT_KEY),
        )

    @property
    def is_maskray(self) -> bool:
        return self.output is not None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def reason(self) -> str:
        """Why a job failed, in one line: maskray's own error line when the log tail has one."""
        errors = [line for line in self.message.splitlines() if line.startswith(ERROR_PREFIX)]
        return errors[-1][len(ERROR_PREFIX):] if errors else first_line(self.message)

    def describe(self) -> str:
        """Several lines for `maskray status JOB_ID --address ...`."""
        lines = [f"job {self.job_id}: {self.state}"]
        if self.output:
            lines.append(f"  output:   {self.output}")
        if self.progress:
            lines.append(f"  progress: {self.progress}")
        if self.start_time:
            lines.append(f"  started:  {clock(self.start_time)}")
        if self.start_time and self.end_time:
            lines.append(f"  ended:    {clock(self.end_time)} (after {self.end_time - self.start_time:.0f}s)")
        if self.state == "FAILED":
            lines.append(f"  error:    {self.reason} (exit code {self.exit_code})")
        elif self.message:
            lines.append(f"  message:  {first_line(self.message)}")
        if self.state == "STOPPED" and self.output:
            lines.append("  committed shards are kept: submit the same command again to resume")
        return "\n".join(lines)


def output_progress(output: str) -> str:
    """`3/5 shards, 120/250 frames (48%), 0 errors` from the output's commit records."""
    from maskray.pipeline.output.status import NoJobError, output_status

    try:
        status = output_status(output)
    except NoJobError:  # the driver has not written the job file yet
        return "not started"
    except MaskrayError as error:  # OUT cannot be read from this machine, or a damaged record
        return first_line(error)
    except (OSError, ValueError) as error:
        return f"output not readable from here ({first_line(error)})"
    if status.shards_total is None or status.frames_total is None:  # shards run while planning goes on
        if not status.shards_done:
            return "planning"
        return f"planning; {status.shards_done}/? shards, {status.frames_done}/? frames, {status.errors} errors"
    total = status.frames_total
    percent = 100.0 * status.frames_done / total if total else 100.0
    text = (f"{status.shards_done}/{status.shards_total} shards, {status.frames_done}/{total} frames"
            f" ({percent:.0f}%), {status.errors} errors")
    return text + (", complete" if status.state == "done" else "")


def format_table(jobs: list[ClusterJob]) -> str:
    """`maskray jobs`: a header and one line per job."""
    rows = [(job.job_id, job.state, clock(job.start_time) if job.start_time else "-",
             job.output or "(not maskray)", job.progress or "-") for job in jobs]
    return text_table(("JOB ID", "STATE", "STARTED", "OUTPUT", "PROGRESS"), rows)


def clock(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
