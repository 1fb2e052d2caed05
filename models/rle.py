"""COCO run-length encoding of binary masks, byte-identical to pycocotools' compressed RLE.

A COCO RLE walks the mask in column-major order (down each column, then the next column)
and records alternating run lengths, starting with a run of zeros (possibly empty). The
compressed "counts" string stores each run (from the third on, as the difference to the run
two before it) in 5-bit groups, least significant first, each group as one ASCII character
`48 + bits (+32 when more groups follow)`.

`encode_batch_torch` finds the runs with torch ops on the masks' own device, so only the run
lengths (a few numbers per column) leave an accelerator, never the full-resolution masks.
"""

from __future__ import annotations

import numpy as np
import torch

# A 32-bit run length (or difference of two) needs at most 7 groups of 5 bits.
_MAX_GROUPS = 7


def encode_batch_torch(masks: torch.Tensor) -> list[str]:
    """COCO counts strings of a batch of masks, computed where the masks are.

    masks: (N, H, W) bool tensor on any device. Returns N strings.
    """
    if masks.dim() != 3:
        raise ValueError(f"encode_batch_torch expects (N, H, W) masks, got {tuple(masks.shape)}")
    n, height, width = masks.shape
    if n == 0:
        return []
    if height * width == 0:
        return [""] * n
    flat = masks.bool().transpose(1, 2).reshape(n, height * width)  # column-major per mask
    run_ends = torch.ones_like(flat)
    run_ends[:, :-1] = flat[:, 1:] != flat[:, :-1]  # True on the last pixel of every run
    rows, cols = run_ends.nonzero(as_tuple=True)  # sorted by mask, then position
    ends = cols + 1
    previous = torch.roll(ends, 1)
    first_of_mask = torch.ones_like(rows, dtype=torch.bool)
    first_of_mask[1:] = rows[1:] != rows[:-1]
    previous[first_of_mask] = 0
    lengths = ends - previous
    runs_per_mask = torch.bincount(rows, minlength=n)
    starts_with_one = flat[:, 0]
    # Only these small vectors leave the device.
    lengths = lengths.cpu().numpy()
    runs_per_mask = runs_per_mask.cpu().numpy()
    starts_with_one = starts_with_one.cpu().numpy()
    per_mask = np.split(lengths, np.cumsum(runs_per_mask)[:-1])
    runs = [
        np.concatenate(([0], r)) if first else r for r, first in zip(per_mask, starts_with_one)
    ]
    return _compress(runs)


def _compress(runs_per_mask: list[np.ndarray]) -> list[str]:
    """COCO's compressed counts strings for several masks' run lengths, all at once."""
    sizes = np.array([len(r) for r in runs_per_mask], dtype=np.int64)
    if sizes.sum() == 0:
        return [""] * len(runs_per_mask)
    runs = np.concatenate(runs_per_mask).astype(np.int64)
    mask_of_run = np.repeat(np.arange(len(sizes)), sizes)
    index_in_mask = np.arange(len(runs)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    # From the third run of a mask on, store the difference to the run two before.
    values = runs.copy()
    delta = index_in_mask > 2
    values[delta] -= runs[np.flatnonzero(delta) - 2]

    chars = np.zeros((len(values), _MAX_GROUPS), dtype=np.uint8)
    emitted = np.zeros((len(values), _MAX_GROUPS), dtype=bool)
    active = np.ones(len(values), dtype=bool)
    rest = values
    for group in range(_MAX_GROUPS):
        bits = rest & 0x1F
        rest = rest >> 5  # arithmetic shift: negative differences stay negative
        more = np.where(bits & 0x10, rest != -1, rest != 0)
        chars[:, group] = 48 + bits + 32 * more
        emitted[:, group] = active
        active = active & more
    encoded = chars[emitted]  # row-major: each run's groups in order, runs in order
    chars_per_mask = np.bincount(mask_of_run, weights=emitted.sum(axis=1), minlength=len(sizes))
    bounds = np.cumsum(chars_per_mask.astype(np.int64))
    data = encoded.tobytes()
    starts = np.concatenate(([0], bounds[:-1]))
    return [data[s:e].decode("ascii") for s, e in zip(starts, bounds)]


def decode(counts: str, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 mask (0/1) from a COCO counts string."""
    runs = _runs_from_counts(counts)
    if runs.sum() != height * width:
        raise ValueError(f"RLE counts cover {runs.sum()} pixels, not {height}x{width}")
    values = np.arange(len(runs), dtype=np.uint8) % 2  # runs alternate 0, 1, 0, ...
    flat = np.repeat(values, runs)
    return np.ascontiguousarray(flat.reshape(width, height).T)


def _runs_from_counts(counts: str) -> np.ndarray:
    """Run lengths of a compressed counts string (the inverse of `_compress`)."""
    codes = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    if codes.size == 0:
        return np.zeros(0, dtype=np.int64)
    last = (codes & 0x20) == 0  # a value's last group has no continuation bit
    if not last[-1]:
        raise ValueError("truncated RLE counts string")
    value_of = np.concatenate(([0], np.cumsum(last)[:-1]))  # which value each group belongs to
    first = np.concatenate(([True], last[:-1]))
    group = np.arange(codes.size) - np.maximum.accumulate(np.where(first, np.arange(codes.size), 0))
    values = np.zeros(int(last.sum()), dtype=np.int64)
    np.add.at(values, value_of, (codes & 0x1F) << (5 * group))
    # A set sign bit in the last group makes the value negative (two's complement).
    negative = last & ((codes & 0x10) != 0)
    values[value_of[negative]] -= np.int64(1) << (5 * (group[negative] + 1))
    # From the third run on, values are differences to the run two before.
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    if (runs < 0).any():
        raise ValueError("malformed RLE counts string")
    return runs
