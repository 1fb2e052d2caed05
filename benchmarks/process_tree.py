"""Peak memory and CPU use of a process tree (a command and all it starts), from Linux /proc.

Memory: a thread wakes every `interval` seconds, finds every descendant of the root pid
(through the parent pid in /proc/<pid>/stat, so Ray's raylet, GCS and worker processes are
included) and sums their resident set sizes (VmRSS). The largest sum seen is the tree's peak.
Each process's own high-water mark (VmHWM, kept by the kernel, so no sampling gap) is also
kept, so the peak of a single process (e.g. the Ray actor holding the model) is exact.
A sum of RSS counts shared library pages once per process: it is what `top` would add up,
an upper bound of the physical memory used.

CPU: the tree's own CPU seconds (utime + stime of its processes) against the whole machine's
busy time (/proc/stat) over the same interval; the difference is `background_cpu_share`,
the share of all cores used by other programs while the command ran. A run measured while
that share was high was slowed down by someone else.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

KB_PER_MB = 1024
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass
class ProcessPeak:
    name: str
    peak_kb: int  # VmHWM


@dataclass
class TreePeak:
    tree_peak_mb: float = 0.0
    processes: dict[int, ProcessPeak] = field(default_factory=dict)
    tree_cpu_s: float = 0.0  # CPU seconds used by the tree's processes
    background_cpu_share: float = 0.0  # share of all cores busy outside the tree (0..1)

    def largest(self, count: int = 6) -> list[tuple[str, float]]:
        """The `count` processes with the highest peaks: (name, MB)."""
        ranked = sorted(self.processes.values(), key=lambda p: p.peak_kb, reverse=True)
        return [(p.name, round(p.peak_kb / KB_PER_MB, 1)) for p in ranked[:count]]

    def pid_peak_mb(self, pid: int) -> float:
        """VmHWM of one process of the tree (MB); 0 if it was never seen."""
        found = self.processes.get(pid)
        return found.peak_kb / KB_PER_MB if found else 0.0


class TreeSampler:
    """`with TreeSampler(pid) as sampler: ...`; then `sampler.result` (a TreePeak)."""

    def __init__(self, root_pid: int, interval: float = 0.1):
        self.root = root_pid
        self.interval = interval
        self.result = TreePeak()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)
        self._cpu_ticks: dict[int, int] = {}  # last utime + stime seen per pid
        self._machine_start = _machine_busy_ticks()

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        (busy_now, total_now), (busy_then, total_then) = _machine_busy_ticks(), self._machine_start
        tree = sum(self._cpu_ticks.values())
        self.result.tree_cpu_s = tree / TICKS_PER_S
        # /proc/stat sums all cores, so this is already a share of the whole machine.
        others = (busy_now - busy_then - tree) / max(1, total_now - total_then)
        self.result.background_cpu_share = min(1.0, max(0.0, others))

    def sample(self) -> None:
        total_kb = 0
        for pid in descendants(self.root):
            status = _status(pid)
            if not status:
                continue  # exited meanwhile
            ticks = _cpu_ticks(pid)
            if ticks is not None:
                self._cpu_ticks[pid] = ticks
            total_kb += status.get("VmRSS", 0)
            name = _command_name(pid) or status.get("Name", "?")
            known = self.result.processes.get(pid)
            peak = max(status.get("VmHWM", 0), known.peak_kb if known else 0)
            self.result.processes[pid] = ProcessPeak(name, peak)
        self.result.tree_peak_mb = max(self.result.tree_peak_mb, total_kb / KB_PER_MB)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)
        self.sample()


def descendants(root: int) -> list[int]:
    """`root` and every process below it, from each process's parent pid."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                text = handle.read().decode(errors="replace")
        except OSError:
            continue
        # The command may hold spaces and parentheses: the fields after the last ')' are fixed.
        parent = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _cpu_ticks(pid: int):
    """utime + stime of a process in clock ticks; None once it has exited."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().decode(errors="replace").rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5), after pid and comm


def _machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from the first line of /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user time
    return total - idle, total


def _status(pid: int) -> dict:
    """VmRSS, VmHWM (kB) and Name of a process; {} once it has exited."""
    values: dict = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0])
                elif key == "Name":
                    values[key] = rest.strip()
    except (OSError, ValueError):
        return {}
    return values


def _command_name(pid: int) -> str:
    """The first words of the command line (Ray names its workers `ray::ShardWorker...`)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            parts = handle.read().split(b"\0")
    except OSError:
        return ""
    return " ".join(p.decode(errors="replace") for p in parts[:3] if p)[:120]
