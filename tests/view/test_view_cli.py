"""`maskray view` without Ray: bad outputs and ports give one line and exit 2; a known output's
pages hold exactly its instances, with masks; a source that is gone gives a note, not a crash."""

from __future__ import annotations

import io
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from maskray.pipeline.output.schema import FrameRef
from maskray.pipeline.output import sink
from results_helpers import ellipse, prediction, rectangle, write_output, write_shard
from view_server import Viewer

REPO = Path(__file__).resolve().parents[2]
NAMES = {1: "person", 3: "car"}


def run_view(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskray", "view", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_a_folder_without_an_output_is_a_usage_error(tmp_path):
    done = run_view(str(tmp_path / "nothing"), "--port", "0")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no output at" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_in_use_is_a_usage_error(tmp_path):
    out = known_output(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = run_view(str(out), "--port", str(taken.getsockname()[1]))
    assert done.returncode == 2
    assert "cannot listen on 127.0.0.1" in done.stderr and "Traceback" not in done.stderr


def test_ctrl_c_or_sigterm_stops_it_at_once_with_exit_0(tmp_path):
    """The viewer leaves on SIGINT and SIGTERM alike, after serving requests from its threads."""
    out = known_output(tmp_path)
    for number in (signal.SIGINT, signal.SIGTERM):
        process = subprocess.Popen([sys.executable, "-m", "maskray", "view", str(out), "--port", "0"], cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = next(found.group(1) for line in process.stdout if (found := re.search(r"open (http://\S+)", line)))
            no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            for _ in range(8):  # requests that start the server's threads
                no_proxy.open(url.replace("/?token=", "/api/overview?token="), timeout=60).read()
            process.send_signal(number)
            _, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0 and "Traceback" not in err, (number, err)


def known_frames(tmp_path: Path) -> list:
    """Two images on disk (one later deleted by a test) with known instances."""
    frames = []
    for index, shapes in enumerate([[("rect", 3, 0.9), ("ellipse", 1, 0.8)], [("ellipse", 1, 0.95)]]):
        path = tmp_path / f"image{index}.png"
        Image.fromarray(np.full((48, 64, 3), 40 * (index + 1), np.uint8)).save(path)
        masks = [rectangle(48, 64, 5, 5, 30, 20) if kind == "rect" else ellipse(48, 64, 40, 30, 10, 8)
                 for kind, _, _ in shapes]
        frames.append((FrameRef(str(path), 0, None, 64, 48),
                       prediction(masks, [c for _, c, _ in shapes], [s for _, _, s in shapes], NAMES)))
    return frames


def known_output(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    write_output(str(out), known_frames(tmp_path), shard_size=1)
    return out


def test_pages_hold_the_outputs_instances_and_a_gone_source_gets_a_note(tmp_path):
    out = known_output(tmp_path)
    viewer = Viewer(str(out))
    try:
        gallery = viewer.api("gallery")
        assert [(Path(f["source"]).name, f["matches"]) for f in gallery["frames"]] == [("image1.png", 1), ("image0.png", 2)]
        cars = viewer.api("gallery", category="car")["frames"]
        assert len(cars) == 1 and [i["category"] for i in cars[0]["instances"]] == ["car"]
        assert cars[0]["instances"][0]["mask_rle"]  # the page gets the mask to draw
        assert viewer.api("gallery", where="mask_area > 300")["frames"][0]["matches"] == 1
        status, body = viewer.get("/api/gallery", where="no_such_column > 1")
        assert status == 400 and json.loads(body)["error"].startswith("query failed")
        frame = viewer.api("frame", source=str(tmp_path / "image0.png"), frame=0)
        assert [i["category"] for i in frame["instances"]] == ["car", "person"]
        status, body = viewer.get("/api/image", source=str(tmp_path / "image0.png"), frame=0)
        assert status == 200 and body == (tmp_path / "image0.png").read_bytes()  # a plain image: sent as stored
        status, body = viewer.get("/api/image", source=str(tmp_path / "image0.png"), frame=0, max=32)
        assert status == 200 and body[:2] == b"\xff\xd8"  # a thumbnail: a JPEG
        assert Image.open(io.BytesIO(body)).size == (32, 24)
        (tmp_path / "image1.png").unlink()
        status, body = viewer.get("/api/image", source=str(tmp_path / "image1.png"), frame=0)
        assert status == 404 and json.loads(body)["missing"] is True
        assert viewer.api("overview")["totals"]["instances"] == 3
    finally:
        viewer.close()


def test_the_pages_follow_a_job_that_is_still_committing(tmp_path):
    frames = known_frames(tmp_path)
    out = str(tmp_path / "running")
    sink.write_job(out, {"job_id": "test-job", "model": "known-instances", "weights_id": "none"})
    write_shard(out, "s0000", frames[:1])
    viewer = Viewer(out)
    try:
        assert viewer.api("overview")["totals"]["frames"] == 1
        assert len(viewer.api("gallery")["frames"]) == 1
        assert len(viewer.api("gallery", category="person")["frames"]) == 1  # a filter's frames, kept for paging
        write_shard(out, "s0001", frames[1:])  # a shard commits while the viewer is open
        deadline = time.monotonic() + 60
        while viewer.api("overview")["totals"]["frames"] != 2:
            assert time.monotonic() < deadline, "the viewer never saw the new commit"
            time.sleep(0.5)
        assert len(viewer.api("gallery")["frames"]) == 2
        # The filter's kept frames belonged to the older snapshot: found anew, with the new frame.
        persons = viewer.api("gallery", category="person")["frames"]
        assert [Path(f["source"]).name for f in persons] == ["image1.png", "image0.png"]
        assert all(i["mask_rle"] for f in persons for i in f["instances"])
    finally:
        viewer.close()


def test_pages_stay_the_same_when_the_output_is_compacted_while_open(tmp_path):
    """`maskray compact` merges the parts (and deletes the old ones) under an open viewer: the
    next pages, masks included, are what they were."""
    out = known_output(tmp_path)  # one part per image
    viewer = Viewer(str(out))
    try:
        before = {"gallery": viewer.api("gallery"), "cars": viewer.api("gallery", category="car"),
                  "frame": viewer.api("frame", source=str(tmp_path / "image0.png"), frame=0)}
        assert all(i["mask_rle"] for f in before["gallery"]["frames"] for i in f["instances"])
        old_parts = sorted((out / "instances").glob("*.parquet"))
        done = subprocess.run([sys.executable, "-m", "maskray", "compact", str(out)], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert not any(part.exists() for part in old_parts)  # the parts the viewer had open are gone
        after = {"gallery": viewer.api("gallery"), "cars": viewer.api("gallery", category="car"),
                 "frame": viewer.api("frame", source=str(tmp_path / "image0.png"), frame=0)}
        assert after == before
    finally:
        viewer.close()
