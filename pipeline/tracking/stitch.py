"""Stitching a video's segment tracks into track ids for the whole video.

Each segment's worker tracks its own frames and numbers its tracks 0, 1, ... (`Tracker`).
It also tracks a few frames past its end, the *lookahead*: the first frames of the next
segment, which it decodes and tracks but does not write. The next segment's worker records
the same frames as its *head*. Both summaries travel in the commit record (`SegmentTracks`).

Linking two neighbours compares, frame by frame, where the earlier segment's tracks are in
its lookahead with where the later segment's tracks are in its head: the same frames seen by
the same model, so the same objects sit in the same boxes. Each pair of tracks that share a
box (IoU >= LINK_IOU) gets a vote per frame; pairs are linked one to one, most votes first.

An object lost before a cut and back after it is seen by no frame of the overlap. Each
segment also records the tracks its tracker still remembered at its end (last box, motion,
appearance) and the tracks born in its first `max_gap` frames; an earlier segment's track
left unlinked is linked to a later one's new track by the tracker's own rule for a lost
track (tracker.py, stage 3): within `max_gap` frames, and either overlapping where its motion
puts it or looking alike (appearance cosine >= `reid_similarity`) within `reid_reach`.

Tracks never confirmed (a false positive seen once) get no id, unless linked to one that was.

A video's id for a chain of linked tracks is its rank, from 1, by the chain's first written
instance `(frame, instance)`; so the same job gives the same ids, and a video cut into many
segments gives the same ids as one segment wherever the tracks agree.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from maskray.pipeline.tracking.tracker import box_iou

LINK_IOU = 0.7


@dataclass
class SegmentTracks:
    """A segment's tracking summary, as kept in its commit record.

    first: {track: (frame, instance)} where each track was first written (tracks seen only in
    the lookahead are absent). head / lookahead: rows (frame, track, x1, y1, x2, y2).
    confirmed: the tracks that became tracks (None, as in older records: all of them).
    ends: {track: {frame, category, box, velocity, appearance}} of the confirmed tracks the
    tracker remembered at the end; starts: {track: {frame, category, box, appearance}} of the
    tracks born in the first frames. step: frames between processed frames. reid: the
    tracker settings the re-identification uses.
    """

    shard: str
    start_frame: int
    first: dict[int, tuple[int, int]] = field(default_factory=dict)
    head: list[tuple] = field(default_factory=list)
    lookahead: list[tuple] = field(default_factory=list)
    confirmed: Optional[set[int]] = None
    ends: dict[int, dict] = field(default_factory=dict)
    starts: dict[int, dict] = field(default_factory=dict)
    step: int = 1
    reid: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = {"start_frame": self.start_frame,
                "first": [[t, f, i] for t, (f, i) in sorted(self.first.items())],
                "head": [list(r) for r in self.head], "lookahead": [list(r) for r in self.lookahead]}
        if self.confirmed is not None:
            data.update(confirmed=sorted(self.confirmed), step=self.step, reid=self.reid,
                        ends=[dict(_rounded(v), track=t) for t, v in sorted(self.ends.items())],
                        starts=[dict(_rounded(v), track=t) for t, v in sorted(self.starts.items())])
        return data

    @classmethod
    def from_dict(cls, shard: str, data: dict) -> "SegmentTracks":
        confirmed = data.get("confirmed")
        return cls(shard, int(data["start_frame"]),
                   {int(t): (int(f), int(i)) for t, f, i in data.get("first", [])},
                   [tuple(r) for r in data.get("head", [])], [tuple(r) for r in data.get("lookahead", [])],
                   None if confirmed is None else {int(t) for t in confirmed},
                   {int(e["track"]): e for e in data.get("ends", [])},
                   {int(e["track"]): e for e in data.get("starts", [])},
                   int(data.get("step", 1)), dict(data.get("reid", {})))

    def is_confirmed(self, track: int) -> bool:
        return self.confirmed is None or track in self.confirmed


def _rounded(entry: dict) -> dict:
    """A start or end as stored: boxes to 0.01 pixel, the appearance as base64 of float16 (a
    1024-value vector in 2.7 kB of the commit record, not 10)."""
    out = {}
    for key, value in entry.items():
        if key == "appearance" and value is not None and not isinstance(value, str):
            out[key] = base64.b64encode(np.asarray(value, np.float16).tobytes()).decode("ascii")
        elif isinstance(value, list):
            out[key] = [round(float(v), 2) for v in value]
        else:
            out[key] = value
    return out


def _vector(value) -> Optional[np.ndarray]:
    """An appearance as stored (base64 of float16) or in memory (a list), as float64."""
    if value is None:
        return None
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), np.float16).astype(np.float64)
    return np.asarray(value, np.float64)


def link_pairs(earlier: SegmentTracks, later: SegmentTracks) -> list[tuple[int, int]]:
    """(earlier track, later track) pairs that are the same object, one to one."""
    votes: dict[tuple[int, int], int] = {}
    ahead = _by_frame(earlier.lookahead)
    for frame, (later_tracks, later_boxes) in sorted(_by_frame(later.head).items()):
        if frame not in ahead:
            continue
        earlier_tracks, earlier_boxes = ahead[frame]
        overlap = box_iou(earlier_boxes, later_boxes)
        # Greedy by IoU per frame is enough: the boxes are (nearly) identical or far apart.
        order = sorted(((-overlap[i, j], earlier_tracks[i], later_tracks[j], i, j)
                        for i in range(len(earlier_tracks)) for j in range(len(later_tracks))
                        if overlap[i, j] >= LINK_IOU))
        used_i, used_j = set(), set()
        for _, a, b, i, j in order:
            if i in used_i or j in used_j:
                continue
            used_i.add(i)
            used_j.add(j)
            votes[(a, b)] = votes.get((a, b), 0) + 1
    pairs, linked_a, linked_b = [], set(), set()
    for (a, b), _ in sorted(votes.items(), key=lambda item: (-item[1], item[0])):
        if a not in linked_a and b not in linked_b:
            pairs.append((a, b))
            linked_a.add(a)
            linked_b.add(b)
    return sorted(pairs)


def assign_track_ids(segments: list[SegmentTracks]) -> list[tuple[str, int, int]]:
    """Rows (shard, track, track_id) for every written track of one video's segments."""
    segments = sorted(segments, key=lambda s: s.start_frame)
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def root(node):
        while parent.get(node, node) != node:
            node = parent[node]
        return node

    for earlier, later in zip(segments, segments[1:]):
        pairs = link_pairs(earlier, later)
        pairs += reidentify(earlier, later, {a for a, _ in pairs}, {b for _, b in pairs})
        for a, b in pairs:
            parent[root((later.shard, b))] = root((earlier.shard, a))
    chains: dict[tuple[str, int], list[tuple[str, int]]] = {}
    starts: dict[tuple[str, int], tuple[int, int]] = {}
    confirmed: set[tuple[str, int]] = set()
    for segment in segments:
        for track, first in segment.first.items():
            node = (segment.shard, track)
            chain = root(node)
            chains.setdefault(chain, []).append(node)
            starts[chain] = min(starts.get(chain, first), first)
            if segment.is_confirmed(track):
                confirmed.add(chain)
    rows = []
    tracked = [chain for chain in chains if chain in confirmed]
    for track_id, chain in enumerate(sorted(tracked, key=lambda c: starts[c]), start=1):
        rows.extend((shard, track, track_id) for shard, track in chains[chain])
    return sorted(rows)


