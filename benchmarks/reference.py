"""The reference: one process, PyAV decode, model forward, mask threshold and RLE, nothing else.

This is what someone would write without maskray: decode frames in a loop, run the model on
batches, threshold the pasted masks and encode them with pycocotools. It builds the very
same network as maskray (`models.build.build_model`, same weights and seed) and runs it
with torchvision's own post-processing (`torchvision_path.torchvision_twin`: every candidate
above the score threshold into NMS, masks pasted one at a time), so the differences are the
ones maskray adds or removes around the backbone and heads.

Run in its own process (the benchmark measures its memory like any command):
    python -m benchmarks.reference --video V --every N --profile-json '{...}' --result out.json
Times exclude imports and the model load; `window_s` runs from the first decoded frame to
the last encoded mask.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch
from pycocotools import mask as coco_mask

from benchmarks.profiles import Profile
from benchmarks.torchvision_path import torchvision_twin
from maskray.models.build import build_model


def run(video: str, every: int, profile: Profile) -> dict:
    """Process every `every`-th frame of `video`; returns counts, timings and the masks."""
    if profile.device == "cpu":
        torch.set_num_threads(profile.threads)
    device = torch.device(profile.device)
    started = time.perf_counter()
    model, _ = build_model(
        profile.model, profile.weights, seed=0, min_size=profile.min_size,
        max_size=profile.max_size, score_threshold=profile.score_threshold,
        max_instances=profile.max_instances,
    )
    model = torchvision_twin(model).to(device)
    load_s = time.perf_counter() - started
    timings = {"decode_s": 0.0, "forward_s": 0.0, "encode_s": 0.0}
    masks: dict[int, list[str]] = {}

    def infer(batch: list[tuple[int, np.ndarray]]) -> None:
        began = time.perf_counter()
        with torch.inference_mode(), _autocast(device, profile.precision):
            images = [torch.from_numpy(rgb).to(device).permute(2, 0, 1).float().div(255) for _, rgb in batch]
            outputs = model(images)
        _sync(device)
        done = time.perf_counter()
        timings["forward_s"] += done - began
        for (number, _), output in zip(batch, outputs):
            binary = (output["masks"][:, 0] > profile.mask_threshold).to(torch.uint8).cpu().numpy()
            encoded = coco_mask.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
            masks[number] = [item["counts"].decode() for item in encoded]
        timings["encode_s"] += time.perf_counter() - done

    first, first_epoch = time.perf_counter(), time.time()
    batch: list[tuple[int, np.ndarray]] = []
    with av.open(video) as container:
        stream = container.streams.video[0]
        began = time.perf_counter()
        for number, frame in enumerate(container.decode(stream)):
            if number % every == 0:
                batch.append((number, frame.to_ndarray(format="rgb24")))
            if len(batch) == profile.batch_size:
                timings["decode_s"] += time.perf_counter() - began
                infer(batch)
                batch = []
                began = time.perf_counter()
        timings["decode_s"] += time.perf_counter() - began
    if batch:
        infer(batch)
    window_s = time.perf_counter() - first
    return {
        "frames": len(masks),
        "instances": sum(len(m) for m in masks.values()),
        "window_s": window_s,
        "window_start": first_epoch,
        "window_end": first_epoch + window_s,
        "load_s": load_s,
        **timings,
        "threads": torch.get_num_threads(),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "masks": {str(k): v for k, v in sorted(masks.items())},
    }


def _autocast(device: torch.device, precision: str):
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    return torch.autocast("cuda", dtype=dtype, enabled=device.type == "cuda" and dtype is not None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", required=True)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--profile-json", required=True, help="benchmarks.profiles.Profile as JSON")
    parser.add_argument("--result", required=True, help="where to write the result JSON")
    args = parser.parse_args(argv)
    profile = Profile(**json.loads(args.profile_json))
    result = run(args.video, args.every, profile)
    Path(args.result).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
