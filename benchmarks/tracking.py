"""Tracking quality and cost: the demo model over synthetic shapes videos, one shard per video
against segments of 1 s, scored with MOTA / IDF1 / HOTA (TrackEval) against the shapes'
ground-truth identities; and the tracker's share of the workers' time (commit records).

    python -m benchmarks.tracking --videos 4 --seconds 3 --json /tmp/maskray-tracking.json

The videos are written at 25 frames/s with a keyframe every 25 frames, so a 1 s segment is
possible (segments start on keyframes). Everything is seeded: the same command gives the
same numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

from maskray.jobs.launch import run_job
from maskray.jobs.spec import JobSpec
from maskray.jobs.training.shapes import generate_shapes
from maskray.pipeline.evaluation.coco import evaluate
from maskray.pipeline.output.reader import open_output

FPS = 25


def measure(workdir: Path, *, videos: int, seconds: float, every: int, workers: int, seed: int) -> dict:
    data = generate_shapes(workdir / "data", images=0, videos=videos, frames=int(seconds * FPS),
                           seed=seed, fps=FPS)
    report = {"videos": videos, "frames_per_video": int(seconds * FPS), "every": every, "runs": {}}
    for name, segment_seconds in (("one_shard", 3600.0), ("segments_1s", 1.0)):
        out = workdir / f"out-{name}"
        spec = JobSpec([str(data.videos_dir)], str(out), model="demo", weights="demo", every=every,
                       segment_seconds=segment_seconds, workers=workers)
        began = time.monotonic()
        run_job(spec, overwrite=True, stream=io.StringIO())
        wall = time.monotonic() - began
        commits = open_output(str(out)).commits.values()
        worker_s = sum(r["timings"]["total_s"] for r in commits)
        tracker_s = sum(r.get("tracks", {}).get("tracker_s", 0.0) for r in commits)
        tracks = evaluate(str(out), str(data.videos_json), tasks=["segm"]).metrics["tracks"]
        report["runs"][name] = {
            "shards": len(commits), "wall_s": round(wall, 1), **{k: round(v, 4) if isinstance(v, float) else v
                                                                 for k, v in tracks.items()},
            "tracker_share_of_worker_time": round(tracker_s / worker_s, 5) if worker_s else None,
        }
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="maskray-tracking-") as folder:
        report = measure(Path(folder), videos=args.videos, seconds=args.seconds, every=args.every,
                         workers=args.workers, seed=args.seed)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
