"""`--cpu-durations N`: the N tests that used the most CPU, machine-wide (pytest plugin).

`--durations` says where the suite's wall time goes; on a small machine the suite is bound by
CPU as much as by waits, and most of a Ray test's CPU is spent outside pytest's process (Ray's
daemons, workers, `maskray` subprocesses, joined nodes). So this reads the machine's busy
time (/proc/stat) around each test: run it on an otherwise idle machine, one worker.
"""

from __future__ import annotations

import os
import time

import pytest

_STAT = "/proc/stat"


def pytest_addoption(parser):
    parser.addoption("--cpu-durations", type=int, default=None, metavar="N",
                     help="show the N tests that used the most CPU, machine-wide (Linux; 0: all)")


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (all cores, not idle or iowait)."""
    with open(_STAT) as stream:
        fields = [int(value) for value in stream.readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    config = item.config
    if config.getoption("cpu_durations") is None or not os.path.exists(_STAT):
        yield
        return
    cpu, wall = busy_cpu_seconds(), time.monotonic()
    yield
    config.stash.setdefault(_RESULTS, []).append(
        (busy_cpu_seconds() - cpu, time.monotonic() - wall, item.nodeid))


_RESULTS = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config.stash.get(_RESULTS, None)
    if not results:
        return
    count = config.getoption("cpu_durations")
    results.sort(reverse=True)
    total_cpu, total_wall = sum(r[0] for r in results), sum(r[1] for r in results)
    terminalreporter.write_sep("=", f"CPU: {total_cpu:.0f} s busy over {total_wall:.0f} s of tests"
                               f" ({total_cpu / max(total_wall, 1e-9):.2f} cores)")
    for cpu, wall, nodeid in results[:count or None]:
        terminalreporter.write_line(f"{cpu:7.1f}s cpu {wall:7.1f}s wall  {nodeid}")
