"""The Predictor on real images: every model, well-formed instances in original-frame pixels."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask

from maskray.models import rle
from maskray.errors import UsageError
from maskray.models.predictor import FramePrediction, Predictor, PredictorConfig
from maskray.models.catalog import MODELS

IMAGES = Path(__file__).parents[1] / "data" / "images"
SMALL = dict(weights="none", min_size=128, max_size=192, score_threshold=0.0, max_instances=5,
             proposals=64)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Greyscale, RGBA and RGB sources of different sizes, decoded as the pipeline does."""
    return [
        np.asarray(Image.open(IMAGES / name).convert("RGB"))
        for name in ("camera.png", "logo.png", "chelsea.png")
    ]


@pytest.fixture(scope="module", params=list(MODELS))
def predictor(request) -> Predictor:
    return Predictor(PredictorConfig(model=request.param, **SMALL))


def check_frame(prediction: FramePrediction, frame: np.ndarray, spec) -> None:
    height, width = frame.shape[:2]
    assert (prediction.height, prediction.width) == (height, width)
    n = len(prediction)
    assert prediction.boxes.shape == (n, 4) and prediction.boxes.dtype == np.float32
    x1, y1, x2, y2 = prediction.boxes.T
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= width).all() and (y2 <= height).all()
    assert (x1 <= x2).all() and (y1 <= y2).all()
    assert prediction.scores.dtype == np.float32 and (np.diff(prediction.scores) <= 0).all()
    assert prediction.category_ids.dtype == np.int32
    assert prediction.categories == [spec.categories[int(c)] for c in prediction.category_ids]
    if "masks" in spec.tasks:
        assert len(prediction.masks_rle) == n and prediction.mask_areas.dtype == np.int64
        for counts, mask_area in zip(prediction.masks_rle, prediction.mask_areas):
            mask = rle.decode(counts, height, width)
            assert mask.shape == (height, width)
            assert int(mask.sum()) == mask_area
    else:
        assert prediction.masks_rle is None and prediction.mask_areas is None
    if "keypoints" in spec.tasks:
        assert prediction.keypoints.shape == (n, len(spec.keypoint_names), 3)
        assert np.isfinite(prediction.keypoints).all()
    else:
        assert prediction.keypoints is None


def test_every_model_returns_well_formed_instances(predictor, frames):
    predictions = predictor.predict(frames)
    assert len(predictions) == len(frames)
    for prediction, frame in zip(predictions, frames):
        check_frame(prediction, frame, predictor.spec)
        if predictor.spec.name == "null":
            assert len(prediction) == 0
        else:
            assert 0 < len(prediction) <= SMALL["max_instances"]
    if "keypoints" in predictor.spec.tasks:
        expected = 4 if predictor.spec.name == "demo" else 17
        assert predictions[0].keypoints.shape[1] == expected
    assert predictor.weights_id == ("null" if predictor.spec.name == "null" else "none:seed0")
    # `auto` (the config's default) picks the GPU where torch sees one, else the CPU.
    assert predictor.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_masks_are_the_thresholded_model_output_in_frame_pixels(frames):
    """The RLE equals pycocotools' encoding of the model's own pasted masks > threshold."""
    predictor = Predictor(PredictorConfig(model="demo", mask_threshold=0.4, **SMALL))
    frame = frames[2]
    (prediction,) = predictor.predict([frame])
    image = torch.from_numpy(frame.copy()).permute(2, 0, 1).float() / 255
    with torch.inference_mode():
        (raw,) = predictor.model([image])
    masks = (raw["masks"][: len(prediction), 0] > 0.4).numpy().astype(np.uint8)
    expected = [coco_mask.encode(np.asfortranarray(m))["counts"].decode() for m in masks]
    assert prediction.masks_rle == expected
    assert np.allclose(prediction.boxes, raw["boxes"][: len(prediction)].numpy())


def test_thresholds_and_instance_cap(frames):
    predictor = Predictor(PredictorConfig(model="demo", **{**SMALL, "max_instances": 3}))
    assert all(len(p) == 3 for p in predictor.predict(frames[:2]))
    strict = Predictor(PredictorConfig(model="demo", **{**SMALL, "score_threshold": 0.3}))
    for prediction in strict.predict(frames[:2]):
        assert (prediction.scores >= 0.3).all()


def test_weights_saved_and_loaded_by_path_give_identical_predictions(frames, tmp_path):
    original = Predictor(PredictorConfig(model="demo", **SMALL))
    path = tmp_path / "state.pt"
    torch.save(original.model.state_dict(), path)
    reloaded = Predictor(PredictorConfig(model="demo", **{**SMALL, "weights": str(path)}))
    assert reloaded.weights_id.startswith("file:")
    for a, b in zip(original.predict(frames[:2]), reloaded.predict(frames[:2])):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
        assert a.masks_rle == b.masks_rle and np.array_equal(a.keypoints, b.keypoints)


def test_bad_frames_and_settings_are_usage_errors(frames):
    predictor = Predictor(PredictorConfig(model="null", weights="none"))
    grey = np.asarray(Image.open(IMAGES / "camera.png"))
    rgba = np.asarray(Image.open(IMAGES / "logo.png").convert("RGBA"))
    for bad in (grey, rgba, frames[0].astype(np.float32), np.zeros((0, 4, 3), np.uint8), "x"):
        with pytest.raises(UsageError):
            predictor.predict([frames[1], bad])
    assert predictor.predict([]) == []
    (empty,) = predictor.predict([frames[2]])
    assert (empty.height, empty.width) == frames[2].shape[:2] and empty.masks_rle == []
    with pytest.raises(UsageError, match="precision"):
        Predictor(PredictorConfig(model="null", weights="none", device="cpu", precision="fp16"))
    with pytest.raises(UsageError):
        Predictor(PredictorConfig(model="null", weights="none", device="tpu"))
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="cuda"):
            Predictor(PredictorConfig(model="null", weights="none", device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_predictions_match_the_contract(frames, precision):
    config = PredictorConfig(model="maskkeypointrcnn_resnet50_fpn", device="cuda",
                             precision=precision, **SMALL)
    predictor = Predictor(config)
    assert predictor.device.type == "cuda"
    for prediction, frame in zip(predictor.predict(frames), frames):
        check_frame(prediction, frame, predictor.spec)
        assert len(prediction) > 0
