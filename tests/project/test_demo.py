"""`maskray demo` as a user runs it: the shipped demo model, a real local job, AP, a query, a picture.

The run uses the real `--weights demo` (models/weights/demo.pt); it never falls back to random
weights, so a missing or untrained demo model fails here instead of passing on a stub.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.ray  # every test here runs a real local Ray

REPO = Path(__file__).resolve().parents[2]


def run_demo(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    # A fresh process: the demo starts (and stops) its own embedded Ray, as a user's first run does.
    return subprocess.run([sys.executable, "-m", "maskray", "demo", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def ap_row(stdout: str, label: str) -> list[float]:
    """The percentages on the line of `label` (mask, box or keypoints): AP, AP50, AP75,
    then the AP of the still images and of the video frames alone."""
    match = re.search(rf"^{label}((?:\s+[\d.]+)+)\s*$", stdout, re.MULTILINE)
    assert match, f"no {label} AP row in:\n{stdout}"
    return [float(value) for value in match.group(1).split()]


@pytest.mark.timeout(300)
def test_demo_runs_the_shipped_model_and_shows_ap_query_and_overlay(tmp_path):
    workdir = tmp_path / "demo"
    result = run_demo("--workdir", str(workdir), "--images", "3", "--video-frames", "8")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout

    # The job really ran over both the images and the video frames, and finished.
    assert (workdir / "out" / "_SUCCESS").is_file()
    assert "11 frames (3 images, 8 video frames)" in out
    # A trained demo model finds the shapes: its masks score well against the ground truth.
    mask, box, keypoints = ap_row(out, "mask"), ap_row(out, "box"), ap_row(out, "keypoints")
    assert len(mask) == len(box) == len(keypoints) == 5, out
    mask_ap, mask_ap50, _, mask_ap_images, mask_ap_video = mask
    assert mask_ap50 >= 50.0 and mask_ap >= 25.0, out
    assert mask_ap_images >= 50.0 and mask_ap_video > 0, out
    assert box[0] > 0 and keypoints[0] > 0, out

    # The query's rows name shape categories with counts and mean scores of at least 0.5.
    rows = re.findall(r"^(circle|square|triangle)\s+(\d+)\s+([\d.]+)\s*$", out, re.MULTILINE)
    assert rows, out
    assert all(int(n) > 0 and float(score) >= 0.5 for _, n, score in rows)
    assert re.search(r"^shapes_\S+\s+\d+\s+\d+\s+(circle|square|triangle)\s+[\d.]+\s+\d+\s*$", out, re.MULTILINE), out

    # The overlay is a decodable picture of a generated image, with masks drawn over it.
    match = re.search(r"^overlay: (\S+) \((\d+) instances on (\S+)\)$", out, re.MULTILINE)
    assert match and Path(match.group(1)) == workdir / "overlay.png", out
    assert int(match.group(2)) > 0
    with Image.open(workdir / "overlay.png") as picture:
        overlay = np.asarray(picture.convert("RGB"))
    source = np.asarray(Image.open(workdir / "data" / "images" / match.group(3)).convert("RGB"))
    assert overlay.shape == source.shape
    changed = np.abs(overlay.astype(int) - source.astype(int)).sum(axis=2) > 30
    assert changed.mean() > 0.02  # masks and boxes cover a visible part of the picture

    # It tells the user where to go next, on this very output.
    assert f"maskray query {workdir / 'out'}" in out
    assert f"maskray eval {workdir / 'out'} --gt {workdir / 'data' / 'ground_truth.json'}" in out


def test_demo_refuses_a_workdir_holding_something_else(tmp_path):
    precious = tmp_path / "out" / "results.csv"
    precious.parent.mkdir()
    precious.write_text("a,b\n1,2\n")
    result = run_demo("--workdir", str(tmp_path), "--weights", "none", timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "choose another --workdir" in result.stderr
    assert precious.read_text() == "a,b\n1,2\n" and not (tmp_path / "data").exists()