def reidentify(earlier: SegmentTracks, later: SegmentTracks, linked_earlier: set,
               linked_later: set) -> list[tuple[int, int]]:
    """(earlier track, later track) pairs of an object lost before the cut and back after it,
    by the tracker's rule for a lost track, one to one (best first)."""
    settings = earlier.reid
    if not settings:
        return []
    candidates = []
    for a, end in sorted(earlier.ends.items()):
        if a in linked_earlier:
            continue
        for b, start in sorted(later.starts.items()):
            if b in linked_later or not later.is_confirmed(b):
                continue
            if settings.get("same_category", True) and end["category"] != start["category"]:
                continue
            gap = (start["frame"] - end["frame"]) / max(1, earlier.step)
            if not 0 < gap <= settings["max_gap"] + 1:
                continue
            predicted = np.asarray(end["box"]) + np.asarray(end["velocity"]) * gap
            overlap = float(box_iou(predicted, start["box"])[0, 0])
            similarity = _cosine(end.get("appearance"), start.get("appearance"))
            centre = (predicted[:2] + predicted[2:]) / 2
            found = (np.asarray(start["box"][:2]) + np.asarray(start["box"][2:])) / 2
            diagonal = max(1.0, float(np.hypot(*(predicted[2:] - predicted[:2]))))
            near = np.linalg.norm(found - centre) <= settings["reid_reach"] * diagonal
            if overlap >= settings["match_iou"] or (near and similarity >= settings["reid_similarity"]):
                candidates.append((-max(overlap, similarity), a, b))
    pairs, used_a, used_b = [], set(), set()
    for _, a, b in sorted(candidates):
        if a not in used_a and b not in used_b:
            pairs.append((a, b))
            used_a.add(a)
            used_b.add(b)
    return pairs


def _cosine(a, b) -> float:
    a, b = _vector(a), _vector(b)
    if a is None or b is None or len(a) != len(b):
        return -1.0
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def _by_frame(rows: list[tuple]) -> dict[int, tuple[list[int], np.ndarray]]:
    frames: dict[int, tuple[list[int], list]] = {}
    for frame, track, *box in rows:
        tracks, boxes = frames.setdefault(int(frame), ([], []))
        tracks.append(int(track))
        boxes.append(box)
    return {f: (t, np.asarray(b, np.float64).reshape(-1, 4)) for f, (t, b) in frames.items()}
