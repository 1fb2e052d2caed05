"""Stitching a video's segment tracks into track ids for the whole video.

Each segment's worker tracks its own frames and numbers its tracks 0, 1, ... (`Tracker`).
It also tracks a few frames past its end, the *lookahead*: the first frames of the next
segment, which it decodes and tracks but does not write. The next segment's worker records
the same frames as its *head*. Both summaries travel in the commit record (`SegmentTracks`).

Linking two neighbours compares, frame by frame, where the earlier segment's tracks are in
its lookahead with where the later segment's tracks are in its head: the same frames seen by
the same model, so the same objects sit in the same boxes. Each pair of tracks that share a
box (IoU >= LINK_IOU) gets a vote per frame; pairs are linked one to one, most votes first.

A video's id for a chain of linked tracks is its rank, from 1, by the chain's first written
instance `(frame, instance)`; so the same job gives the same ids, and a video cut into many
segments gives the same ids as one segment wherever the tracks agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from maskray.pipeline.tracking.tracker import box_iou

LINK_IOU = 0.7


@dataclass
class SegmentTracks:
    """A segment's tracking summary, as kept in its commit record.

    first: {track: (frame, instance)} where each track was first written (tracks seen only in
    the lookahead are absent). head / lookahead: rows (frame, track, x1, y1, x2, y2).
    """

    shard: str
    start_frame: int
    first: dict[int, tuple[int, int]] = field(default_factory=dict)
    head: list[tuple] = field(default_factory=list)
    lookahead: list[tuple] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"start_frame": self.start_frame,
                "first": [[t, f, i] for t, (f, i) in sorted(self.first.items())],
                "head": [list(r) for r in self.head], "lookahead": [list(r) for r in self.lookahead]}

    @classmethod
    def from_dict(cls, shard: str, data: dict) -> "SegmentTracks":
        return cls(shard, int(data["start_frame"]),
                   {int(t): (int(f), int(i)) for t, f, i in data.get("first", [])},
                   [tuple(r) for r in data.get("head", [])], [tuple(r) for r in data.get("lookahead", [])])


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
        for a, b in link_pairs(earlier, later):
            parent[root((later.shard, b))] = root((earlier.shard, a))
    chains: dict[tuple[str, int], list[tuple[str, int]]] = {}
    starts: dict[tuple[str, int], tuple[int, int]] = {}
    for segment in segments:
        for track, first in segment.first.items():
            node = (segment.shard, track)
            chain = root(node)
            chains.setdefault(chain, []).append(node)
            starts[chain] = min(starts.get(chain, first), first)
    rows = []
    for track_id, chain in enumerate(sorted(chains, key=lambda c: starts[c]), start=1):
        rows.extend((shard, track, track_id) for shard, track in chains[chain])
    return sorted(rows)


def _by_frame(rows: list[tuple]) -> dict[int, tuple[list[int], np.ndarray]]:
    frames: dict[int, tuple[list[int], list]] = {}
    for frame, track, *box in rows:
        tracks, boxes = frames.setdefault(int(frame), ([], []))
        tracks.append(int(track))
        boxes.append(box)
    return {f: (t, np.asarray(b, np.float64).reshape(-1, 4)) for f, (t, b) in frames.items()}
