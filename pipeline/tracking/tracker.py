"""Tracking instances through the frames of one video segment, on the worker.

`Tracker.update(detections)` is called once per frame, in presentation order, and returns a
track number (0, 1, ... in order of creation, local to this tracker) for each detection.
Association runs in stages (ByteTrack's two, then BoT-SORT's re-identification):
1. detections scoring at least `high_score` against every live track, where their overlap is
   at least `match_iou`; among those, the better overlap plus `appearance_weight` x the
   appearance cosine wins, so two crossing objects keep their own tracks;
2. the tracks left are offered the low-scoring detections under a stricter overlap;
3. confirmed tracks still unmatched (lost for a gap, their box carried along by their last
   velocity) are offered the confident detections left on appearance alone: cosine at least
   `reid_similarity`, within `reid_reach` box diagonals of where the motion puts them.
The overlap of a track and a detection is the larger of their mask IoU (last mask seen) and
the IoU of the detection's box with the track's predicted box. The appearance is the model's
own box-head feature of each detection (unit vectors; `FramePrediction.embeddings`), kept per
track as a moving average; without embeddings the stages run on overlap alone.

Detections left over start *tentative* tracks. A tentative track becomes a track once it has
been matched `confirm_hits` frames in a row; one missed before that is dropped, so a
single-frame false positive never becomes a track. Its number is still returned (frames are
written as they come), and `confirmed` tells which numbers became tracks: stitching gives the
others no track id. A confirmed track that finds no detection lives `max_gap` frames.

Matching is optimal (Hungarian, `scipy.optimize.linear_sum_assignment`) and deterministic:
detections come in descending score, tracks in creation order, and ties resolve the same way
every run.
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
    masks_rle: N COCO counts strings of (height, width) masks, or None (boxes only);
    embeddings: (N, D) unit appearance vectors, or None."""

    boxes: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray
    masks_rle: Optional[Sequence[str]] = None
    height: int = 0
    width: int = 0
    embeddings: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.scores)


APPEARANCE_MOMENTUM = 0.9  # a track's appearance: 90% what it was, 10% the new detection


@dataclass
class _Track:
    number: int
    category_id: int
    box: np.ndarray  # (4,) last matched box
    velocity: np.ndarray  # (4,) box change per frame
    mask: Optional[dict]  # last matched mask, as a pycocotools RLE dict
    last_seen: int  # frame count (0-based update number) of the last match
    appearance: Optional[np.ndarray] = None  # (D,) unit vector, moving average of embeddings
    hits: int = 1
    confirmed: bool = False

    def predicted_box(self, now: int) -> np.ndarray:
        return self.box + self.velocity * (now - self.last_seen)


