"""`maskray demo`: the whole product in one offline command, small enough for a laptop.

It writes synthetic shapes (a few images and a short video, with COCO ground truth) into
WORKDIR/data, runs a real local job over them with the embedded demo model into WORKDIR/out,
then shows what a user would do next: COCO AP against the ground truth, a SQL query, an
overlay picture (WORKDIR/overlay.png) and the commands to go further. Running it again
regenerates what changed and replaces the previous job's output.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, TextIO

from maskray.jobs.launch import run_job
from maskray.jobs.spec import JobSpec
from maskray.jobs.training.synthetic import MARKER, synthetic_dataset
from maskray.errors import UsageError
from maskray.models.weights import load_weights
from maskray.pipeline.output import sink
from maskray.pipeline.evaluation.coco import evaluate
from maskray.pipeline.render.overlays import render
from maskray.pipeline.output.reader import open_output
from maskray.pipeline.output.results_format import format_table
from maskray.pipeline.text_table import text_table
from maskray.jobs.training.shapes import SyntheticSet

DEMO_MODEL = "demo"
SCORE_THRESHOLD = 0.5
VIDEO_EVERY = 1  # the clip is short: every frame, so the overlay video would play smoothly
SUMMARY_SQL = ("SELECT category, count(*) AS n, round(avg(score), 3) AS mean_score "
               "FROM instances GROUP BY 1 ORDER BY n DESC")
TOP_SQL = ("SELECT regexp_extract(source, '[^/]+$') AS file, frame, instance, category, "
           "round(score, 3) AS score, mask_area FROM instances ORDER BY score DESC, file, frame LIMIT 5")
# The image with the most instances makes the most telling overlay.
OVERLAY_SQL = "SELECT source FROM frames WHERE time IS NULL ORDER BY num_instances DESC, source LIMIT 1"
DATA_LAYOUT = {"images", "videos", "images.json", "videos.json", "ground_truth.json", MARKER}
# (evaluation key, label) in the order a Mask R-CNN reader looks for them.
TASKS = (("segm", "mask"), ("bbox", "box"), ("keypoints", "keypoints"))


@dataclass
class DemoResult:
    exit_code: int  # the job's: 0 done, 3 some inputs recorded as errors
    workdir: Path
    output: Path
    overlay: Optional[Path]
    metrics: dict = field(default_factory=dict)  # pipeline.evaluate's metrics
    seconds: float = 0.0


def run_demo(workdir="maskray-demo", *, images: int = 8, video_frames: int = 24, weights: str = "demo",
             seed: int = 0, echo: Callable[[str], None] = print, stream: Optional[TextIO] = None) -> DemoResult:
    """Generate shapes, run a job with the demo model, print AP, a query and the overlay's path.

    `weights`: `demo` (the shipped model), `none` (random, a dry run of the plumbing) or a
    PATH to a checkpoint of the demo model. `stream`: where the job's progress goes
    (default stderr). Raises UsageError for bad sizes, missing weights or a foreign workdir.
    """
    started = time.monotonic()
    if images < 1:
        raise UsageError(f"--images must be at least 1, got {images}")
    if video_frames < 0:
        raise UsageError(f"--video-frames must be 0 or more, got {video_frames}")
    # Fail before generating anything when the weights cannot load (demo.pt missing, bad PATH).
    load_weights(weights, model=DEMO_MODEL, coco_file=None, seed=seed)

    shown = str(workdir)  # as the user wrote it, for the commands printed at the end
    root = Path(workdir).resolve()
    check_replaceable(root / "out", root / "data")
    video = f"a video of {video_frames} frames" if video_frames else "no video"
    echo(f"maskray demo: {images} shapes images and {video} in {_join(shown, 'data')}")
    data = prepare_data(root / "data", images=images, video_frames=video_frames, seed=seed)

    spec = demo_spec(data, root / "out", weights)
    echo("running: " + submit_command(spec, shown))
    code = run_job(spec, overwrite=True, stream=stream)

    metrics = report_accuracy(str(root / "out"), data, echo)
    report_query(str(root / "out"), echo)
    overlay = render_overlay(str(root / "out"), root / "overlay.png", echo)
    echo("")
    for line in next_steps(shown, data):
        echo(line)
    seconds = time.monotonic() - started
    echo(f"demo finished in {seconds:.0f}s")
    echo(f"look at the frames, masks and tracks in your browser: {view_command(shown)}")
    return DemoResult(code, root, root / "out", overlay, metrics, seconds)


def prepare_data(folder: Path, *, images: int, video_frames: int, seed: int) -> SyntheticSet:
    """The demo's shapes in `folder`: kept when it holds this exact set, else written afresh.

    A folder from another demo size is cleared first, so no stale picture joins the job.
    Anything else already there is refused: the demo only deletes what it wrote.
    """
    wanted = {"images": images, "videos": 1 if video_frames else 0, "frames": video_frames, "seed": seed}
    if folder.exists() and any(folder.iterdir()):
        # Names only a shapes set has (a run interrupted mid-generation has no marker yet).
        if not {entry.name for entry in folder.iterdir()} <= DATA_LAYOUT:
            raise UsageError(f"{folder} holds files maskray demo did not write; choose another --workdir")
        if _read_marker(folder / MARKER) != wanted:
            shutil.rmtree(folder)
    return synthetic_dataset(folder, images=wanted["images"], videos=wanted["videos"],
                             frames=wanted["frames"], seed=seed)


def _read_marker(marker: Path) -> Optional[dict]:
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def demo_spec(data: SyntheticSet, output: Path, weights: str) -> JobSpec:
    """The job the demo runs: the demo model at its own default size over images and video."""
    sources = [str(data.images_dir)] + ([str(data.videos_dir)] if data.videos_dir else [])
    return JobSpec(sources=sources, output=str(output), model=DEMO_MODEL, weights=weights,
                   score_threshold=SCORE_THRESHOLD, every=VIDEO_EVERY if data.videos_dir else None)


def check_replaceable(output: Path, data_folder: Path) -> None:
    """Refuse to overwrite an OUT holding anything but an earlier demo's job over `data_folder`."""
    if not output.exists() or not any(output.iterdir()):
        return
    try:
        previous = sink.read_job(str(output))
    except (OSError, ValueError):  # unreadable: not ours to delete
        previous = None
    sources = ((previous or {}).get("spec") or {}).get("sources") or [""]
    if not all(Path(s).is_relative_to(data_folder) for s in sources):
        raise UsageError(f"{output} holds something other than a maskray demo's output; choose another --workdir")


