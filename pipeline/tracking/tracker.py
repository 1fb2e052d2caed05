"""Tracking instances through the frames of one video segment, on the worker.

`Tracker.update(detections)` is called once per frame, in presentation order, and returns a
track number (0, 1, ... in order of creation, local to this tracker) for each detection.
Association is ByteTrack's two stages: detections scoring at least `high_score` are matched
first, against every live track; the remaining tracks are then offered the low-scoring
detections under a stricter overlap. A track that finds no detection is kept for `max_gap`
frames (its box carried along by its last velocity), so an object missed for a frame or two,
or hidden for a moment, keeps its number. Detections left over start new tracks: every
written instance has a track.

The similarity of a track and a detection is the larger of their mask IoU (last mask seen)
and the IoU of the detection's box with the track's predicted box. Matching is optimal
(Hungarian, `scipy.optimize.linear_sum_assignment`) and deterministic: detections come in
descending score, tracks in creation order, and ties resolve the same way every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from maskray.pipeline.tracking.settings import TrackerConfig


@dataclass
class Detections:
    """One frame's instances. boxes (N, 4) x1 y1 x2 y2; scores (N,); category_ids (N,);
    masks_rle: N COCO counts strings of (height, width) masks, or None (boxes only)."""

    boxes: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray
    masks_rle: Optional[Sequence[str]] = None
    height: int = 0
    width: int = 0

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class _Track:
    number: int
    category_id: int
    box: np.ndarray  # (4,) last matched box
    velocity: np.ndarray  # (4,) box change per frame
    mask: Optional[dict]  # last matched mask, as a pycocotools RLE dict
    last_seen: int  # frame count (0-based update number) of the last match
    hits: int = 1

    def predicted_box(self, now: int) -> np.ndarray:
        return self.box + self.velocity * (now - self.last_seen)


@dataclass
class Tracker:
    config: TrackerConfig = field(default_factory=TrackerConfig)

    def __post_init__(self):
        self._tracks: list[_Track] = []
        self._next_number = 0
        self._now = -1

    @property
    def tracks_started(self) -> int:
        return self._next_number

    def update(self, detections: Detections) -> np.ndarray:
        """Track numbers (N,) int32 for this frame's detections, in their order."""
        self._now += 1
        now, config = self._now, self.config
        self._tracks = [t for t in self._tracks if now - t.last_seen <= config.max_gap]
        count = len(detections)
        numbers = np.full(count, -1, dtype=np.int32)
        masks = _rle_dicts(detections)
        boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(detections.scores, dtype=np.float64)
        similarity = self._similarity(boxes, masks, np.asarray(detections.category_ids), now)
        high = np.flatnonzero(scores >= config.high_score)
        low = np.flatnonzero(scores < config.high_score)
        free_tracks = list(range(len(self._tracks)))
        for stage, threshold in ((high, config.match_iou), (low, config.low_match_iou)):
            pairs = _assign(similarity, stage, free_tracks, threshold)
            for det, track_index in pairs:
                self._follow(self._tracks[track_index], boxes[det], masks[det] if masks else None, now)
                numbers[det] = self._tracks[track_index].number
            matched = {track_index for _, track_index in pairs}
            free_tracks = [t for t in free_tracks if t not in matched]
        for det in np.flatnonzero(numbers < 0):  # in descending score: numbering is repeatable
            track = _Track(self._next_number, int(detections.category_ids[det]), boxes[det].copy(),
                           np.zeros(4), masks[det] if masks else None, now)
            self._next_number += 1
            self._tracks.append(track)
            numbers[det] = track.number
        return numbers

    def _similarity(self, boxes: np.ndarray, masks: list, category_ids: np.ndarray, now: int) -> np.ndarray:
        """(N detections, T tracks) similarity in 0..1; -1 where the categories differ."""
        if not len(boxes) or not self._tracks:
            return np.zeros((len(boxes), len(self._tracks)))
        predicted = np.stack([t.predicted_box(now) for t in self._tracks])
        similarity = box_iou(boxes, predicted)
        track_masks = [t.mask for t in self._tracks]
        if masks and all(m is not None for m in track_masks):
            mask_iou = np.asarray(mask_utils.iou(masks, track_masks, [0] * len(track_masks)),
                                  dtype=np.float64).reshape(len(boxes), len(track_masks))
            similarity = np.maximum(similarity, mask_iou)
        if self.config.same_category:
            track_categories = np.array([t.category_id for t in self._tracks])
            similarity[category_ids[:, None] != track_categories[None, :]] = -1.0
        return similarity

    @staticmethod
    def _follow(track: _Track, box: np.ndarray, mask: Optional[dict], now: int) -> None:
        gap = max(1, now - track.last_seen)
        # Smoothed velocity: a jittery box should not fling the prediction away.
        track.velocity = 0.5 * track.velocity + 0.5 * (box - track.box) / gap
        track.box, track.mask, track.last_seen = box.copy(), mask, now
        track.hits += 1


def _assign(similarity: np.ndarray, detections: np.ndarray, tracks: list[int],
            threshold: float) -> list[tuple[int, int]]:
    """Optimal one-to-one pairs (detection, track) among the given ones, similarity >= threshold."""
    if not len(detections) or not tracks:
        return []
    block = similarity[np.ix_(detections, tracks)]
    # Pairs below the threshold are made worthless rather than forbidden, then dropped.
    cost = np.where(block >= threshold, -block, 1.0)
    # scipy here, not at the top: readers import this module (via stitch) and need no solver.
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return [(int(detections[r]), tracks[c]) for r, c in zip(rows, cols) if block[r, c] >= threshold]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (N, 4) and b (M, 4), x1 y1 x2 y2: (N, M)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _rle_dicts(detections: Detections) -> list:
    if detections.masks_rle is None or not detections.height:
        return []
    size = [int(detections.height), int(detections.width)]
    return [{"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
            for counts in detections.masks_rle]
