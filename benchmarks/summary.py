"""Turning repeated runs into the figures the issue asks for: medians, ratios, targets.

Definitions (also in benchmarks/README.md):
- frames/s = frames / processing window (first frame decoded to last mask encoded or shard
  committed; model loads and Ray's start are outside the window, whole-command time is
  reported beside it);
- model share = time inside the model's forward / (window x workers); pipeline overhead is
  1 - model share. maskray workers report `forward_s` when the Predictor measures it, else
  the time inside `Predictor.predict` (forward + mask threshold + RLE), labelled so;
- peak memory = largest sampled sum of RSS over the command's whole process tree;
- others = share of the machine's CPU used by other programs during the command (noise).
"""

from __future__ import annotations

from statistics import median


def frames_per_s(run: dict) -> float:
    return run["frames"] / run["window_s"] if run["window_s"] > 0 else 0.0


def model_share(run: dict) -> tuple[float, str]:
    """(share of worker time inside the model, what was timed)."""
    capacity = run["window_s"] * max(1, run.get("workers", 1))
    if run.get("forward_s"):
        return run["forward_s"] / capacity, "forward"
    return run.get("infer_s", 0.0) / capacity, "predict"


def summarise(runs: list[dict]) -> dict:
    """Medians over repeats of one configuration."""
    shares = [model_share(r) for r in runs]
    return {
        "repeats": len(runs),
        "frames": runs[0]["frames"],
        "instances": runs[0]["instances"],
        "frames_per_s": median(frames_per_s(r) for r in runs),
        "frames_per_s_all": [round(frames_per_s(r), 4) for r in runs],
        "overhead": median(1.0 - s for s, _ in shares),
        "timed": shares[0][1],
        "tree_peak_mb": median(r["tree_peak_mb"] for r in runs),
        "worker_peak_mb": median(r["worker_peak_mb"] for r in runs),
        "command_s": median(r["command_s"] for r in runs),
        "window_s": median(r["window_s"] for r in runs),
        "background_cpu": median(r.get("background_cpu", 0.0) for r in runs),
        "background_cpu_all": [round(r.get("background_cpu", 0.0), 3) for r in runs],
    }


def identical_masks(reference: dict[str, list[str]], other: dict[str, list[str]]) -> dict:
    """How many of the reference's masks maskray wrote byte for byte, at the same
    (frame, instance); different thread counts may reorder near-tied scores."""
    total = sum(len(v) for v in reference.values())
    same = sum(a == b for frame, masks in reference.items()
               for a, b in zip(masks, other.get(frame, [])))
    as_sets = sum(len(set(masks) & set(other.get(frame, []))) for frame, masks in reference.items())
    return {"reference_masks": total, "same_position": same, "same_frame_any_position": as_sets,
            "maskray_masks": sum(len(v) for v in other.values())}


def target_line(name: str, value: float, goal: float, higher_is_better: bool = True,
                unit: str = "") -> str:
    met = value >= goal if higher_is_better else value <= goal
    sign = ">=" if higher_is_better else "<="
    return f"  [{'met ' if met else 'MISS'}] {name}: {value:.3g}{unit} (target {sign} {goal:g}{unit})"


def table(rows: list[tuple[str, dict]], reference_fps: float | None = None) -> list[str]:
    """Text table of summarised configurations."""
    head = (f"  {'run':<22}{'frames':>7}{'frames/s':>10}{'x ref':>7}{'overhead':>10}{'peak MB':>9}"
            f"{'worker MB':>10}{'command s':>10}{'others':>8}")
    lines = [head]
    for name, s in rows:
        ratio = f"{s['frames_per_s'] / reference_fps:.2f}" if reference_fps else "-"
        lines.append(
            f"  {name:<22}{s['frames']:>7}{s['frames_per_s']:>10.3f}{ratio:>7}"
            f"{100 * s['overhead']:>9.1f}%{s['tree_peak_mb']:>9.0f}{s['worker_peak_mb']:>10.0f}"
            f"{s['command_s']:>10.1f}{100 * s['background_cpu']:>7.0f}%"
        )
    return lines
