"""The worker without Ray: `ShardWorker.process` over the shards maskray plans, on one device.

Issue 10's method: Ray's scheduling is not the question, the replica is. This script lists
and plans a video as `maskray submit` does, builds one `ShardWorker` in this process (on
the visible GPU, or the CPU) and runs `process` over every shard, then measures the model
forward alone on the same frames already on the device (the target: the worker at >= 0.9x
of it). It reports frames/s, the GPU busy share (nvidia-smi, where present) and the worker's
time split from its commit records (decode wait, inside the model, the rest of predict, the
rest of the shard: Arrow, Parquet, commit).

    python -m benchmarks.worker_profile --profile gpu --video bikes_720p_x4.mp4 --result out.json
    python -m benchmarks.worker_profile --profile cpu --every 20      # bikes.mp4, on the CPU

Nothing of Ray is imported (the script checks `sys.modules` at the end and says so).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks import gpu, media
from benchmarks.profiles import CPU, GPU, Profile


def profile_worker(video: str, every: int, profile: Profile, output: str) -> dict:
    """Runs the worker over `video` (every `every`-th frame); returns the measurements."""
    from maskray.pipeline.execution.worker import ShardWorker
    from maskray.pipeline.inputs.listing import list_media
    from maskray.pipeline.inputs.sampling import Sampling
    from maskray.pipeline.inputs.plan_stream import plan_shards

    shards = plan_shards(list_media([video]), Sampling(every=every), None, workers=1)
    config = {key: getattr(profile, key) for key in (
        "model", "weights", "min_size", "max_size", "score_threshold", "mask_threshold",
        "max_instances", "precision")}
    worker = ShardWorker(config, output, "worker-profile", profile.batch_size,
                         force_cpu=profile.device == "cpu")
    if worker.startup_error is not None:
        raise worker.startup_error
    sampler = gpu.GpuBusySampler() if worker.device == "cuda" and gpu.available() else None
    records, began = [], time.time()
    if sampler:
        sampler.__enter__()
    try:
        for shard in shards:
            records.append(worker.process(shard))
    finally:
        ended = time.time()
        if sampler:
            sampler.__exit__(None, None, None)
    frames = sum(r["frames_ok"] for r in records)
    split = {key: round(sum(r["timings"].get(key, 0.0) for r in records), 3)
             for key in ("decode_wait_s", "infer_s", "forward_s", "total_s")}
    window = ended - began
    return {
        "device": worker.device,
        "gpu": gpu.device_names()[0] if sampler else None,
        "shards": len(records),
        "frames": frames,
        "instances": sum(r["instances"] for r in records),
        "window_s": round(window, 3),
        "frames_per_s": frames / window if window else 0.0,
        "gpu_busy": sampler.busy_share(began, ended) if sampler else None,
        "split_s": {
            "decode_wait": split["decode_wait_s"],
            "model_forward": split["forward_s"],
            "predict_rest (conversion, RLE, transfers)": round(split["infer_s"] - split["forward_s"], 3),
            "shard_rest (Arrow, Parquet, commit)": round(
                split["total_s"] - split["infer_s"] - split["decode_wait_s"], 3),
        },
        "forward_alone_frames_per_s": forward_alone(worker.predictor, video, every, profile),
    }


def forward_alone(predictor, video: str, every: int, profile: Profile, limit: int = 200) -> float:
    """frames/s of the model forward alone over up to `limit` frames already on the device."""
    import av
    import torch

    frames = []
    with av.open(video) as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number % every == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= limit:
                break
    device = predictor.device
    images = [torch.from_numpy(f).to(device).permute(2, 0, 1).float().div_(255) for f in frames]
    batches = [images[i:i + profile.batch_size] for i in range(0, len(images), profile.batch_size)]
    with torch.inference_mode(), predictor._autocast():
        predictor.model(batches[0])  # warm-up (cuDNN autotuning, allocator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        began = time.perf_counter()
        for batch in batches:
            predictor.model(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return len(images) / (time.perf_counter() - began)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["cpu", "gpu"], default="gpu")
    parser.add_argument("--video", help="default: bikes.mp4 (cpu) or bikes at 720p played 4 times (gpu)")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--model", help="another model name than the profile's")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "maskray-bench-cache")
    parser.add_argument("--result", help="write the measurements here as JSON")
    args = parser.parse_args(argv)
    profile = GPU if args.profile == "gpu" else CPU
    if args.model:
        profile = replace(profile, model=args.model)
    video = args.video
    if video is None:
        video = media.SAMPLE_VIDEO if args.profile == "cpu" else media.repeated(
            media.scaled(media.SAMPLE_VIDEO, 1280, 720, args.cache), 4, args.cache)
    with tempfile.TemporaryDirectory(prefix="maskray-worker-profile-") as output:
        result = profile_worker(str(video), args.every, profile, output)
    result.update(profile=profile.to_dict(), video=str(video), ray_imported="ray" in sys.modules)
    result["x_forward_alone"] = result["frames_per_s"] / result["forward_alone_frames_per_s"]
    print(json.dumps(result, indent=2))
    if args.result:
        Path(args.result).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
