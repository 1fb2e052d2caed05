"""COCO run-length encoding of binary masks, byte-identical to pycocotools' compressed RLE.

A COCO RLE walks the mask in column-major order (down each column, then the next column)
and records alternating run lengths, starting with a run of zeros (possibly empty). The
compressed "counts" string stores each run (from the third on, as the difference to the run
two before it) in 5-bit groups, least significant first, each group as one ASCII character
`48 + bits (+32 when more groups follow)`.

`mask_runs` finds the runs with torch ops on the masks' own device, so only the run lengths
(a few numbers per column) leave an accelerator, never the full-resolution masks;
`counts_from_runs` compresses them on the host. `decode` is pycocotools'.

Only `mask_runs` needs torch, and imports it when called: readers (`query`, `status`,
`export`) decode masks without paying torch's seconds of import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pycocotools import mask as mask_utils

if TYPE_CHECKING:
    import torch

# A 32-bit run length (or difference of two) needs at most 7 groups of 5 bits.
_MAX_GROUPS = 7


def mask_runs(masks: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run lengths of the masks of several frames, found on the masks' device.

    masks: (N_i, H_i, W_i) bool tensors (frames of any non-zero sizes), on one device. Returns device
    tensors, masks in order (frame by frame): `lengths` (R,) int64, every mask's runs in COCO
    order (starting with a run of zeros, possibly empty, which is left out here),
    `runs_per_mask` (M,) int64 and `starts_with_one` (M,) bool. One host sync (the number of
    runs), however many masks and frames; `counts_from_runs` finishes on the host.
    """
    import torch  # here, not at the top: see the module's note

    if any(m.dim() != 3 for m in masks):
        raise ValueError("mask_runs expects (N, H, W) masks per frame")
    if any(m.shape[1] * m.shape[2] == 0 for m in masks):
        raise ValueError("mask_runs needs frames of at least one pixel")
    masks = [m for m in masks if m.shape[0] > 0]
    if not masks:
        empty = torch.zeros(0, dtype=torch.int64)
        return {"lengths": empty, "runs_per_mask": empty, "starts_with_one": empty.bool()}
    device = masks[0].device
    # Each mask flattened in column-major order, all masks one after another.
    flat = torch.cat([m.bool().transpose(1, 2).reshape(-1) for m in masks])
    pixels = [m.shape[1] * m.shape[2] for m in masks for _ in range(m.shape[0])]
    mask_ends = torch.tensor(np.cumsum(pixels) - 1, dtype=torch.int64, device=device)
    mask_starts = mask_ends - torch.tensor(pixels, dtype=torch.int64, device=device) + 1
    run_ends = torch.ones_like(flat)
    run_ends[:-1] = flat[1:] != flat[:-1]  # True on the last pixel of every run ...
    run_ends[mask_ends] = True  # ... and on the last pixel of every mask
    ends = run_ends.nonzero().squeeze(1)  # the one sync: how many runs there are
    owner = torch.searchsorted(mask_ends, ends)  # which mask each run belongs to
    previous = torch.roll(ends, 1)
    first_of_mask = torch.ones_like(owner, dtype=torch.bool)
    first_of_mask[1:] = owner[1:] != owner[:-1]
    previous = torch.where(first_of_mask, mask_starts[owner] - 1, previous)
    return {
        "lengths": ends - previous,
        "runs_per_mask": torch.bincount(owner, minlength=len(pixels)),
        "starts_with_one": flat[mask_starts],
    }


def counts_from_runs(lengths: np.ndarray, runs_per_mask: np.ndarray,
                     starts_with_one: np.ndarray) -> list[str]:
    """COCO counts strings from `mask_runs`' arrays (brought to the host)."""
    if len(runs_per_mask) == 0:
        return []
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
    """(H, W) uint8 mask (0/1) from a COCO counts string (pycocotools' decoder).

    pycocotools refuses counts that run past the mask but leaves the rest of a short one
    unwritten, so the mask is encoded again and must give back the same counts: maskray's
    counts (and pycocotools') are canonical, and anything else is refused as malformed.
    """
    if height * width == 0:
        if counts:
            raise ValueError(f"RLE counts for an empty {height}x{width} mask")
        return np.zeros((height, width), dtype=np.uint8)
    encoded = counts.encode("ascii")
    try:
        mask = mask_utils.decode({"size": [height, width], "counts": encoded})
    except (ValueError, TypeError) as error:
        raise ValueError(f"malformed RLE counts for a {height}x{width} mask: {error}") from None
    if mask_utils.encode(mask)["counts"] != encoded:
        raise ValueError(f"RLE counts do not cover a {height}x{width} mask exactly")
    return np.ascontiguousarray(mask)
