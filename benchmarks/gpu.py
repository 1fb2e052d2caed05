"""How busy the GPUs were: `nvidia-smi` sampled while a run goes on.

NVML's `utilization.gpu` is the percentage of the last sample period during which at least
one kernel ran on the GPU, so its mean over a run's processing window is the share of time
the GPU was busy. Sampled every 100 ms by `nvidia-smi -lms`, in its own process, so the
measurement costs the measured run nothing on the GPU.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from statistics import mean


def available() -> bool:
    """nvidia-smi is installed and torch sees a CUDA device (torch is imported only then)."""
    if shutil.which("nvidia-smi") is None:
        return False
    import torch

    return torch.cuda.is_available()


def device_names() -> list[str]:
    """Names of the visible GPUs, from nvidia-smi (no CUDA context in this process)."""
    found = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                           capture_output=True, text=True, check=True)
    return [line.strip() for line in found.stdout.splitlines() if line.strip()]


class GpuBusySampler:
    """`with GpuBusySampler() as gpus: ...`; then `gpus.busy_share(start, end)` (epoch seconds)."""

    def __init__(self, interval_ms: int = 100):
        self.interval_ms = interval_ms
        self.samples: list[tuple[float, int, float]] = []  # (time, gpu index, utilisation %)
        self._process = None
        self._reader = None

    def __enter__(self) -> "GpuBusySampler":
        self._process = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=index,utilization.gpu", "--format=csv,noheader,nounits",
             f"-lms={self.interval_ms}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)
        self._reader.join(timeout=10)

    def _read(self) -> None:
        for line in self._process.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                self.samples.append((time.time(), int(parts[0]), float(parts[1])))
            except (IndexError, ValueError):
                continue

    def busy_share(self, start: float, end: float) -> dict[int, float]:
        """{gpu index: mean busy fraction (0..1)} over samples taken between start and end."""
        by_gpu: dict[int, list[float]] = {}
        for stamp, index, percent in self.samples:
            if start <= stamp <= end:
                by_gpu.setdefault(index, []).append(percent / 100.0)
        return {index: mean(values) for index, values in sorted(by_gpu.items())}
