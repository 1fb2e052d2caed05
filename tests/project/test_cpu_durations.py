"""`--cpu-durations`: a test that keeps a core busy is reported with about that much CPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).parents[1]


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads Linux's /proc/stat")
def test_a_busy_test_is_reported_with_its_cpu_seconds(tmp_path):
    (tmp_path / "test_busy.py").write_text(textwrap.dedent("""
        import time

        def test_busy():
            end = time.process_time() + 1.0
            while time.process_time() < end:
                pass

        def test_idle():
            time.sleep(1.0)
    """))
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "cpu_durations", "-p", "no:cacheprovider",
                           "--cpu-durations", "2", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    found = re.findall(r"^\s*([\d.]+)s cpu\s+([\d.]+)s wall\s+\S+::(\w+)$", done.stdout, re.M)
    assert [name for _, _, name in found] == ["test_busy", "test_idle"], done.stdout[-2000:]  # most CPU first
    rows = {name: (float(cpu), float(wall)) for cpu, wall, name in found}
    assert rows["test_busy"][0] >= 0.9 and rows["test_idle"][1] >= 1.0
    assert re.search(r"CPU: \d+ s busy over \d+ s of tests", done.stdout)
