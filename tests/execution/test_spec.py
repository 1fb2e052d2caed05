"""The job spec: validation a user meets as one-line errors, JSON round trips, fingerprints."""

from __future__ import annotations

import json
import os

import pytest

from maskray.jobs.spec import JobSpec
from maskray.errors import UsageError


def spec(**changes) -> JobSpec:
    values = dict(sources=["tests/data"], output="out", weights="none", min_size=128)
    values.update(changes)
    return JobSpec(**values)


def test_local_paths_become_absolute_and_object_store_uris_stay(tmp_path):
    job = spec(sources=["tests/data", "s3://bucket/cams/"], output="s3://bucket/masks/")
    assert job.sources == [os.path.abspath("tests/data"), "s3://bucket/cams/"]
    assert job.output == "s3://bucket/masks/"
    assert spec(output=f"file://{tmp_path}/out").output == f"{tmp_path}/out"


def test_json_round_trip_keeps_every_field():
    job = spec(every=5, workers=3, gpus_per_worker=0.5, cpu=True, segment_seconds=10.0)
    stored = json.dumps(job.to_dict())  # as `_job.json` holds it
    assert JobSpec.from_dict(json.loads(stored)) == job
    assert json.loads(stored)["every"] == 5


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(every=5, fps=2.0), "one of --every, --fps and --keyframes"),
        (dict(fps=2.0, keyframes=True), "one of --every, --fps and --keyframes"),
        (dict(every=0), "--every"),
        (dict(fps=-1.0), "--fps"),
        (dict(batch_size=0), "--batch-size"),
        (dict(max_instances=-3), "--max-instances"),
        (dict(pre_nms_top=0), "--pre-nms-top"),
        (dict(workers=0), "--workers"),
        (dict(min_size=900, max_size=500), "--min-size"),
        (dict(score_threshold=1.5), "--score-threshold"),
        (dict(segment_seconds=0.0), "--segment-seconds"),
        (dict(gpus_per_worker=-1.0), "--gpus-per-worker"),
        (dict(precision="fp8"), "--precision"),
        (dict(precision="fp16", cpu=True), "needs a GPU"),
        (dict(sources=[]), "SOURCE"),
    ],
)
def test_bad_combinations_are_one_line_usage_errors(changes, words):
    with pytest.raises(UsageError) as caught:
        spec(**changes).validate()
    message = str(caught.value)
    assert words in message and "\n" not in message


def test_half_precision_needs_cuda_here_but_not_for_a_cluster():
    import torch

    job = spec(precision="bf16")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA"):
            job.validate()
    job.validate(check_local_device=False)  # the cluster's GPUs decide


def test_fingerprint_follows_results_not_resources():
    base = spec(every=5)
    assert base.fingerprint() == spec(every=5, workers=8, batch_size=16, gpus_per_worker=0.5).fingerprint()
    assert base.fingerprint() != spec(every=10).fingerprint()
    assert base.fingerprint() != spec(every=5, weights="demo").fingerprint()
    assert base.fingerprint() != spec(every=5, score_threshold=0.7).fingerprint()
    assert spec(every=10).differences_from_dict(base.to_dict()) == ["every"]
    older = {k: v for k, v in base.to_dict().items() if k != "pre_nms_top"}  # before the field
    assert base.differences_from_dict(older) == []
    assert spec(every=5, pre_nms_top=50).differences_from_dict(older) == ["pre_nms_top"]
    assert base.fingerprint() != spec(every=5, pre_nms_top=50).fingerprint()


def test_submit_defaults_are_written_once_and_the_flags_show_them():
    """The Predictor's defaults are a job's, and `maskray submit`'s flags default to the spec's."""
    from maskray.commands.run import submit_command
    from maskray.jobs.spec import SUBMIT_DEFAULTS
    from maskray.models.predictor_config import PredictorConfig

    config = PredictorConfig()
    shared = ("model", "weights", "min_size", "max_size", "score_threshold", "mask_threshold",
              "max_instances", "pre_nms_top", "precision")
    assert {name: SUBMIT_DEFAULTS[name] for name in shared} == {name: getattr(config, name) for name in shared}
    # What `maskray submit SRC --output OUT` passes on when no other flag is given.
    given = submit_command.make_context("submit", ["photos", "--output", "out"]).params
    flags = {name: value for name, value in given.items() if name in SUBMIT_DEFAULTS}
    assert {"model", "weights", "score_threshold", "pre_nms_top", "batch_size", "track"} <= set(flags)
    for name, value in flags.items():
        value = float(value) if name == "score_threshold" else value  # parsed per class later
        assert value == SUBMIT_DEFAULTS[name], name
