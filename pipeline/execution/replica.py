"""One model replica as the driver sees it: its actor, node, state and recent shard times.

States: `starting` (placed or waiting for a node, model loading), `idle`, `working` (a shard
in flight), `draining` (its node got a drain notice: no new shards; it leaves after the one
it has). The recent shard times say whether an in-flight shard will finish before a drain
deadline, and give the replica's frames/s for `status` and the progress line.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

STARTING, IDLE, WORKING, DRAINING = "starting", "idle", "working", "draining"
RECENT_SHARDS = 5


@dataclass(eq=False)
class Replica:
    actor: object
    node_id: Optional[str] = None  # known at once when placed on a node, else once it started
    state: str = STARTING
    host: str = ""
    created: float = field(default_factory=time.monotonic)
    shard_started: Optional[float] = None  # monotonic time the in-flight shard was sent
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_SHARDS))  # (seconds, frames)

    def begin_shard(self) -> None:
        self.shard_started = time.monotonic()
        if self.state != DRAINING:
            self.state = WORKING

    def end_shard(self, frames: int) -> None:
        if self.shard_started is not None:
            self.recent.append((time.monotonic() - self.shard_started, int(frames)))
        self.shard_started = None
        if self.state != DRAINING:
            self.state = IDLE

    def expected_shard_s(self) -> Optional[float]:
        """The median of this replica's recent shard times; None before its first shard."""
        return statistics.median(seconds for seconds, _ in self.recent) if self.recent else None

    def in_flight_s(self) -> float:
        return time.monotonic() - self.shard_started if self.shard_started is not None else 0.0

    def frames_per_s(self) -> float:
        seconds = sum(s for s, _ in self.recent)
        return sum(f for _, f in self.recent) / seconds if seconds > 0 else 0.0

    def describe(self) -> dict:
        return {"node": self.node_id, "host": self.host, "state": self.state,
                "frames_per_s": round(self.frames_per_s(), 3)}


def finishes_before(replica: Replica, deadline: Optional[float], fallback_s: Optional[float],
                    margin_s: float = 2.0) -> bool:
    """Will the replica's in-flight shard finish before `deadline` (Unix time)?

    Judged from its own recent shard times (or `fallback_s`, the pool's, before its first);
    no estimate at all, or a shard already past its usual time, counts as not finishing.
    """
    if deadline is None:
        return True
    expected = replica.expected_shard_s() or fallback_s
    if expected is None:
        return False
    remaining = expected - replica.in_flight_s()
    if remaining <= 0:  # slower than usual: no telling when it ends
        return False
    return time.time() + remaining + margin_s < deadline


def nodes_summary(replicas: list[Replica]) -> list[dict]:
    """Replicas per node, for `status --json`: node, host, replicas by state, frames/s."""
    by_node: dict = {}
    for replica in replicas:
        entry = by_node.setdefault(replica.node_id or "?", {
            "node": replica.node_id or "?", "host": replica.host, "replicas": 0, "frames_per_s": 0.0,
            STARTING: 0, IDLE: 0, WORKING: 0, DRAINING: 0})
        entry["replicas"] += 1
        entry[replica.state] += 1
        entry["frames_per_s"] = round(entry["frames_per_s"] + replica.frames_per_s(), 3)
        entry["host"] = entry["host"] or replica.host
    return list(by_node.values())


def nodes_text(replicas: list[Replica]) -> str:
    """A short text of the replicas per node: `node a1b2c3: 2 working 1.9 f/s; node d4e5f6: 1 draining`."""
    parts = []
    for entry in nodes_summary(replicas):
        states = ", ".join(f"{entry[s]} {s}" for s in (STARTING, IDLE, WORKING, DRAINING) if entry[s])
        parts.append(f"node {entry['node'][:6]}: {states} {entry['frames_per_s']:.1f} f/s")
    return "; ".join(parts)