@dataclass
class Tracker:
    config: TrackerConfig = field(default_factory=TrackerConfig)

    def __post_init__(self):
        self._tracks: list[_Track] = []
        self._next_number = 0
        self._now = -1
        self.confirmed: set[int] = set()  # numbers of the tracks that were ever confirmed

    @property
    def tracks_started(self) -> int:
        return self._next_number

    def lost_or_alive(self) -> list[dict]:
        """The confirmed tracks still remembered, as stitching needs them: number, category,
        last box, velocity (per update), the update it was last seen in, appearance (or None)."""
        return [{"track": t.number, "category": t.category_id, "box": t.box.tolist(),
                 "velocity": t.velocity.tolist(), "update": t.last_seen,
                 "appearance": None if t.appearance is None else t.appearance.tolist()}
                for t in self._tracks if t.confirmed and self._now - t.last_seen <= self.config.max_gap]

    def update(self, detections: Detections) -> np.ndarray:
        """Track numbers (N,) int32 for this frame's detections, in their order."""
        self._now += 1
        now, config = self._now, self.config
        # Confirmed tracks wait `max_gap` frames for their object; tentative ones not a frame.
        self._tracks = [t for t in self._tracks
                        if now - t.last_seen <= (config.max_gap if t.confirmed else 1)]
        count = len(detections)
        numbers = np.full(count, -1, dtype=np.int32)
        masks = _rle_dicts(detections)
        boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)
        # float32, as the model gives them: a score shown as 0.9 meets a threshold of 0.9.
        scores = np.asarray(detections.scores, dtype=np.float32)
        embeddings = _unit_rows(detections.embeddings, count)
        categories = np.asarray(detections.category_ids)
        overlap = self._overlap(boxes, masks, categories, now)
        appearance = self._appearance(embeddings, categories)
        ranking = overlap + config.appearance_weight * np.clip(appearance, 0.0, 1.0)
        high = np.flatnonzero(scores >= config.high_score)
        low = np.flatnonzero(scores < config.high_score)
        confirmed = [i for i, t in enumerate(self._tracks) if t.confirmed]
        for stage, threshold in ((high, config.match_iou), (low, config.low_match_iou)):
            pairs = _assign(np.where(overlap >= threshold, ranking, -1.0), stage, confirmed, 0.0)
            confirmed = self._take(pairs, confirmed, numbers, boxes, masks, embeddings, scores, now)
        # Lost tracks before tentative ones: an object back after a gap keeps its track.
        unmatched = np.flatnonzero(numbers < 0)
        if embeddings is not None and confirmed and len(unmatched):
            reach = self._within_reach(boxes, now)
            similar = np.where(reach & (appearance >= config.reid_similarity), appearance, -1.0)
            pairs = _assign(similar, unmatched, confirmed, config.reid_similarity)
            self._take(pairs, confirmed, numbers, boxes, masks, embeddings, scores, now)
        tentative = [i for i, t in enumerate(self._tracks) if not t.confirmed]
        unmatched = np.flatnonzero(numbers < 0)
        pairs = _assign(np.where(overlap >= config.match_iou, ranking, -1.0), unmatched, tentative, 0.0)
        self._take(pairs, tentative, numbers, boxes, masks, embeddings, scores, now)
        for det in np.flatnonzero(numbers < 0):  # in descending score: numbering is repeatable
            track = _Track(self._next_number, int(categories[det]), boxes[det].copy(), np.zeros(4),
                           masks[det] if masks else None, now,
                           embeddings[det].copy() if embeddings is not None else None)
            self._next_number += 1
            if scores[det] >= config.new_track_score:  # else a number that never becomes a track
                self._tracks.append(track)
                self._confirm(track)
            numbers[det] = track.number
        return numbers

    def _take(self, pairs, free_tracks, numbers, boxes, masks, embeddings, scores, now) -> list[int]:
        """Applies matched (detection, track) pairs; returns the tracks still free."""
        for det, track_index in pairs:
            track = self._tracks[track_index]
            embedding = embeddings[det] if embeddings is not None else None
            # A low-scoring detection moves the track but does not teach it a look.
            self._follow(track, boxes[det], masks[det] if masks else None,
                         embedding if scores[det] >= self.config.high_score else None, now)
            self._confirm(track)
            numbers[det] = track.number
        matched = {track_index for _, track_index in pairs}
        return [t for t in free_tracks if t not in matched]

    def _confirm(self, track: _Track) -> None:
        if not track.confirmed and track.hits >= self.config.confirm_hits:
            track.confirmed = True
            self.confirmed.add(track.number)

    def _overlap(self, boxes: np.ndarray, masks: list, category_ids: np.ndarray, now: int) -> np.ndarray:
        """(N detections, T tracks) overlap in 0..1; -1 where the categories differ."""
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

    def _appearance(self, embeddings: Optional[np.ndarray], category_ids: np.ndarray) -> np.ndarray:
        """(N, T) cosine of detections' and tracks' appearance; 0 where either has none."""
        result = np.zeros((len(category_ids), len(self._tracks)))
        if embeddings is None or not self._tracks:
            return result
        known = [i for i, t in enumerate(self._tracks) if t.appearance is not None
                 and len(t.appearance) == embeddings.shape[1]]
        if known:
            result[:, known] = embeddings @ np.stack([self._tracks[i].appearance for i in known]).T
        if self.config.same_category:
            track_categories = np.array([t.category_id for t in self._tracks])
            result[category_ids[:, None] != track_categories[None, :]] = -1.0
        return result

    def _within_reach(self, boxes: np.ndarray, now: int) -> np.ndarray:
        """(N, T): whether each detection's centre is within `reid_reach` box diagonals of
        where each track's motion puts it now."""
        predicted = np.stack([t.predicted_box(now) for t in self._tracks])
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        expected = (predicted[:, :2] + predicted[:, 2:]) / 2
        diagonal = np.hypot(predicted[:, 2] - predicted[:, 0], predicted[:, 3] - predicted[:, 1])
        distance = np.linalg.norm(centres[:, None, :] - expected[None, :, :], axis=2)
        return distance <= self.config.reid_reach * np.maximum(diagonal, 1.0)[None, :]

    @staticmethod
    def _follow(track: _Track, box: np.ndarray, mask: Optional[dict], embedding: Optional[np.ndarray],
                now: int) -> None:
        gap = max(1, now - track.last_seen)
        # Smoothed velocity: a jittery box should not fling the prediction away.
        track.velocity = 0.5 * track.velocity + 0.5 * (box - track.box) / gap
        track.box, track.mask, track.last_seen = box.copy(), mask, now
        track.hits = track.hits + 1 if gap == 1 or track.confirmed else 1
        if embedding is not None:
            if track.appearance is None or len(track.appearance) != len(embedding):
                track.appearance = embedding.copy()
            else:
                mixed = APPEARANCE_MOMENTUM * track.appearance + (1 - APPEARANCE_MOMENTUM) * embedding
                track.appearance = mixed / max(float(np.linalg.norm(mixed)), 1e-12)


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


def _unit_rows(embeddings, count: int) -> Optional[np.ndarray]:
    """(N, D) float64 unit rows of `embeddings`, or None when there are none."""
    if embeddings is None or count == 0:
        return None
    rows = np.asarray(embeddings, dtype=np.float64).reshape(count, -1)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _rle_dicts(detections: Detections) -> list:
    if detections.masks_rle is None or not detections.height:
        return []
    size = [int(detections.height), int(detections.width)]
    return [{"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
            for counts in detections.masks_rle]
