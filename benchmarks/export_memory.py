"""Peak memory of `maskray export` as the job grows: does it stay flat?

Writes an OUT of N instances directly as Parquet parts (no model, no Ray): pictures of
160x120, 10 instances each (random ellipses, real COCO RLE masks), 200 pictures a shard, so
10^5 instances are 10^4 pictures in 50 shards. Then runs `maskray export OUT DEST --format F`
in a fresh process per size and format and prints its peak RSS (ru_maxrss of that process)
and time. Memory that follows the job would show as 10^5 needing far more than 10^4.

    python -m benchmarks.export_memory                                  # 10^4 and 10^5, every format
    python -m benchmarks.export_memory --instances 10000 --format cvat
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask

from maskray.models.frame_prediction import FramePrediction
from maskray.pipeline import storage
from maskray.pipeline.output import layout, sink
from maskray.pipeline.output.schema import FrameRef, predictions_to_batches

H, W = 120, 160
PER_FRAME = 10
FRAMES_PER_SHARD = 200
FORMATS = ["coco", "cvat", "label-studio", "yolo"]
NAMES = {1: "person", 3: "car", 18: "dog"}


def frame_prediction(rng: np.random.Generator) -> FramePrediction:
    yy, xx = np.mgrid[:H, :W]
    masks, boxes = [], []
    for _ in range(PER_FRAME):
        cx, cy, rx, ry = rng.uniform(20, W - 20), rng.uniform(20, H - 20), rng.uniform(4, 18), rng.uniform(4, 18)
        mask = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(np.uint8)
        ys, xs = np.nonzero(mask)
        masks.append(coco_mask.encode(np.asfortranarray(mask))["counts"].decode())
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    ids = rng.choice(list(NAMES), PER_FRAME).astype(np.int32)
    return FramePrediction(H, W, np.array(boxes, np.float32), np.sort(rng.uniform(0.5, 1, PER_FRAME))[::-1].astype(np.float32),
                           ids, [NAMES[int(i)] for i in ids], masks, np.full(PER_FRAME, 100, np.int64), None)


def generate(output: Path, instances: int) -> Path:
    """OUT with `instances` instances (made once; a finished one carries `_SUCCESS`)."""
    if storage.exists(layout.success_uri(str(output))):
        return output
    shutil.rmtree(output, ignore_errors=True)
    rng = np.random.default_rng(0)
    sink.write_job(str(output), {"job_id": "bench", "model": "maskrcnn_resnet50_fpn", "weights_id": "none"})
    frames = instances // PER_FRAME
    shards = 0
    for start in range(0, frames, FRAMES_PER_SHARD):
        refs = [FrameRef(f"/data/pictures/{n // 1000:03d}/{n:07d}.png", 0, None, W, H)
                for n in range(start, min(frames, start + FRAMES_PER_SHARD))]
        shard = f"s{shards:05d}"
        batch, frame_rows = predictions_to_batches(refs, [frame_prediction(rng) for _ in refs], shard)
        writer = sink.OutputSink(str(output), "bench").shard_writer(shard, 1, {})
        writer.add(batch, frame_rows)
        writer.commit(frames=len(refs), frames_ok=len(refs), errors=0, instances=batch.num_rows)
        shards += 1
    sink.write_success(str(output), {"shards": shards, "job_id": "bench"})
    return output


# `maskray ARGV`, then its own peak RSS (VmHWM: of this process image only; ru_maxrss would also
# count the generating parent's memory, which a forked child inherits) as the last stderr line.
PROBE = """
import atexit, sys
def peak():
    with open("/proc/self/status") as status:
        print(next(line for line in status if line.startswith("VmHWM")).split()[1], file=sys.stderr)
atexit.register(peak)
from maskray.cli import main
main(sys.argv[1:])
"""


def measure(output: Path, dest: Path, fmt: str) -> dict:
    """Peak RSS (MB) and seconds of one `maskray export` in its own process."""
    shutil.rmtree(dest, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, "export", str(output), str(dest), "--format", fmt],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"export --format {fmt} failed: {done.stderr[-2000:]}")
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return {"peak_rss_mb": round(peak_kb / 1024, 1), "seconds": round(seconds, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--format", dest="formats", nargs="+", default=FORMATS, choices=FORMATS)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "maskray-export-bench")
    args = parser.parse_args(argv)
    results = {}
    for count in args.instances:
        started = time.perf_counter()
        output = generate(args.cache / f"out-{count}", count)
        print(f"{count} instances: {output} ({time.perf_counter() - started:.1f} s)", flush=True)
        for fmt in args.formats:
            results.setdefault(fmt, {})[count] = figures = measure(output, args.cache / f"dest-{fmt}", fmt)
            print(json.dumps({"format": fmt, "instances": count, **figures}), flush=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
