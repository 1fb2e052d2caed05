"""maskray's performance benchmark: one command, every figure of docs/performance.md.

    .venv/bin/python -m benchmarks.run            # the full CPU run (about 10 min on 2 quiet cores)
    .venv/bin/python -m benchmarks.run --quick    # a smoke run of every section (a few min)

Sections (each can be skipped):
  model    the reference (one process: PyAV decode, forward, threshold, pycocotools RLE)
           against `maskray submit` with 1 and N workers, on the same frames and settings
           (profiles.CPU: R50-FPN, random weights, min size 320, score threshold 0, at most 20
           instances), repeats interleaved so background load hits every configuration alike;
  memory   peak memory of a job against one over 10x more frames (streaming, no accumulation);
  ceiling  the `null` model (detects nothing, computes nothing) over a long video: where
           decode, scheduling, Arrow and Parquet top out;
  gpu      profiles.GPU (720p, AMP fp16, batch 8) when CUDA is visible: frames/s per GPU and
           the share of time the GPUs were busy; then the worker class without Ray
           (worker_profile.py) against the model forward alone, with its time split.
It measures the installed maskray (`pip install -e .` of this checkout), prints a report
with the issue's targets and writes every raw measurement as JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import gpu, media
from benchmarks.commands import read_masks, run_reference, run_submit, run_worker_profile
from benchmarks.profiles import CPU, GPU, Profile
from benchmarks.summary import frames_per_s, identical_masks, summarise, table, target_line


def model_section(args, scratch: Path, say) -> dict:
    video, every, profile = media.SAMPLE_VIDEO, args.every, CPU
    names = ["reference"] + [f"maskray {w} worker{'s' * (w > 1)}" for w in args.workers]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    agreement = {}
    for repeat in range(args.repeats):
        say(f"model, repeat {repeat + 1}/{args.repeats}: reference")
        reference = run_reference(video, every, profile, scratch)
        masks = reference.pop("masks")
        runs["reference"].append(reference)
        for name, workers in zip(names[1:], args.workers):
            say(f"model, repeat {repeat + 1}/{args.repeats}: {name}")
            output = scratch / f"model_w{workers}"
            runs[name].append(run_submit(video, every, profile, workers, output))
            if repeat == 0:
                agreement[name] = identical_masks(masks, read_masks(output))
    summaries = {name: summarise(found) for name, found in runs.items()}
    return {"profile": profile.to_dict(), "video": str(video), "every": every,
            "summaries": summaries, "identical_masks": agreement, "runs": runs}


def memory_section(args, scratch: Path, cache: Path, say) -> dict:
    """Small job vs a job over ~10x more frames, each once, same settings and workers.

    The model case keeps each job in one shard (the worker buffers a shard's Parquet until
    its commit, so that is where accumulation would show), and its small job still fills
    a whole batch (4 frames), so both jobs hold the same activations."""
    found = {}
    cases = [("null model", Profile("null", model="null"), media.SAMPLE_VIDEO, 1,
              media.repeated(media.SAMPLE_VIDEO, 10, cache), 1, max(args.workers), [])]
    if not args.quick:
        cases.append((CPU.model, CPU, media.SAMPLE_VIDEO, 63, media.SAMPLE_VIDEO, 6, 1,
                      ["--segment-seconds", "3600"]))
    for name, profile, small_video, small_every, large_video, large_every, workers, extra in cases:
        pair = {}
        for size, video, every in (("small", small_video, small_every), ("large", large_video, large_every)):
            say(f"memory, {name}: {size} job")
            pair[size] = run_submit(video, every, profile, workers,
                                    scratch / f"memory_{profile.name}_{size}", extra=extra)
        pair["frames_ratio"] = pair["large"]["frames"] / pair["small"]["frames"]
        pair["tree_ratio"] = pair["large"]["tree_peak_mb"] / pair["small"]["tree_peak_mb"]
        pair["worker_ratio"] = pair["large"]["worker_peak_mb"] / pair["small"]["worker_peak_mb"]
        pair["workers"] = workers
        found[name] = pair
    return found


def ceiling_section(args, scratch: Path, cache: Path, say) -> dict:
    video = media.repeated(media.SAMPLE_VIDEO, args.null_repeat, cache)
    profile = Profile("null", model="null")
    runs: dict[str, list[dict]] = {}
    for repeat in range(args.repeats):
        for workers in args.workers:
            say(f"ceiling, repeat {repeat + 1}/{args.repeats}: null model, {workers} worker(s)")
            name = f"null {workers} worker{'s' * (workers > 1)}"
            runs.setdefault(name, []).append(
                run_submit(video, 1, profile, workers, scratch / f"null_w{workers}"))
    return {"video": str(video), "summaries": {n: summarise(r) for n, r in runs.items()}, "runs": runs}


def gpu_section(args, scratch: Path, cache: Path, say) -> dict:
    """The GPU profile (run only where CUDA is visible)."""
    devices = gpu.device_names()
    count = len(devices)
    video = media.repeated(media.scaled(media.SAMPLE_VIDEO, 1280, 720, cache), args.gpu_repeat, cache)
    runs: dict[str, dict] = {}
    with gpu.GpuBusySampler() as sampler:
        say("gpu: reference")
        runs["reference"] = run_reference(video, 1, GPU, scratch)
        runs["reference"].pop("masks")
        for workers in sorted({1, count}):
            say(f"gpu: maskray {workers} worker(s), one GPU each")
            runs[f"maskray {workers} GPU"] = run_submit(video, 1, GPU, workers, scratch / f"gpu_w{workers}",
                                                        extra=["--gpus-per-worker", "1"])
    for name, run in runs.items():
        share = sampler.busy_share(run["window_start"], run["window_end"])
        gpus = max(1, run.get("workers", 1))
        run.update(frames_per_s=frames_per_s(run), frames_per_s_per_gpu=frames_per_s(run) / gpus,
                   gpu_busy=share)
    say("gpu: the worker class without Ray, and the model forward alone")
    worker = run_worker_profile(video, GPU, scratch / "gpu_worker")
    return {"profile": GPU.to_dict(), "video": str(video), "gpus": count,
            "device": devices[0], "runs": runs, "worker": worker}


def report(results: dict) -> list[str]:
    lines = [f"maskray benchmark, {results['machine']['cpus']} CPUs, load average "
             f"{results['machine']['load_before']} before / {results['machine']['load_after']} after"]
    if "model" in results:
        model = results["model"]
        summaries = model["summaries"]
        ref_fps = summaries["reference"]["frames_per_s"]
        lines += [f"model: {model['profile']['model']}, min size {model['profile']['min_size']}, "
                  f"{summaries['reference']['frames']} frames of {Path(model['video']).name} "
                  f"(every {model['every']}th), medians of {summaries['reference']['repeats']}; overhead: "
                  + ", ".join(f"{n} outside {s['timed']}" for n, s in summaries.items())]
        lines += table(list(summaries.items()), ref_fps)
        for name, agree in model["identical_masks"].items():
            lines.append(f"  {name}: {agree['same_position']}/{agree['reference_masks']} reference masks "
                         f"identical at the same (frame, instance), {agree['maskray_masks']} written")
        one = next(s for n, s in summaries.items() if n.startswith("maskray 1 "))
        best = max(one["frames_per_s_all"]) / max(summaries["reference"]["frames_per_s_all"])
        lines.append(f"  best runs (least disturbed): maskray 1 worker / reference = {best:.2f}")
        lines.append(target_line("maskray 1 worker / reference frames/s", one["frames_per_s"] / ref_fps, 0.95))
    for name, pair in results.get("memory", {}).items():
        lines.append(
            f"memory, {name}, {pair['workers']} worker(s): {pair['small']['frames']} -> "
            f"{pair['large']['frames']} frames: tree peak {pair['small']['tree_peak_mb']:.0f} -> "
            f"{pair['large']['tree_peak_mb']:.0f} MB, worker peak {pair['small']['worker_peak_mb']:.0f} -> "
            f"{pair['large']['worker_peak_mb']:.0f} MB")
        lines.append(target_line(f"peak memory ratio ({name}, {pair['frames_ratio']:.1f}x frames)",
                                 pair["tree_ratio"], 1.2, higher_is_better=False))
    if "ceiling" in results:
        summaries = results["ceiling"]["summaries"]
        lines += [f"ceiling: null model over {Path(results['ceiling']['video']).name}"]
        lines += table(list(summaries.items()))
        two = [s for n, s in summaries.items() if n.startswith("null 2 ")]
        if two:
            lines.append(target_line("null model, 2 workers, frames/s", two[0]["frames_per_s"], 500))
    if "gpu" in results:
        found = results["gpu"]
        lines.append(f"gpu: {found['gpus']} x {found['device']}, {Path(found['video']).name}")
        for name, run in found["runs"].items():
            busy = ", ".join(f"GPU{i} {100 * b:.0f}%" for i, b in run["gpu_busy"].items()) or "n/a"
            lines.append(f"  {name:<22}{run['frames']:>6} frames {run['frames_per_s']:>8.1f} frames/s, "
                         f"{run['frames_per_s_per_gpu']:.1f} per GPU, busy {busy}")
        best = max(r["frames_per_s_per_gpu"] for n, r in found["runs"].items() if n != "reference")
        lines.append(target_line("maskray frames/s per GPU (720p, R50-FPN)", best, 100))
        worker = found["worker"]
        busy = ", ".join(f"GPU{i} {100 * b:.0f}%" for i, b in (worker["gpu_busy"] or {}).items())
        lines.append(f"  worker without Ray: {worker['frames_per_s']:.1f} frames/s, busy {busy or 'n/a'}; "
                     f"forward alone {worker['forward_alone_frames_per_s']:.1f} frames/s; split (s): "
                     + ", ".join(f"{k} {v:.1f}" for k, v in worker["split_s"].items()))
        lines.append(target_line("worker / forward alone", worker["x_forward_alone"], 0.9))
        lines.append(target_line("GPU busy share, worker", max((worker["gpu_busy"] or {0: 0}).values()), 0.85))
    elif results.get("gpu_skipped"):
        lines.append(f"gpu: not measured ({results['gpu_skipped']})")
    for name, message in results.get("failed", {}).items():
        lines.append(f"{name}: FAILED: {message.strip().splitlines()[-1][:300]}")
    return lines


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 repeat, 5 frames, short videos")
    parser.add_argument("--repeats", type=int, help="repeats per configuration (default 3, quick 1)")
    parser.add_argument("--every", type=int, help="model section: every N-th frame of bikes.mp4 "
                        "(default 20: 13 frames; quick 50: 5 frames)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--null-repeat", type=int, help="ceiling: bikes.mp4 played N times (default 4, quick 2)")
    parser.add_argument("--gpu-repeat", type=int, default=4, help="gpu: the 720p bikes played N times")
    parser.add_argument("--skip", nargs="+", default=[], choices=["model", "memory", "ceiling", "gpu"])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "maskray-bench-cache",
                        help="where generated videos are kept between runs")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.every = args.every or (50 if args.quick else 20)
    args.null_repeat = args.null_repeat or (2 if args.quick else 4)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    started = time.time()

    def say(message: str) -> None:
        print(f"[{time.time() - started:6.0f}s] {message}", file=sys.stderr, flush=True)

    results: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                 "python": platform.python_version(),
                                 "load_before": [round(x, 2) for x in os.getloadavg()]},
                     "args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="maskray-bench-") as folder:
        scratch = Path(folder)
        sections = {"model": lambda: model_section(args, scratch, say),
                    "memory": lambda: memory_section(args, scratch, args.cache, say),
                    "ceiling": lambda: ceiling_section(args, scratch, args.cache, say),
                    "gpu": lambda: gpu_section(args, scratch, args.cache, say)}
        if "gpu" in args.skip:
            results["gpu_skipped"] = "--skip gpu"
        elif not gpu.available():
            results["gpu_skipped"] = "no CUDA device (or no nvidia-smi) on this machine"
            args.skip.append("gpu")
        for name, measure in sections.items():
            if name in args.skip:
                continue
            try:
                results[name] = measure()
            except RuntimeError as error:  # a failed command: report it, measure the rest
                say(f"{name}: failed: {error}")
                results.setdefault("failed", {})[name] = str(error)
    results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["wall_s"] = round(time.time() - started, 1)
    print("\n".join(report(results)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=str))
        print(f"measurements: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
