"""The fast lane's promise, checked: a test without the `ray` marker starts no Ray.

While each unmarked test runs, a thread watches the process table for Ray's own processes
(`gcs_server`, `raylet`) that descend from this pytest process and are new since the test
began: started in-process by `ray.init`, by a `maskray` subprocess, or by `ray start`. One seen fails that test, so
`pytest -m "not ray"` stays a lane that starts no Ray.
"""

from __future__ import annotations

import os
import threading

import pytest

RAY_PROCESS_NAMES = {"gcs_server", "raylet"}
POLL_S = 0.2


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command name), read from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stream:
                stat = stream.read()
        except OSError:  # gone between listing and reading
            continue
        close = stat.rfind(")")  # the name is in parentheses and may hold spaces
        name = stat[stat.find("(") + 1:close]
        parent = int(stat[close + 2:].split()[1])
        table[int(entry)] = (parent, name)
    return table


def ray_processes_under(root: int) -> set[int]:
    table = process_table()
    found = set()
    for pid, (parent, name) in table.items():
        if name not in RAY_PROCESS_NAMES:
            continue
        for _ in range(64):  # walk up to the root (or init)
            if parent == root:
                found.add(pid)
                break
            if parent <= 1 or parent not in table:
                break
            parent = table[parent][0]
    return found


class RayWatcher(threading.Thread):
    def __init__(self, root: int):
        super().__init__(daemon=True, name="ray-guard")
        self.root = root
        self.already = ray_processes_under(root)  # a module's Ray left by a marked test
        self.seen: set[int] = set()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.seen |= ray_processes_under(self.root)
            self._done.wait(POLL_S)

    def finish(self) -> set[int]:
        self._done.set()
        self.join()
        self.seen |= ray_processes_under(self.root)
        return self.seen - self.already


def _watched(item) -> bool:
    return item.get_closest_marker("ray") is None and os.path.isdir("/proc")


# Around setup too, so a Ray started by a fixture of an unmarked test is caught.
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item):
    if _watched(item):
        item.ray_watcher = RayWatcher(os.getpid())
        item.ray_watcher.start()
    return (yield)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    watcher = getattr(item, "ray_watcher", None)
    if watcher is not None and watcher.finish():
        pytest.fail(f"{item.nodeid} started Ray but is not marked @pytest.mark.ray", pytrace=False)
    return result
