"""What the user sees while a job runs: a bar on a terminal, plain lines elsewhere, a summary.

On a terminal: a tqdm bar of frames done / total with frames/s, ETA and the error count.
Elsewhere (CI logs, `nohup`, the Ray Jobs API): one line every `interval` seconds, so a log
file stays readable. Counts advance per committed shard: those are the frames that exist.
While planning goes on (shards run as they are planned) the totals are unknown: the line
shows `?` and "planning", and `set_totals` fills them in when the plan is complete.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


class Progress:
    def __init__(
        self,
        total_frames: Optional[int],
        total_shards: Optional[int],
        *,
        done_frames: int = 0,
        done_shards: int = 0,
        stream: Optional[TextIO] = None,
        interval: float = 10.0,
        terminal: Optional[bool] = None,
    ):
        self.stream = stream or sys.stderr
        self.total_frames = total_frames
        self.total_shards = total_shards
        self.resumed_frames = done_frames
        self.frames = done_frames
        self.shards = done_shards
        self.instances = 0
        self.errors = 0
        self.retries = 0  # attempts charged to a shard's retry budget
        self.preemptions = 0  # drain notices (preemption, scale-down) for nodes running our replicas
        self.requeued_shards = 0  # shards put back because their node was drained or lost: no retry charged
        self.nodes_lost = 0  # of those, shards whose node died without notice
        self.replicas_text = lambda: ""  # replicas per node and their state (set by the driver)
        self.interval = interval
        self.created = self.started = time.monotonic()
        self._last_line = self.started
        self._terminal = terminal if terminal is not None else _isatty(self.stream)
        self._bar = None  # created by start_clock(), when the workers are ready
        if done_shards:
            self.log(f"resuming: {done_shards}/{total_shards} shards already committed")

    # ---- updates ---------------------------------------------------------------------------
    @property
    def planning(self) -> bool:
        return self.total_frames is None

    def set_totals(self, total_frames: int, total_shards: int) -> None:
        """The plan is complete: totals (and the bar's percentage and ETA) are known now."""
        self.total_frames, self.total_shards = total_frames, total_shards
        if self._bar is not None:
            self._bar.total = total_frames
            self._set_postfix()
            self._bar.refresh()

    def resumed(self, frames: int, shards: int = 1) -> None:
        """Work a previous run committed, found while planning: done already, not this run's."""
        self.frames += frames
        self.resumed_frames += frames
        self.shards += shards
        if self._bar is not None:
            self._bar.update(frames)

    def start_clock(self) -> None:
        """Work starts now (workers are ready): frames/s and ETA count from here."""
        self.started = self._last_line = time.monotonic()
        if self._terminal and self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total_frames, initial=self.frames, unit="frame", file=self.stream,
                dynamic_ncols=True, smoothing=0.1,
            )
            self._set_postfix()

    def committed(self, record, completes_shard: bool = True) -> None:
        """A commit record (`layout.CommitRecord`) arrived; a bisected piece counts its frames,
        and its planned shard once the last piece is in."""
        frames = int(record.frames)
        self.frames += frames
        self.shards += int(completes_shard)
        self.instances += int(record.instances)
        self.errors += int(record.errors)
        if self._bar is not None:
            self._set_postfix()
            self._bar.update(frames)
        else:
            self.tick()

    def retried(self, shard_id: str, attempt: int, reason: str) -> None:
        self.retries += 1
        self.log(f"shard {shard_id}: {reason}; retrying (attempt {attempt})")

    def preempted(self, node_id: str, deadline_text: str, replicas: int) -> None:
        """A drain notice for a node running `replicas` of ours."""
        self.preemptions += 1
        self.log(f"node {node_id[:12]} is being drained ({deadline_text}): its {replicas} replica(s) take no new shards")

    def requeued(self, shard_id: str, reason: str, preempted: bool) -> None:
        """A shard goes back to the queue through no fault of its own: no retry is charged."""
        self.requeued_shards += 1
        if not preempted:
            self.nodes_lost += 1
        self.log(f"shard {shard_id}: {reason}; back in the queue (no retry charged)")

    def tick(self) -> None:
        """Called often; prints a plain line when `interval` has passed (non-terminal only)."""
        now = time.monotonic()
        if not self._terminal and now - self._last_line >= self.interval:
            self._last_line = now
            self.log(self.status_line())

    def log(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(f"maskray: {message}", file=self.stream)
        else:
            print(f"maskray: {message}", file=self.stream, flush=True)

    # ---- text ------------------------------------------------------------------------------
    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return (self.frames - self.resumed_frames) / elapsed if elapsed > 0 else 0.0

    def status_line(self) -> str:
        return self._counts_line() + self._cluster_text()

    def _cluster_text(self) -> str:
        text = ""
        if self.retries or self.preemptions or self.requeued_shards:
            text += (f", {self.retries} retries, {self.preemptions} preemptions,"
                     f" {self.requeued_shards} shards requeued free")
        replicas = self.replicas_text()
        return text + (f" [{replicas}]" if replicas else "")

    def _counts_line(self) -> str:
        rate = self.rate
        if self.planning:
            return (f"{self.frames}/? frames (planning), {self.shards}/? shards, {rate:.1f} frames/s, ETA ?, "
                    f"{self.errors} errors")
        remaining = max(0, self.total_frames - self.frames)
        eta = f"{remaining / rate:.0f}s" if rate > 0 else "?"
        percent = min(100.0, 100.0 * self.frames / self.total_frames) if self.total_frames else 100.0
        return (
            f"{self.frames}/{self.total_frames} frames ({percent:.0f}%), "
            f"{self.shards}/{self.total_shards} shards, {rate:.1f} frames/s, ETA {eta}, "
            f"{self.errors} errors"
        )

    def summary(self) -> dict:
        wall = time.monotonic() - self.created
        return {
            "frames": self.frames,
            "frames_this_run": self.frames - self.resumed_frames,
            "shards": self.shards,
            "instances_this_run": self.instances,
            "errors_this_run": self.errors,
            "retries": self.retries,
            "preemptions": self.preemptions,
            "requeued_shards": self.requeued_shards,
            "nodes_lost": self.nodes_lost,
            "wall_s": round(wall, 3),
            "frames_per_s": round(self.rate, 3),
        }

    def close(self, final_line: Optional[str] = None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if final_line:
            self.log(final_line)

    def _set_postfix(self) -> None:
        total = "? (planning)" if self.planning else self.total_shards
        freed = f", preempted {self.preemptions}" if self.preemptions else ""
        self._bar.set_postfix_str(f"shards {self.shards}/{total}, errors {self.errors}{freed}", refresh=False)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
