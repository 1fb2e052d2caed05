"""COCO RLE: maskray's encoders must produce pycocotools' exact bytes, on real and edge masks."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask

from maskray.models import rle

IMAGES = Path(__file__).parents[1] / "data" / "images"


def reference(mask: np.ndarray) -> str:
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()


def real_masks() -> list[np.ndarray]:
    """Thresholded channels of the test images at several sizes: realistic blobs and edges."""
    masks = []
    for name, size in [("coins.png", None), ("astronaut.png", (97, 61)), ("logo.png", (33, 250)),
                       ("chelsea.png", (451, 300)), ("camera.png", (5, 9))]:
        image = Image.open(IMAGES / name).convert("RGB")
        if size is not None:
            image = image.resize(size)
        pixels = np.asarray(image)
        for channel, level in [(0, 128), (1, 60), (2, 200)]:
            masks.append(pixels[:, :, channel] > level)
    return masks


def edge_masks() -> list[np.ndarray]:
    masks = []
    for h, w in [(1, 1), (3, 7), (7, 3), (1, 40), (40, 1)]:
        masks += [np.zeros((h, w), bool), np.ones((h, w), bool)]
    masks.append(np.eye(7, 3, dtype=bool))
    one = np.zeros((1, 1), bool)
    masks.append(one)
    column = np.zeros((20, 30), bool)
    column[:, 17] = True  # one-pixel-wide column: a single long run
    row = np.zeros((20, 30), bool)
    row[4, :] = True  # one-pixel-high row: a run of 1 in every column
    corner = np.zeros((6, 5), bool)
    corner[0, 0] = corner[-1, -1] = True  # foreground at the very first and last pixel
    checker = (np.indices((9, 11)).sum(axis=0) % 2).astype(bool)  # every run has length 1
    return masks + [column, row, corner, checker]


def encode(frames: list[torch.Tensor]) -> list[str]:
    """The Predictor's route: runs of every frame's masks on their device, then the host."""
    runs = {name: value.cpu().numpy() for name, value in rle.mask_runs(frames).items()}
    return rle.counts_from_runs(**runs)


@pytest.mark.parametrize("kind", ["real", "edge"])
def test_torch_encoder_matches_pycocotools_one_by_one_and_batched(kind):
    masks = real_masks() if kind == "real" else edge_masks()
    for mask in masks:
        assert encode([torch.from_numpy(mask)[None]]) == [reference(mask)]
    # A batch of same-sized masks mixing empty, full and real content is split correctly.
    same = [m for m in masks if m.shape == masks[0].shape]
    batch = [np.zeros_like(same[0]), *same, np.ones_like(same[0]), np.zeros_like(same[0])]
    assert encode([torch.from_numpy(np.stack(batch))]) == [reference(m) for m in batch]
    # Frames of different sizes (and one without instances) in one call, as a batch of frames.
    frames = [torch.from_numpy(np.stack([m, ~m])) for m in masks[:4]]
    frames.insert(1, torch.zeros((0, 7, 9), dtype=torch.bool))
    expected = [reference(m) for pair in masks[:4] for m in (pair, ~pair)]
    assert encode(frames) == expected


def test_decode_inverts_pycocotools_encode():
    for mask in real_masks()[::3] + edge_masks():
        decoded = rle.decode(reference(mask), *mask.shape)
        assert decoded.shape == mask.shape and decoded.dtype == np.uint8
        assert np.array_equal(decoded, mask.astype(np.uint8))


def test_degenerate_batches_and_bad_shapes():
    assert encode([torch.zeros((0, 5, 5), dtype=torch.bool)]) == [] and encode([]) == []
    assert rle.decode("", 0, 4).shape == (0, 4)
    with pytest.raises(ValueError):
        rle.decode(reference(np.ones((3, 7), bool)), 7, 4)  # counts cover 21 pixels, not 28
    with pytest.raises(ValueError):
        rle.mask_runs([torch.zeros((3, 4), dtype=torch.bool)])
    with pytest.raises(ValueError):
        rle.mask_runs([torch.zeros((2, 0, 5), dtype=torch.bool)])  # frames have pixels


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_encoder_on_cuda_matches_pycocotools():
    masks = [m for m in real_masks() if m.shape == (300, 451)]
    encoded = encode([torch.from_numpy(np.stack(masks)).cuda(), torch.from_numpy(masks[0][None]).cuda()])
    assert encoded == [reference(m) for m in masks + masks[:1]]
