"""Keypoint heatmaps to image coordinates with one host sync for all instances.

torchvision's `heatmaps_to_keypoints` resizes each instance's K heatmaps bicubically to its
box's ceiled size and takes each map's maximum; to know that size it reads the box back to
the host once per instance (`.item()`, a GPU sync each). `heatmaps_to_keypoints` here reads
the sizes of all boxes in one transfer, then runs the same per-instance resize (the very
same kernel, so keypoints and scores are torchvision's bit for bit) without waiting for the
device in between: the launches queue up and the GPU runs them back to back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def heatmaps_to_keypoints(maps: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints (N, K, 3) as x, y, 1 in the boxes' frame, and their scores (N, K).

    maps: (N, K, S, S) heatmap logits. rois: (N, 4) boxes x1, y1, x2, y2 they were pooled from.
    """
    count, num_keypoints = maps.shape[:2]
    if count == 0:
        empty = torch.zeros((0, num_keypoints), dtype=torch.float32, device=maps.device)
        return torch.zeros((0, num_keypoints, 3), dtype=torch.float32, device=maps.device), empty
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    widths_ceil, heights_ceil = widths.ceil(), heights.ceil()
    sizes = torch.stack([heights_ceil, widths_ceil], dim=1).to(torch.int64).tolist()  # the sync
    positions, scores = [], []
    for index, (height, width) in enumerate(sizes):
        resized = F.interpolate(maps[index][:, None], size=(height, width), mode="bicubic",
                                align_corners=False)[:, 0]
        flat = resized.reshape(num_keypoints, -1)
        position = flat.argmax(dim=1)  # as torchvision: the first maximum in row-major order
        positions.append(torch.stack([position % width, position // width], dim=1))
        scores.append(flat.gather(1, position[:, None])[:, 0])
    grid = torch.stack(positions).float()  # (N, K, 2) integer x, y in the resized maps
    x = (grid[..., 0] + 0.5) * (widths / widths_ceil)[:, None] + rois[:, 0, None]
    y = (grid[..., 1] + 0.5) * (heights / heights_ceil)[:, None] + rois[:, 1, None]
    points = torch.stack([x, y, torch.ones_like(x)], dim=2)
    return points, torch.stack(scores).float()


def keypoint_inference(logits: torch.Tensor, boxes: list[torch.Tensor]):
    """torchvision's `keypointrcnn_inference` for all images at once: per image, keypoints
    (D_i, K, 3) and scores (D_i, K) of its D_i boxes."""
    counts = [len(b) for b in boxes]
    if not counts:
        return [], []
    points, scores = heatmaps_to_keypoints(logits, torch.cat(boxes))
    return list(points.split(counts)), list(scores.split(counts))
