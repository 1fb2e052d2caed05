"""The measured commands, each in a fresh process whose whole tree's memory is sampled:
the reference script, and `maskray submit` as a user runs it (its own embedded Ray).

For maskray, throughput is taken from the shards' commit records: `window_s` runs from the start of the
first shard to the last commit, so Ray's start, the actors' model loads and planning are left
out, as the reference leaves out its model load. The whole command's time is kept too
(`command_s`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pyarrow.parquet as pq

from benchmarks.process_tree import TreeSampler
from benchmarks.profiles import Profile
from maskray.pipeline.output.sink import read_commits


ROOT = Path(__file__).resolve().parent.parent


def maskray_command() -> list[str]:
    """`maskray` as installed in this interpreter's environment (`pip install -e .` of this checkout)."""
    return [sys.executable, "-m", "maskray"]


def _environment() -> dict:
    """This process's environment without a cluster address."""
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def run_reference(video: Path, every: int, profile: Profile, scratch: Path,
                  timeout: float = 1800) -> dict:
    """`benchmarks/reference.py` over every `every`-th frame of `video`; its measurements."""
    scratch.mkdir(parents=True, exist_ok=True)
    result_file = scratch / "reference.json"
    result_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "benchmarks.reference", "--video", str(video),
               "--every", str(every), "--profile-json", json.dumps(profile.to_dict()),
               "--result", str(result_file)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=_environment(), cwd=ROOT, text=True)
    with TreeSampler(process.pid) as sampler:
        log = _wait(process, timeout)
    if process.returncode != 0:
        raise RuntimeError(f"reference exited {process.returncode}:\n{log[-3000:]}")
    result = json.loads(result_file.read_text())
    result.update(command_s=time.perf_counter() - started, workers=1,
                  tree_peak_mb=sampler.result.tree_peak_mb,
                  worker_peak_mb=sampler.result.pid_peak_mb(process.pid),
                  background_cpu=sampler.result.background_cpu_share)
    return result


def run_submit(video: Path, every: int, profile: Profile, workers: int, output: Path,
               extra: Optional[list[str]] = None, timeout: float = 1800) -> dict:
    """One `maskray submit` over every `every`-th frame of `video`; its measurements."""
    if output.exists():
        shutil.rmtree(output)
    command = maskray_command() + [
        "submit", str(video), "--output", str(output), "--workers", str(workers),
        "--every", str(every), *profile.submit_flags(), *(extra or []),
    ]
    env = _environment()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    with TreeSampler(process.pid) as sampler:
        log = _wait(process, timeout)
    command_s = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"maskray submit exited {process.returncode}:\n{log[-3000:]}")
    records = list(read_commits(str(output)).values())
    first_start = min(r.committed_at - r.timings["total_s"] - r.timings.get("write_s", 0)
                      for r in records)
    window_s = max(r.committed_at for r in records) - first_start
    sums = {key: sum(r.timings.get(key, 0.0) for r in records)
            for key in ("infer_s", "forward_s", "decode_wait_s", "write_s")}
    peaks = sampler.result
    worker_pids = {r.worker["pid"] for r in records}
    return {
        "frames": sum(r.frames for r in records),
        "instances": sum(r.instances for r in records),
        "errors": sum(r.errors for r in records),
        "shards": len(records),
        "workers": workers,
        "window_s": window_s,
        "window_start": first_start,
        "window_end": first_start + window_s,
        "command_s": command_s,
        **sums,
        "tree_peak_mb": peaks.tree_peak_mb,
        "worker_peak_mb": max(peaks.pid_peak_mb(pid) for pid in worker_pids),
        "driver_peak_mb": peaks.pid_peak_mb(process.pid),
        "largest_processes": peaks.largest(),
        "background_cpu": peaks.background_cpu_share,
        "log_tail": log.strip().splitlines()[-1] if log.strip() else "",
    }


def run_worker_profile(video: Path, profile: Profile, scratch: Path, timeout: float = 1800) -> dict:
    """`benchmarks/worker_profile.py`: the worker class without Ray, and the forward alone."""
    scratch.mkdir(parents=True, exist_ok=True)
    result_file = scratch / "worker_profile.json"
    result_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "benchmarks.worker_profile", "--profile", profile.name,
               "--video", str(video), "--result", str(result_file)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=_environment(), cwd=ROOT, text=True)
    log = _wait(process, timeout)
    if process.returncode != 0:
        raise RuntimeError(f"worker profile exited {process.returncode}:\n{log[-3000:]}")
    return json.loads(result_file.read_text())


def _wait(process: subprocess.Popen, timeout: float) -> str:
    """The process's output once it has ended (killed after `timeout` seconds)."""
    try:
        log, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        log, _ = process.communicate()
    return log


def read_masks(output: Path) -> dict[str, list[str]]:
    """{frame: mask RLEs in instance order} from a job's instances table."""
    table = pq.read_table(output / "instances", columns=["frame", "instance", "mask_rle"])
    rows = sorted(zip(table.column("frame").to_pylist(), table.column("instance").to_pylist(),
                      table.column("mask_rle").to_pylist()))
    masks: dict[str, list[str]] = {}
    for frame, _, counts in rows:
        masks.setdefault(str(frame), []).append(counts)
    return masks
