"""The scale benchmark: many small files and many videos through `maskray submit --model null`.

Inputs per size (generated once into the cache, then reused; `--size 100` is issue 11's set):

    size   images   short videos (2 s, 128x96)   videos of ~5 MB (640x480, 12 s)
    1x      1,000       10                           1
    10x    10,000      100                           4
    100x  100,000    1,000                          40

Images are 64x48 PNGs with distinct pixels; videos are H.264 with B-frames (libx264), a few
distinct encodes copied under many names (each file is still its own input to maskray).
With `--s3 s3://bucket/prefix` the set is uploaded there too (AWS_* variables name the
endpoint, as for maskray) and the job reads it from there.

Figures per size: listing + planning seconds (submit start to the driver's "planned N
shards" log line: planning streams, so shards run meanwhile), time to the first commit,
driver peak RSS (VmHWM of the submit process), bytes the driver read (`/proc/<pid>/io`
rchar, against the videos' bytes), frames/s, `status` and a `query` count seconds at the
end, and files in OUT. Issue 11's targets: the driver reads under 5% of the videos' bytes,
its RSS at 100x within 2x of 1x, the first commit within 10 s at every size.

    python -m benchmarks.scale --size 1                   # generate and run 1x on local disk
    python -m benchmarks.scale --size 1 10 100            # each size in turn
    python -m benchmarks.scale --size 1 10 --generate-only
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from benchmarks.commands import _environment, maskray_command

SIZES = {1: (1_000, 10, 1), 10: (10_000, 100, 4), 100: (100_000, 1_000, 40)}
DISTINCT_VIDEOS = 10  # encodes per kind; copies fill the rest


def generate(size: int, cache: Path) -> Path:
    """The input folder for `size` (made once; a finished folder carries a `.complete` mark)."""
    images, short_videos, big_videos = SIZES[size]
    root = cache / f"scale-{size}x"
    if (root / ".complete").exists():
        return root
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    _images(root / "images", images)
    shorts = [_encode(cache / "templates" / f"short-{n}.mp4", n, 50, (128, 96)) for n in range(DISTINCT_VIDEOS)]
    bigs = [_encode(cache / "templates" / f"big-{n}.mp4", n, 300, (640, 480), crf=12) for n in range(2)]
    for number in range(short_videos):
        _copy(shorts[number % len(shorts)], root / "videos" / f"short-{number:05d}.mp4")
    for number in range(big_videos):
        _copy(bigs[number % len(bigs)], root / "videos" / f"big-{number:03d}.mp4")
    (root / ".complete").write_text("ok")
    return root


def _images(folder: Path, count: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for number in range(count):
        path = folder / f"{number // 1000:03d}" / f"img-{number:06d}.png"
        if path.exists():
            continue
        path.parent.mkdir(exist_ok=True)
        pixels = np.full((48, 64, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        pixels[number % 48, :, :] = 255  # distinct content per image
        Image.fromarray(pixels).save(path)


def _encode(path: Path, seed: int, frames: int, size: tuple[int, int], crf: int = 28) -> Path:
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    rng = np.random.default_rng(seed)
    width, height = size
    texture = rng.integers(0, 255, (height, width * 2, 3), dtype=np.uint8)
    with av.open(str(partial), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"bf": "3", "g": "50", "crf": str(crf), "preset": "veryfast"}
        stream.codec_context.time_base = Fraction(1, 25)
        for number in range(frames):
            shift = (number * 4) % width
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[:, shift:shift + width]), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = number, Fraction(1, 25)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    partial.replace(path)
    return path


def _copy(source: Path, target: Path) -> None:
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        shutil.copyfile(source, target)


def upload(root: Path, prefix: str) -> str:
    """Copy the input folder under an object-store prefix (skipping what is there already)."""
    from maskray.pipeline import storage

    present = {uri for uri, _ in storage.list_files(prefix)} if storage.exists(prefix) else set()
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            uri = storage.join(prefix, str(path.relative_to(root)))
            if uri not in present:
                storage.write_bytes_atomic(uri, path.read_bytes())
    return prefix


def measure(source: str, output: str, workers: int, timeout: float = 3600) -> dict:
    """One `maskray submit --model null` over `source`; the driver's figures."""
    from maskray.pipeline.output import sink

    command = maskray_command() + ["submit", source, "--output", output, "--model", "null", "--weights", "none",
                                   "--workers", str(workers), "--overwrite"]
    started = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=_environment(), )
    driver = {"rchar": 0, "peak_kb": 0}
    lines, seen = [], {}

    def follow() -> None:  # the log, in a thread, so the sampling below never blocks
        for line in process.stdout:
            lines.append(line)
            if "shards to do" in line:
                seen.setdefault("workers", time.time())
            if line.startswith("maskray: planned "):
                seen.setdefault("planned", time.time())

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    while process.poll() is None and time.time() - started < timeout:
        _sample(process.pid, driver)
        time.sleep(0.1)
    if process.poll() is None:
        process.kill()
    process.wait()
    reader.join(timeout=10)
    if process.returncode not in (0, 3):
        raise RuntimeError(f"maskray submit exited {process.returncode}:\n{''.join(lines)[-3000:]}")
    records = list(sink.read_commits(output).values())
    finished = time.time()
    figures = {
        "planning_s": seen.get("planned", finished) - started,
        "workers_ready_s": seen.get("workers", finished) - started,
        "first_commit_s": min(r.committed_at for r in records) - started,
        "command_s": finished - started,
        "shards": len(records),
        "frames": sum(r.frames for r in records),
        "driver_peak_mb": driver["peak_kb"] / 1024,
        "driver_read_mb": driver["rchar"] / 2**20,
        "videos_mb": _video_bytes(source) / 2**20,
    }
    figures["frames_per_s"] = figures["frames"] / max(1e-9, figures["command_s"])
    figures["status_s"] = _timed(maskray_command() + ["status", output])
    figures["query_s"] = _timed(maskray_command() + ["query", output, "SELECT count(*) FROM frames"])
    figures["files_in_out"] = _count_files(output)
    return figures


def _sample(pid: int, driver: dict) -> None:
    try:
        with open(f"/proc/{pid}/io") as stream:
            driver["rchar"] = int(next(line for line in stream if line.startswith("rchar")).split()[1])
        with open(f"/proc/{pid}/status") as stream:
            driver["peak_kb"] = int(next(line for line in stream if line.startswith("VmHWM")).split()[1])
    except (OSError, StopIteration, ValueError):
        pass


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_environment(), check=False)
    return time.perf_counter() - started


def _video_bytes(source: str) -> int:
    from maskray.pipeline.inputs.listing import list_media

    return sum(item.size for item in list_media([source]) if item.kind == "video")


def _count_files(output: str) -> int:
    from maskray.pipeline import storage

    return len(storage.list_files(output))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs="+", choices=sorted(SIZES), default=[1])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "maskray-bench-cache")
    parser.add_argument("--s3", help="also upload the inputs under this s3:// prefix and read them from there")
    parser.add_argument("--output", help="OUT for the jobs (default: a folder under --cache)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--generate-only", action="store_true")
    args = parser.parse_args(argv)
    results = {}
    for size in args.size:
        root = generate(size, args.cache)
        source = upload(root, f"{args.s3.rstrip('/')}/scale-{size}x") if args.s3 else str(root)
        print(f"{size}x inputs: {source}", flush=True)
        if args.generate_only:
            continue
        output = args.output or str(args.cache / f"out-{size}x")
        results[f"{size}x"] = measure(source, output, args.workers)
        print(json.dumps({f"{size}x": results[f"{size}x"]}, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
