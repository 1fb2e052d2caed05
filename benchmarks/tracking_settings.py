"""What each tracker setting does: the demo model's detections of the tuning (or held-out)
scene videos, tracked again with one setting changed at a time, scored with TrackEval.

    python -m benchmarks.tracking_settings --set tuning --json /tmp/maskray-tracker-settings.json

The model runs once per video (sampled at `--fps`, as benchmarks/tracking.py samples them); the
tracker then runs over the kept predictions once per variant, as one shard would, and its
tracks are scored by the same TrackEval metrics `maskray eval` reports
(pipeline/coco/track_metrics.py), instances of unconfirmed tracks counting as untracked, as in a
job's output. This is how the defaults were chosen, on the tuning seeds only.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.tracking import HELD_OUT_SEEDS, TUNING_SEEDS
from maskray.jobs.training.shape_scenes import draw_scene
from maskray.jobs.training.shapes import generate_shapes
from maskray.models.predictor import Predictor, PredictorConfig
from maskray.pipeline.coco.track_metrics import Sequence, track_metrics
from maskray.pipeline.tracking.settings import TrackerConfig
from maskray.pipeline.tracking.tracker import Detections, Tracker

# One change at a time from the defaults: what each setting is worth on these videos.
VARIANTS = {
    "defaults": {},
    "appearance off (no embeddings)": {"embeddings": False},
    "no re-identification (reid_similarity 2)": {"reid_similarity": 2.0},
    "reid_similarity 0.8": {"reid_similarity": 0.8},
    "appearance_weight 0": {"appearance_weight": 0.0},
    "confirm_hits 1 (every detection a track)": {"confirm_hits": 1},
    "confirm_hits 3": {"confirm_hits": 3},
    "new_track_score 0.7": {"new_track_score": 0.7},
    "max_gap 10": {"max_gap": 10},
    "match_iou 0.3": {"match_iou": 0.3},
    "high_score 0.7": {"high_score": 0.7},
    "reid_reach 8": {"reid_reach": 8.0},
    "before issue 22 (ByteTrack only)": {"embeddings": False, "confirm_hits": 1, "new_track_score": 0.0,
                                          "reid_similarity": 2.0, "high_score": 0.7, "match_iou": 0.3,
                                          "max_gap": 10},
}


def predicted_videos(folder: Path, seeds, fps: float) -> list[dict]:
    """Per seed: the ground truth and the demo model's predictions of the sampled frames."""
    import av

    predictor = Predictor(PredictorConfig(model="demo", weights="demo", score_threshold=0.5))
    videos = []
    for seed in seeds:
        scene = draw_scene(np.random.default_rng(seed))
        made = generate_shapes(folder / f"seed-{seed}", images=0, videos=1, seed=seed, scene=scene)
        every = max(1, round(scene.fps / fps))
        with av.open(str(made.videos_dir / "shapes_video_000.mp4")) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        chosen = list(range(0, len(frames), every))
        predictions = {}
        for start in range(0, len(chosen), 8):
            batch = chosen[start:start + 8]
            predictions.update(zip(batch, predictor.predict([frames[i] for i in batch])))
        videos.append({"name": f"scene_{seed}", "truth": json.loads(made.videos_json.read_text()),
                       "predictions": predictions})
    return videos


def score(video: dict, settings: dict) -> dict:
    settings = dict(settings)
    with_embeddings = settings.pop("embeddings", True)
    tracker = Tracker(TrackerConfig(**settings))
    sequence = Sequence(video["name"])
    images = {image["id"]: image for image in video["truth"]["images"]}
    for annotation in video["truth"]["annotations"]:
        frame = images[annotation["image_id"]]["frame"]
        if frame in video["predictions"]:
            rle = annotation["segmentation"]
            sequence.add_gt(frame, annotation["track_id"], {"size": rle["size"], "counts": rle["counts"].encode()})
    tracked = []
    for frame in sorted(video["predictions"]):
        p = video["predictions"][frame]
        sequence.gt.setdefault(frame, ([], []))
        numbers = tracker.update(Detections(p.boxes, p.scores, p.category_ids, p.masks_rle, p.height, p.width,
                                            p.embeddings if with_embeddings else None))
        tracked.append((frame, p, numbers))
    for frame, p, numbers in tracked:
        for counts, number in zip(p.masks_rle, numbers):
            if int(number) in tracker.confirmed:
                sequence.add_prediction(frame, int(number), {"size": [p.height, p.width], "counts": counts.encode()})
    return track_metrics([sequence])


def sweep(videos: list[dict]) -> dict:
    report = {}
    for name, change in VARIANTS.items():
        scores = [score(video, change) for video in videos]
        report[name] = {key: round(float(np.mean([s[key] for s in scores])), 4) for key in ("IDF1", "MOTA", "HOTA")}
        report[name]["predicted_tracks"] = int(sum(s["predicted_tracks"] for s in scores))
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("tuning", "held-out"), default="tuning")
    parser.add_argument("--fps", type=float, default=3.0)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)
    seeds = TUNING_SEEDS if args.set == "tuning" else HELD_OUT_SEEDS
    with tempfile.TemporaryDirectory(prefix="maskray-tracker-settings-") as folder:
        videos = predicted_videos(Path(folder), seeds, args.fps)
    report = {"set": args.set, "seeds": list(seeds), "fps": args.fps, "defaults": TrackerConfig().to_dict(),
              "mean_over_videos": sweep(videos)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
