"""One way to save weights (`models.weights.save_checkpoint`): what training writes each
checkpoint with, and what turns a run's `model.pt` into the shipped fp16 demo model."""

from __future__ import annotations

import torch
from torch import nn

from maskray.jobs.training.train import export_weights
from maskray.models.build import build_model
from maskray.models.weights import make_checkpoint, save_checkpoint


class DataParallelLike(nn.Module):
    """What DistributedDataParallel looks like to a saver: the model under `.module`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.module = model


def test_a_wrapped_model_saves_as_the_bare_model_and_loads_back(tmp_path):
    model, _ = build_model("demo", "none", seed=5)
    bare, wrapped = tmp_path / "bare.pt", tmp_path / "wrapped.pt"
    save_checkpoint(model, bare)
    save_checkpoint(DataParallelLike(model), wrapped)
    for path in (bare, wrapped):
        loaded, weights_id = build_model("demo", str(path))
        assert weights_id.startswith("file:")
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    # The demo network's shape is written down in the recipe, so the file alone rebuilds it.
    assert make_checkpoint(model)["recipe"].keys() >= {"model", "categories"}
    assert not list(tmp_path.glob("*.tmp"))  # written whole: temp file, then rename


def test_half_export_halves_the_file_and_loads_into_fp32(tmp_path):
    model, _ = build_model("demo", "none", seed=5)
    full = tmp_path / "model.pt"
    size = save_checkpoint(model, full)
    half_size = export_weights(full, tmp_path / "demo.pt", half=True)
    assert half_size < 0.6 * size
    loaded, _ = build_model("demo", str(tmp_path / "demo.pt"))
    for name, value in model.state_dict().items():
        got = loaded.state_dict()[name]
        assert got.dtype == value.dtype
        if value.is_floating_point():
            assert torch.allclose(got, value, rtol=1e-3, atol=1e-3)
        else:
            assert torch.equal(got, value)
