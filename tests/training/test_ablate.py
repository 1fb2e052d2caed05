"""`maskray ablate`: every variant per seed, the baseline trained once for all switches, the
mean and spread per variant, a resumable folder, and the verdict against the paper."""

from __future__ import annotations

import json
import statistics

import pytest

from maskray.jobs.training.ablation_summary import format_summary, summarize, verdict
from results_helpers import run_maskray

TINY = ["--steps", "1", "--train-images", "6", "--val-images", "3", "--min-size", "96", "--max-size", "96"]


@pytest.mark.ray
def test_two_switches_share_the_baseline_a_seed_added_later_trains_only_its_runs_and_resume_trains_none(
        tmp_path, capsys, shared_ray):
    out = tmp_path / "ablations"
    code, printed, err = run_maskray(["ablate", "--switch", "mask-loss", "--switch", "roi-op", "-o", out, *TINY,
                                      "--seeds", "1"], capsys)
    assert code == 0, err
    # sigmoid+align is both switches' baseline: 3 configurations, not 4.
    assert "3 runs (0 already done)" in printed
    assert sorted(p.parent.name for p in (out / "runs").glob("*/seed-0")) == [
        "align-sigmoid-fcn-resnet18", "align-softmax-fcn-resnet18", "pool-sigmoid-fcn-resnet18"]

    # A second seed later: the same budget, so only the new seed's runs are trained.
    code, printed, err = run_maskray(["ablate", "--switch", "mask-loss", "-o", out, *TINY, "--seeds", "2"], capsys)
    assert code == 0, err
    assert "4 runs (2 already done)" in printed and printed.count("--- run") == 2
    report = json.loads((out / "mask-loss.json").read_text())
    assert report["seeds"] == [0, 1] and [v["variant"] for v in report["variants"]] == ["sigmoid", "softmax"]
    for variant in report["variants"]:
        assert [run["seed"] for run in variant["runs"]] == [0, 1]
        values = [run["segm_AP"] for run in variant["runs"]]
        assert variant["summary"]["segm_AP"]["mean"] == pytest.approx(statistics.fmean(values))
    # The seed changes initialisation and data order: the runs are not copies of each other.
    assert len({run["final_loss"] for run in report["variants"][0]["runs"]}) == 2
    assert "mask-loss" in printed and "paper" in printed
    roi_op = json.loads((out / "roi-op.json").read_text())
    assert roi_op["seeds"] == [0] and [v["variant"] for v in roi_op["variants"]] == ["align", "pool"]

    # Finished runs are kept: the same command trains nothing again (and starts no Ray).
    code, printed, err = run_maskray(["ablate", "--switch", "mask-loss", "-o", out, *TINY, "--seeds", "2"], capsys)
    assert code == 0, err
    assert "4 runs (4 already done)" in printed and "--- run" not in printed

    # Another budget in the same folder would mix incomparable runs: one line, exit 2.
    code, printed, err = run_maskray(["ablate", "--switch", "roi-op", "-o", out, *TINY, "--seeds", "1",
                                      "--steps", "2"], capsys)
    assert code == 2 and "another budget (differs in steps)" in err and "Traceback" not in err


def _runs(values):
    return [{"seed": seed, "segm_AP": v, "segm_AP50": v, "segm_AP75": v, "bbox_AP": v, "train_seconds": 60.0}
            for seed, v in enumerate(values)]


def _variant(name, values):
    return {"variant": name, "runs": _runs(values), "summary": summarize(_runs(values))}


def test_the_verdict_needs_ranges_apart_to_call_a_gap_beyond_the_spread():
    apart = [_variant("align", [0.50, 0.52, 0.54]), _variant("pool", [0.40, 0.42, 0.49])]
    result = verdict("roi-op", apart)["pool"]
    assert result["mask_AP_gap"] == pytest.approx(100 * (0.52 - statistics.fmean([0.40, 0.42, 0.49])), abs=0.01)
    assert result["paper_mask_AP_gap"] == pytest.approx(3.3)
    assert result["direction_reproduced"] and result["beyond_spread"]
    assert result["paired_gaps"] == pytest.approx([10.0, 10.0, 5.0])

    overlapping = [apart[0], _variant("pool", [0.40, 0.53, 0.51])]
    assert not verdict("roi-op", overlapping)["pool"]["beyond_spread"]
    assert verdict("roi-op", overlapping)["pool"]["paired_gaps"] == pytest.approx([10.0, -1.0, 3.0])

    # A deeper backbone should win (the paper: R101 over R50 by 1.8): a shallower win is not the paper's.
    depth = [_variant("resnet18", [0.60, 0.61, 0.62]), _variant("resnet34", [0.50, 0.51, 0.52])]
    assert verdict("backbone", depth)["resnet34"]["direction_reproduced"] is False

    report = {"switch": "roi-op", "seeds": [0, 1, 2], "variants": apart, "verdict": verdict("roi-op", apart)}
    table = format_summary(report)
    assert "52.0 ± 2.0" in table and "50.0-54.0" in table and "30.2 (RoIAlign)" in table
    assert "align vs pool: +8.3 mask AP (paper +3.3), ahead on 3/3 seeds; direction reproduced, beyond the spread" in table
