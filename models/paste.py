"""Pasting RoI mask probabilities into full frames, every instance at once, on the masks' device.

torchvision's `paste_masks_in_image` loops over instances in Python: for each it reads the
box back to the host (`int(box[...])`), resizes the mask with `F.interpolate` and copies it
into a zeroed frame. That is one host sync per coordinate per instance, which dominates a
GPU's post-processing. `paste_masks` computes the same frames for all N instances with a
fixed number of tensor ops and no host sync, using torchvision's own geometry:
- the M x M mask is padded by one pixel and its box expanded by (M + 2) / M about its
  centre, the expanded box truncated to integers (`expand_masks`, `expand_boxes`);
- the padded mask is resized bilinearly (half-pixel centres, `align_corners=False`) to the
  box's integer size w = x2 - x1 + 1 (at least 1) and h alike, and placed at (x1, y1);
- pixels outside the box or the frame are 0.
The bilinear weights and sums follow ATen's upsampling kernel (source index
`scale * (i + 0.5) - 0.5` clamped at 0, `scale = (M + 2) / w` in float32; along x first, then
y), with its fused multiply-adds reproduced by one float64 step rounded to float32. The
probabilities then equal torchvision's to the last bit on most boxes and within 1e-6 on
the rest, so thresholded masks are the same (tests/models/test_postprocess.py checks odd boxes and
real frames against torchvision's paste).
"""

from __future__ import annotations

import torch
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

# Instances pasted per chunk are limited so that a chunk's temporaries stay near this many
# elements (frames are N x H x W; 2**24 float64 values are 128 MiB per temporary).
_CHUNK_ELEMENTS = 2**24


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Masks of N instances pasted into (height, width) frames.

    masks: (N, 1, M, M) probabilities of each instance's RoI. boxes: (N, 4) x1, y1, x2, y2 in
    the frame's pixels (float). Returns (N, 1, height, width) in the masks' dtype and device.
    """
    count = masks.shape[0]
    if count == 0:
        return masks.new_zeros((0, 1, height, width))
    padded, scale = expand_masks(masks, padding=1)
    corners = expand_boxes(boxes, scale).to(torch.int64)
    padded = padded[:, 0].float()  # the sums run in float32, as ATen's opmath for all dtypes
    per_chunk = max(1, _CHUNK_ELEMENTS // max(1, height * width))
    pasted = [
        _paste_chunk(padded[start:start + per_chunk], corners[start:start + per_chunk],
                     height, width)
        for start in range(0, count, per_chunk)
    ]
    return torch.cat(pasted)[:, None].to(masks.dtype)


def _paste_chunk(padded: torch.Tensor, corners: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, P, P) padded masks and (n, 4) integer boxes -> (n, height, width)."""
    size = padded.shape[-1]
    x_low, y_low, x_high, y_high = corners.unbind(1)
    cols = _axis_weights(x_low, x_high, width, size)
    rows = _axis_weights(y_low, y_high, height, size)
    # Along x first: every padded row interpolated at the frame's columns -> (n, P, width).
    first, second, weight_first, weight_second, inside_x = cols
    gather_x = lambda index: padded.gather(2, index[:, None, :].expand(-1, size, -1))  # noqa: E731
    across = _fused(gather_x(first), weight_first[:, None, :],
                    gather_x(second) * weight_second[:, None, :])
    # Then along y: the two source rows of every frame row -> (n, height, width).
    first, second, weight_first, weight_second, inside_y = rows
    gather_y = lambda index: across.gather(1, index[:, :, None].expand(-1, -1, width))  # noqa: E731
    frame = _fused(gather_y(first), weight_first[:, :, None],
                   gather_y(second).mul_(weight_second[:, :, None]))
    inside = inside_y[:, :, None] & inside_x[:, None, :]
    return frame.masked_fill_(~inside, 0)


def _fused(value: torch.Tensor, weight: torch.Tensor, addend: torch.Tensor) -> torch.Tensor:
    """value * weight + addend rounded once, as a fused multiply-add: float32 inputs whose
    product is exact in float64, so only the final rounding to float32 remains."""
    wide = value.to(torch.float64).mul_(weight.to(torch.float64)).add_(addend)
    return wide.to(torch.float32)


def _axis_weights(low: torch.Tensor, high: torch.Tensor, length: int, size: int):
    """Source indices, bilinear weights and coverage of one axis for n boxes.

    low, high: (n,) integer box edges (inclusive). Returns (first, second) source indices
    (n, length) int64, their float32 weights (n, length), and `inside` (n, length) bool:
    frame positions low..high within the frame.
    """
    positions = torch.arange(length, device=low.device)
    offset = positions[None, :] - low[:, None]  # position within the resized mask
    extent = (high - low + 1).clamp(min=1)
    inside = (offset >= 0) & (offset < extent[:, None])
    # ATen's scale and source index, in float32 like its upsampling kernel (opmath).
    scale = torch.full_like(extent, size, dtype=torch.float32) / extent.to(torch.float32)
    source = _fused(scale[:, None].expand(-1, length), offset.to(torch.float32) + 0.5,
                    torch.tensor(-0.5, dtype=torch.float64, device=low.device)).clamp(min=0)
    first = source.to(torch.int64).clamp(max=size - 1)
    fraction = (source - first.to(torch.float32)).clamp(0, 1)
    second = first + (first < size - 1).to(torch.int64)
    return first, second, 1 - fraction, fraction, inside
