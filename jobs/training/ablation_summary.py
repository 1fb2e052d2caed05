"""Summaries of an ablation's runs: mean and spread per variant, the table, the paper's numbers.

A gap between two variants counts as reproduced "beyond the spread" only when every seed of
the better variant beats every seed of the other (their min-max ranges do not overlap): with
three seeds that is a plain, assumption-free reading of the runs, stricter than a mean. The
per-seed (paired) gaps are kept too: the same seed gives both variants the same data order.
"""

from __future__ import annotations

import statistics

from maskray.pipeline.text_table import text_table

METRICS = ("segm_AP", "segm_AP50", "segm_AP75", "bbox_AP")

# Mask R-CNN (He et al., 2017), table 2, COCO minival mask AP / AP50 / AP75 (percent), in the
# order of our variants (the paper's choice first). For `backbone` the paper compares depths
# (R50 vs R101, FPN); ours are the same step at the size the budget allows (see ablate.py).
PAPER = {
    "roi-op": {"source": "table 2c, ResNet-50-C4",
               "rows": [("RoIAlign", 30.2, 51.0, 31.8), ("RoIPool", 26.9, 48.8, 26.4)]},
    "mask-loss": {"source": "table 2b, ResNet-50-C4",
                  "rows": [("sigmoid", 30.3, 51.2, 31.5), ("softmax", 24.8, 44.1, 25.1)]},
    "mask-head": {"source": "table 2e, ResNet-50-FPN",
                  "rows": [("FCN", 33.6, 55.2, 35.3), ("MLP", 31.5, 53.7, 32.8)]},
    "backbone": {"source": "table 2a, ResNet-FPN (deeper is better)",
                 "rows": [("R-50-FPN", 33.6, 55.2, 35.3), ("R-101-FPN", 35.4, 57.3, 37.5)]},
}


def paper_row(switch: str, position: int):
    """(label, AP, AP50, AP75) the paper gives for our variant at `position`, or None."""
    rows = PAPER.get(switch, {}).get("rows", [])
    return rows[position] if position < len(rows) else None


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one value), min and max."""
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs: list[dict]) -> dict:
    """Per metric (and training minutes) the spread over one variant's runs (one per seed)."""
    summary = {metric: spread([run[metric] for run in runs]) for metric in METRICS}
    summary["train_minutes"] = spread([run["train_seconds"] / 60 for run in runs])
    return summary


def verdict(switch: str, variants: list[dict]) -> dict:
    """The first variant (the paper's choice, or the shallower backbone) against each other one,
    on mask AP, beside the paper's gap for the same pair."""
    base = variants[0]
    out = {}
    for position, other in enumerate(variants[1:], start=1):
        ours, theirs = base["summary"]["segm_AP"], other["summary"]["segm_AP"]
        gap = 100 * (ours["mean"] - theirs["mean"])
        first, second = paper_row(switch, 0), paper_row(switch, position)
        paper_gap = round(first[1] - second[1], 1) if first and second else None
        # Seeds pair the runs: the same seed gives both variants the same data order.
        theirs_by_seed = {run["seed"]: run["segm_AP"] for run in other.get("runs", [])}
        paired = [100 * (run["segm_AP"] - theirs_by_seed[run["seed"]])
                  for run in base.get("runs", []) if run["seed"] in theirs_by_seed]
        out[other["variant"]] = {
            "mask_AP_gap": round(gap, 2),
            "paired_gaps": [round(g, 2) for g in paired],
            "paper_mask_AP_gap": paper_gap,
            "direction_reproduced": None if paper_gap is None else (gap > 0) == (paper_gap > 0),
            "beyond_spread": ours["min"] > theirs["max"] or ours["max"] < theirs["min"],
        }
    return out


def format_summary(report: dict) -> str:
    """The switch's table: mean ± std over seeds per metric (percent), the paper's AP beside."""
    cells = []
    for position, variant in enumerate(report["variants"]):
        summary = variant["summary"]
        row = [variant["variant"]]
        row += [f"{100 * summary[m]['mean']:.1f} ± {100 * summary[m]['std']:.1f}" for m in METRICS]
        row.append(f"{100 * summary['segm_AP']['min']:.1f}-{100 * summary['segm_AP']['max']:.1f}")
        paper = paper_row(report["switch"], position)
        row.append(f"{paper[1]:.1f} ({paper[0]})" if paper else "")
        row.append(f"{summary['train_minutes']['mean']:.1f}")
        cells.append(row)
    seeds = len(report["seeds"])
    header = [report["switch"], "AP", "AP50", "AP75", "APbox", f"AP range, {seeds} seeds", "paper AP", "min"]
    lines = [text_table(header, cells, right=range(1, 8), rule=True)]
    for other, result in report["verdict"].items():
        paper_gap = result["paper_mask_AP_gap"]
        reproduced = {True: "direction reproduced", False: "direction NOT reproduced", None: "no paper gap"}
        lines.append(
            f"{report['variants'][0]['variant']} vs {other}: {result['mask_AP_gap']:+.1f} mask AP"
            + (f" (paper {paper_gap:+.1f})" if paper_gap is not None else "")
            + (f", ahead on {sum(g > 0 for g in result['paired_gaps'])}/{len(result['paired_gaps'])} seeds"
               if result.get("paired_gaps") else "")
            + f"; {reproduced[result['direction_reproduced']]}"
            + (", beyond the spread" if result["beyond_spread"] else ", within the spread")
        )
    return "\n".join(lines)
