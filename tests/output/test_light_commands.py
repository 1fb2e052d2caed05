"""`query`, `status`, `export` and `view` read outputs without importing torch (or Ray, or pandas,
which pyarrow.dataset would import for nothing: pipeline/output/arrow_import.py): each runs in a
fresh interpreter, as a user runs it, and reports what it had imported when it exited."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

from maskray.pipeline.output.schema import FrameRef
from results_helpers import ellipse, prediction, write_output

# Runs `maskray ARGV` and prints, at exit, whether torch, ray and pandas were imported.
PROBE = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps({m: m in sys.modules for m in ("torch", "ray", "pandas")}), file=sys.stderr))
from maskray.cli import main
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    folder = tmp_path_factory.mktemp("light")
    mask = ellipse(64, 80, 40, 30, 15, 10)
    write_output(str(folder / "out"), [(FrameRef(str(folder / "a.png"), 0, None, 80, 64),
                                        prediction([mask], [1], [0.9], {1: "person"}))])
    return folder


@pytest.mark.parametrize("argv", [
    ["query", "{out}", "SELECT count(*) AS n FROM instances"],
    ["status", "{out}"],
    ["export", "{out}", "{dest}/coco.json", "--format", "coco"],
    ["export", "{out}", "{dest}/cvat", "--format", "cvat"],
    ["export", "{out}", "{dest}/tasks.json", "--format", "label-studio"],
    ["export", "{out}", "{dest}/yolo", "--format", "yolo"],
])
def test_reading_commands_import_neither_torch_nor_ray_nor_pandas(output, argv):
    args = [a.format(out=output / "out", dest=output) for a in argv]
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stderr.strip().splitlines()[-1])
    assert imported == {"torch": False, "ray": False, "pandas": False}, (args, imported)


@pytest.mark.parametrize("query, needs", [
    ("SELECT count(*) FROM instances", False),
    ("SELECT category, count(*) FROM instances WHERE score > 0.5 GROUP BY 1", False),
    ("SELECT count(*) FROM frames f JOIN instances i USING (source, frame)", False),
    ("SELECT * FROM instances", True),
    ("FROM instances", True),  # DuckDB's FROM-first: every column
    ("SELECT i FROM instances i", True),  # the whole row as a struct
    ("SELECT COLUMNS('^t') FROM instances", True),
    ("SELECT \"TRACK_ID\" FROM instances", True),
    ("SELECT * FROM tracks", True),
    ("WITH x AS (SELECT track_id FROM instances) SELECT count(*) FROM x", True),
    ("SELECT category, count(*) AS n FROM instances GROUP BY 1 ORDER BY n", True),  # an alias: assumed to see them
    ("SELECT nonsense(", True),
])
def test_a_query_skips_reading_track_ids_only_when_it_cannot_see_them(query, needs):
    import duckdb

    from maskray.pipeline.output.sql_views import LOCKED_DOWN, needs_track_ids

    assert needs_track_ids(duckdb.connect(config=LOCKED_DOWN), query) is needs


def test_view_serves_its_pages_without_torch_or_ray(output):
    """The viewer's process, after serving every kind of page, has imported neither."""
    process = subprocess.Popen([sys.executable, "-c", PROBE, "view", str(output / "out"), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONUNBUFFERED": "1"})
    try:
        url = None
        for line in process.stdout:
            found = re.search(r"open (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, process.stderr.read()
        base, token = url.split("/?token=")
        source = str(output / "a.png")
        for path, params in (("/", {}), ("/api/config", {}), ("/api/overview", {}), ("/api/gallery", {}),
                             ("/api/gallery", {"where": "mask_area > 1"}), ("/api/frame", {"source": source, "frame": 0}),
                             ("/api/track", {"source": source, "track": 0}), ("/api/image", {"source": source, "frame": 0})):
            query = urllib.parse.urlencode(dict(params, token=token))
            try:
                urllib.request.urlopen(f"{base}{path}?{query}", timeout=60).read()
            except urllib.error.HTTPError as error:
                assert error.code == 404 and path == "/api/image", (path, error.code)  # a.png was never written
        process.send_signal(signal.SIGINT)  # Ctrl+C: the command returns, the probe reports
        _, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert json.loads(errors.strip().splitlines()[-1]) == {"torch": False, "ray": False, "pandas": False}