def submit_command(spec: JobSpec, shown: str) -> str:
    """The `maskray submit` line equivalent to the demo's job, with the user's workdir."""
    sources = [_join(shown, "data", Path(s).name) for s in spec.sources]
    words = ["maskray", "submit", *sources, "--output", _join(shown, "out"), "--model", spec.model,
             "--weights", spec.weights, "--score-threshold", f"{spec.score_threshold:g}"]
    words += ["--every", str(spec.every)] if spec.every else []
    words.append("--overwrite")
    return shlex.join(words)


def report_accuracy(output: str, data: SyntheticSet, echo) -> dict:
    """Prints COCO AP / AP50 / AP75 (percent) of masks, boxes and keypoints; returns the metrics.

    All frames are scored together against the merged ground truth; with a video, the AP of
    the still images and of the video frames alone follow, since they differ in difficulty.
    """
    metrics = evaluate(output, str(data.ground_truth_json)).metrics
    parts = {}
    if data.videos_json is not None:
        parts = {"images AP": evaluate(output, str(data.images_json)).metrics,
                 "video AP": evaluate(output, str(data.videos_json)).metrics}
    gt = json.loads(data.ground_truth_json.read_text())
    video_frames = sum(1 for image in gt["images"] if "frame" in image)
    echo("")
    echo(f"COCO AP against the ground truth: {metrics['images']} frames "
         f"({len(gt['images']) - video_frames} images, {video_frames} video frames), "
         f"{len(gt['annotations'])} true shapes, {metrics['instances']} detections")
    rows, notes = [], []
    for key, label in TASKS:
        values = metrics.get(key)
        if values is None:
            notes.append(f"{label}: not evaluated ({metrics.get('skipped', {}).get(key, 'no result')})")
            continue
        rows.append([label, *(_percent(values[name]) for name in ("AP", "AP50", "AP75")),
                     *(_percent(part.get(key, {}).get("AP", -1)) for part in parts.values())])
    header = ["", "AP", "AP50", "AP75", *parts]
    echo(text_table(header, rows, right=range(1, len(header))))
    for note in notes:
        echo(note)
    tracks = metrics.get("tracks")
    if tracks:  # the video's shapes keep their ids: how well the tracker follows them
        echo(f"video tracks: MOTA {_percent(tracks['MOTA']).strip()}, IDF1 {_percent(tracks['IDF1']).strip()}, "
             f"HOTA {_percent(tracks['HOTA']).strip()} ({tracks['gt_tracks']} shapes, "
             f"{tracks['predicted_tracks']} tracks)")
    return metrics


def _percent(value: float) -> str:
    # COCOeval reports -1 where nothing could be measured (no ground truth of that kind).
    return f"{100 * value:.1f}" if value >= 0 else "n/a"


def report_query(output: str, echo) -> None:
    """Prints two SQL queries over the output and their rows, as `maskray query` would."""
    results = open_output(output)
    for sql in (SUMMARY_SQL, TOP_SQL):
        echo("")
        echo(f"query: {sql}")
        echo(format_table(results.sql(sql)).rstrip("\n"))


def render_overlay(output: str, target: Path, echo) -> Optional[Path]:
    """Draws the image with the most instances to `target`; None when the job read no image."""
    rows = open_output(output).sql(OVERLAY_SQL).to_pylist()
    if not rows:
        return None
    summary = render(output, rows[0]["source"], str(target), min_score=SCORE_THRESHOLD)
    echo("")
    echo(f"overlay: {target} ({summary.instances_drawn} instances on {Path(rows[0]['source']).name})")
    return target


def next_steps(shown: str, data: SyntheticSet) -> list[str]:
    """The commands that take a user further on the demo's output."""
    out = _join(shown, "out")
    gt = _join(shown, "data", data.ground_truth_json.name)
    lines = [
        "go further:",
        f"  maskray status {shlex.quote(out)}",
        f"  maskray query {shlex.quote(out)} " + shlex.quote(
            "SELECT source, frame, category, score FROM instances WHERE score > 0.9"),
        f"  maskray eval {shlex.quote(out)} --gt {shlex.quote(gt)} "
        f"--out {shlex.quote(_join(shown, 'metrics.json'))}",
    ]
    if data.videos_dir is not None:
        video = sorted(data.videos_dir.iterdir())[0].name
        lines.append(f"  maskray render {shlex.quote(out)} --source {shlex.quote(_join(shown, 'data', 'videos', video))} "
                     f"--out {shlex.quote(_join(shown, 'video-masks.mp4'))}")
    return lines


def view_command(shown: str) -> str:
    """The command that opens the viewer on the demo's output."""
    return f"maskray view {shlex.quote(_join(shown, 'out'))}"


def _join(base: str, *parts: str) -> str:
    return str(Path(base, *parts))
