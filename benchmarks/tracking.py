"""Tracking quality and cost on videos the tracker was not tuned on, and on `maskray demo`'s.

    python -m benchmarks.tracking --json /tmp/maskray-tracking.json          # held-out set
    python -m benchmarks.tracking --set tuning                               # the set to tune on

Three measurements, each a real job with the shipped demo model, scored by the evaluation
`maskray eval` runs (pipeline/evaluation/coco.py, TrackEval's MOTA / IDF1 / HOTA):
- `demo`: the video `maskray demo` makes (seed 0, 24 frames, every frame), as the demo runs it;
- `held_out`: one video per seed of HELD_OUT_SEEDS, each a random `Scene`
  (jobs/training/shape_scenes.py: 1-20 s, 10-60 frames/s, keyframes every 0.2-10 s, crossing,
  occlusion, leaving and coming back, stops, look-alikes, shake, flicker), sampled at
  `--fps` frames per second, as one shard per video and as segments of 1 s (where keyframes
  allow); the mean over videos of each metric, and each video's IDF1;
- the tracker's share of the workers' time (commit records carry `tracker_s`).
Defaults of the tracker were tuned on TUNING_SEEDS only; HELD_OUT_SEEDS are fixed here so
that nobody tunes on them. Everything is seeded: the same command gives the same numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from maskray.jobs.launch import run_job
from maskray.jobs.spec import JobSpec
from maskray.jobs.training.shape_scenes import draw_scene
from maskray.jobs.training.shapes import generate_shapes
from maskray.jobs.training.synthetic import synthetic_dataset
from maskray.pipeline.coco.track_metrics import evaluate_tracks
from maskray.pipeline.evaluation.coco import evaluate
from maskray.pipeline.output.reader import open_output

TUNING_SEEDS = tuple(range(101, 107))
HELD_OUT_SEEDS = tuple(range(9001, 9007))  # fixed: never tune on these
METRICS = ("IDF1", "MOTA", "HOTA")


def scene_videos(folder: Path, seeds) -> tuple[Path, Path]:
    """One scene video per seed in folder/videos (scene_<seed>.mp4) and their ground truth
    in one COCO file; returns (videos folder, ground truth file)."""
    videos = folder / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    merged = {"images": [], "annotations": [], "categories": []}
    for seed in seeds:
        made = generate_shapes(folder / f"seed-{seed}", images=0, videos=1, seed=seed,
                               scene=draw_scene(np.random.default_rng(seed)))
        name = f"scene_{seed}.mp4"
        (made.videos_dir / "shapes_video_000.mp4").rename(videos / name)
        truth = json.loads(made.videos_json.read_text())
        merged["categories"] = truth["categories"]
        renumber = {}
        for image in truth["images"]:
            renumber[image["id"]] = len(merged["images"]) + 1
            merged["images"].append(dict(image, id=renumber[image["id"]], file_name=name, source=name))
        for annotation in truth["annotations"]:
            merged["annotations"].append(dict(annotation, id=len(merged["annotations"]) + 1,
                                              image_id=renumber[annotation["image_id"]]))
    truth_file = folder / "scenes.json"
    truth_file.write_text(json.dumps(merged))
    return videos, truth_file


def run(videos: Path, truth: Path, out: Path, *, workers: int, segment_seconds: float, **sampling) -> dict:
    """A job over `videos`, its track metrics (all videos together, and the mean per video)."""
    spec = JobSpec([str(videos)], str(out), model="demo", weights="demo", score_threshold=0.5,
                   segment_seconds=segment_seconds, workers=workers, **sampling)
    began = time.monotonic()
    run_job(spec, overwrite=True, stream=io.StringIO())
    wall = time.monotonic() - began
    output = open_output(str(out))
    commits = output.commits.values()
    worker_s = sum(r.timings.get("total_s", 0.0) for r in commits)
    tracker_s = sum((r.tracks or {}).get("tracker_s", 0.0) for r in commits)
    overall = evaluate(str(out), str(truth), tasks=["segm"]).metrics["tracks"]
    per_video = _per_video(output, json.loads(truth.read_text()))
    return {
        "shards": len(commits), "wall_s": round(wall, 1),
        "all_videos": {k: round(overall[k], 4) for k in METRICS + ("IDSW",)},
        "mean": {k: round(float(np.mean([m[k] for m in per_video.values()])), 4) for k in METRICS},
        "IDF1_per_video": {name: round(m["IDF1"], 4) for name, m in per_video.items()},
        "gt_tracks": overall["gt_tracks"], "predicted_tracks": overall["predicted_tracks"],
        "tracker_share_of_worker_time": round(tracker_s / worker_s, 5) if worker_s else None,
    }


def _per_video(output, truth: dict) -> dict:
    images_of: dict[str, set] = {}
    for image in truth["images"]:
        images_of.setdefault(image["source"], set()).add(image["id"])
    scores = {}
    for name, ids in sorted(images_of.items()):
        subset = dict(truth, images=[i for i in truth["images"] if i["id"] in ids],
                      annotations=[a for a in truth["annotations"] if a["image_id"] in ids])
        metrics = evaluate_tracks(output, subset)
        if metrics is not None:
            scores[name] = metrics
    return scores


def measure(workdir: Path, *, seeds, fps: float, workers: int) -> dict:
    demo = synthetic_dataset(workdir / "demo", images=8, videos=1, frames=24, seed=0)
    report = {"seeds": list(seeds), "fps": fps,
              "demo": run(demo.videos_dir, demo.videos_json, workdir / "out-demo", workers=1,
                          segment_seconds=3600.0, every=1)}
    videos, truth = scene_videos(workdir / "scenes", seeds)
    for name, segment_seconds in (("one_shard", 3600.0), ("segments_1s", 1.0)):
        report[name] = run(videos, truth, workdir / f"out-{name}", workers=workers,
                           segment_seconds=segment_seconds, fps=fps)
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("held-out", "tuning"), default="held-out",
                        help="held-out: the fixed seeds nobody tunes on; tuning: the seeds to tune on")
    parser.add_argument("--fps", type=float, default=3.0, help="frames per second processed of each scene video")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)
    seeds = HELD_OUT_SEEDS if args.set == "held-out" else TUNING_SEEDS
    with tempfile.TemporaryDirectory(prefix="maskray-tracking-") as folder:
        report = measure(Path(folder), seeds=seeds, fps=args.fps, workers=args.workers)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
