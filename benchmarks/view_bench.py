"""`maskray view` at scale: an output of 10^6 instances, page latencies (p95) and the server's memory.

    python -m benchmarks.view_bench                       # 10^6 instances in /tmp/maskray-view-bench
    python -m benchmarks.view_bench --instances 100000 --requests 100

The output is generated, not inferred: Parquet parts written with the project's schema
(`pipeline/output/schema.py`) through the real sink (`OutputSink`, `ShardWriter`, commit log,
`_SUCCESS`), so the viewer reads what a job writes. Sources: `--images` real JPEG images (the
frame page's picture is read and encoded for those) and videos of `--frames-per-video` frames
that are not on disk (the viewer draws their masks on a blank canvas, as for a source that is
gone). Each instance gets an elliptic mask (RLE from pycocotools) from a pool of shapes.

Then it starts `maskray view OUT --port 0` as a user would, and times, one request at a time:
gallery pages (JSON of 24 frames with their masks' RLE; random filters, sorts and pages), frame
pages (the frame's JSON and its picture), and samples the server's RSS as the requests go.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import requests
from PIL import Image
from pycocotools import mask as coco_mask

from maskray.pipeline import storage
from maskray.pipeline.output import layout, sink
from maskray.pipeline.output.schema import FRAMES_SCHEMA, INSTANCES_SCHEMA

WIDTH, HEIGHT = 1280, 720
CATEGORIES = ["person", "car", "bicycle", "dog", "truck", "bus"]
PER_FRAME = 10
FRAMES_PER_SHARD = 2000
SHAPES = 400


def mask_pool(rng: np.random.Generator) -> list[tuple[str, int, tuple[float, float, float, float]]]:
    """(RLE, area, box) of elliptic masks of assorted sizes and places on a WIDTH x HEIGHT frame."""
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    pool = []
    for _ in range(SHAPES):
        rx, ry = rng.uniform(20, 160), rng.uniform(20, 120)
        cx, cy = rng.uniform(rx, WIDTH - rx), rng.uniform(ry, HEIGHT - ry)
        mask = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(np.uint8)
        rle = coco_mask.encode(np.asfortranarray(mask))["counts"].decode()
        ys, xs = np.nonzero(mask)
        pool.append((rle, int(mask.sum()), (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))))
    return pool


def shard_batches(frames: list[tuple[str, int, float | None]], shard: str, pool, rng) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """The instances and frames rows of one shard: PER_FRAME instances per frame, built column-wise."""
    n = len(frames) * PER_FRAME
    pick = rng.integers(0, len(pool), n)
    scores = np.sort(rng.uniform(0.05, 1.0, (len(frames), PER_FRAME)).astype(np.float32), axis=1)[:, ::-1].ravel()
    category_ids = rng.integers(0, len(CATEGORIES), n).astype(np.int32)
    boxes = np.array([pool[i][2] for i in pick], np.float32)
    is_video = np.array([t is not None for _, _, t in frames])
    tracks = np.where(np.repeat(is_video, PER_FRAME), np.tile(np.arange(PER_FRAME, dtype=np.int32), len(frames)), -1)
    instances = pa.RecordBatch.from_arrays([
        pa.array(np.repeat([s for s, _, _ in frames], PER_FRAME), pa.string()),
        pa.array(np.repeat([f for _, f, _ in frames], PER_FRAME), pa.int64()),
        pa.array(np.repeat([np.nan if t is None else t for _, _, t in frames], PER_FRAME), pa.float64(), from_pandas=True),
        pa.array(np.tile(np.arange(PER_FRAME, dtype=np.int32), len(frames)), pa.int32()),
        pa.array(category_ids + 1, pa.int32()),
        pa.array(np.array(CATEGORIES)[category_ids], pa.string()),
        pa.array(scores, pa.float32()),
        *(pa.array(boxes[:, k], pa.float32()) for k in range(4)),
        pa.array([pool[i][0] for i in pick], pa.string()),
        pa.array([pool[i][1] for i in pick], pa.int64()),
        pa.nulls(n, pa.list_(pa.float32())),
        pa.array(np.full(n, WIDTH, np.int32), pa.int32()),
        pa.array(np.full(n, HEIGHT, np.int32), pa.int32()),
        pa.array([shard] * n, pa.string()),
        pa.array(tracks, pa.int32(), mask=tracks < 0),
    ], schema=INSTANCES_SCHEMA)
    frame_rows = pa.RecordBatch.from_arrays([
        pa.array([s for s, _, _ in frames], pa.string()), pa.array([f for _, f, _ in frames], pa.int64()),
        pa.array([t for _, _, t in frames], pa.float64()), pa.array([WIDTH] * len(frames), pa.int32()),
        pa.array([HEIGHT] * len(frames), pa.int32()), pa.array([PER_FRAME] * len(frames), pa.int32()),
        pa.array(["ok"] * len(frames), pa.string()), pa.nulls(len(frames), pa.string()),
        pa.array([shard] * len(frames), pa.string()),
    ], schema=FRAMES_SCHEMA)
    return instances, frame_rows


def generate(out: Path, instances: int, images: int, frames_per_video: int, seed: int = 0) -> list[str]:
    """Writes the output; returns the image sources (real files beside it)."""
    rng = np.random.default_rng(seed)
    if out.exists():
        shutil.rmtree(out)
    media = out.parent / (out.name + "-media")
    media.mkdir(parents=True, exist_ok=True)
    image_sources = []
    for i in range(images):
        path = media / f"image{i:04d}.jpg"
        if not path.exists():
            pixels = rng.integers(0, 255, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).resize((WIDTH, HEIGHT), Image.BILINEAR).save(path, quality=85)
        image_sources.append(str(path))
    frames: list[tuple[str, int, float | None]] = [(s, 0, None) for s in image_sources]
    video = 0
    while len(frames) * PER_FRAME < instances:
        frames += [(str(media / f"gone/video{video:04d}.mp4"), f, f / 25.0) for f in range(frames_per_video)]
        video += 1
    frames = frames[:instances // PER_FRAME]
    driver = sink.OutputSink(str(out))
    driver.on_write_start(lambda previous: {"job_id": "view-bench", "model": "generated", "weights_id": "none"},
                          overwrite=False, sources=[], lease_ttl_s=600)
    worker = pickle.loads(pickle.dumps(driver))
    pool = mask_pool(rng)
    for start in range(0, len(frames), FRAMES_PER_SHARD):
        shard = f"s{start // FRAMES_PER_SHARD:05d}"
        rows, frame_rows = shard_batches(frames[start:start + FRAMES_PER_SHARD], shard, pool, rng)
        writer = worker.shard_writer(shard, 1, {})
        writer.add(rows, frame_rows)
        driver.record(writer.commit(frames=frame_rows.num_rows, frames_ok=frame_rows.num_rows, errors=0,
                                    instances=rows.num_rows))
    driver.committed()
    driver.on_write_complete({"shards": -(-len(frames) // FRAMES_PER_SHARD)})
    driver.release()
    return image_sources


def start_viewer(out: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "maskray", "view", str(out), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        found = re.search(r"(http://\S+)", line)
        if found:
            return process, found.group(1)
        if not line and process.poll() is not None:
            break
    process.kill()
    raise SystemExit("the viewer did not start")


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far (Linux, in ticks of 10 ms)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="/tmp/maskray-view-bench/out")
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--frames-per-video", type=int, default=500)
    parser.add_argument("--requests", type=int, default=300, help="gallery pages, and as many frame pages")
    parser.add_argument("--reuse", action="store_true", help="keep an output generated before")
    args = parser.parse_args(argv)
    out = Path(args.output)
    load_at_start = os.getloadavg()
    started = time.monotonic()
    if not (args.reuse and storage.exists(layout.success_uri(str(out)))):
        generate(out, args.instances, args.images, args.frames_per_video)
    print(f"output: {out} ({args.instances} instances) ready in {time.monotonic() - started:.1f}s")
    process, url = start_viewer(out)
    base, token = url.split("/?token=")
    rng = random.Random(1)
    session = requests.Session()

    def get(path, **params):
        began = time.perf_counter()
        response = session.get(f"{base}{path}", params=dict(params, token=token), timeout=60)
        response.raise_for_status()
        return time.perf_counter() - began, response

    try:
        get("/api/config")
        images = [s["source"] for s in get("/api/config")[1].json()["sources"] if s["is_image"]]
        gallery, first_of_filter, frame, picture, rss = [], [], [], [], []
        cpu = {"gallery": 0.0, "frame": 0.0}  # the server's CPU seconds spent on each kind of page
        seen = set()
        first_page = get("/api/gallery")[1].json()["frames"]
        for i in range(args.requests):
            filters = rng.choice([{}, {"category": rng.choice(CATEGORIES)}, {"min_score": 0.9},
                                  {"where": "mask_area > 20000"}, {"category": "car", "max_score": 0.5}])
            sort = rng.choice(["score", "instances", "time"])
            used = cpu_s(process.pid)
            elapsed, response = get("/api/gallery", page=rng.randrange(0, 50), sort=sort, **filters)
            cpu["gallery"] += cpu_s(process.pid) - used
            gallery.append(elapsed)
            if (sort, tuple(sorted(filters.items()))) not in seen:  # the server finds this filter's frames anew
                seen.add((sort, tuple(sorted(filters.items()))))
                first_of_filter.append(elapsed)
            shown = response.json()["frames"] or first_page
            chosen = rng.choice(shown)
            if rng.random() < 0.5 and images:  # an image with its picture, as the frame page loads both
                chosen = {"source": rng.choice(images), "frame": 0}
            used = cpu_s(process.pid)
            elapsed, _ = get("/api/frame", source=chosen["source"], frame=chosen["frame"])
            took, response = get("/api/image", source=chosen["source"], frame=chosen["frame"]) \
                if chosen["source"] in images else (0.0, None)
            frame.append(elapsed + took)
            cpu["frame"] += cpu_s(process.pid) - used
            if response is not None:
                picture.append(took)
            if i % max(1, args.requests // 10) == 0 or i == args.requests - 1:
                rss.append(rss_mib(process.pid))
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(f"gallery page (24 frames with masks' RLE): p50 {1000 * statistics.median(gallery):.0f} ms, "
          f"p95 {1000 * p95(gallery):.0f} ms over {len(gallery)} requests; the first page of each filter and sort: "
          f"p50 {1000 * statistics.median(first_of_filter):.0f} ms, max {1000 * max(first_of_filter):.0f} ms "
          f"over {len(first_of_filter)}")
    print(f"frame page (JSON + picture): p50 {1000 * statistics.median(frame):.0f} ms, "
          f"p95 {1000 * p95(frame):.0f} ms over {len(frame)} requests "
          f"(picture alone: p95 {1000 * p95(picture or [0]):.0f} ms over {len(picture)})")
    print(f"server CPU per page (mean): gallery {1000 * cpu['gallery'] / len(gallery):.0f} ms, "
          f"frame {1000 * cpu['frame'] / len(frame):.0f} ms")
    print("server RSS (MiB) over the run: " + " ".join(f"{value:.0f}" for value in rss))
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"(at the start: {' '.join(f'{x:.2f}' for x in load_at_start)}) on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
