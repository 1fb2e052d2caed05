"""Tracking one video segment on its worker, and the summary that stitching needs.

The worker hands every frame it predicts, in order, to `SegmentTracking.track`: the
segment's own frames and then its lookahead (the first frames of the next segment, decoded
and tracked but not written). It returns the track numbers to write for the segment's own
frames, and gathers the `SegmentTracks` summary that goes into the commit record: where each
track was first written, which tracks were confirmed (by the end of the lookahead), the boxes
of the head and the lookahead, and for re-identification across the cut, the tracks still
remembered at the end and those born near the start (box, motion, appearance).
"""

from __future__ import annotations

import time

import numpy as np

from maskray.pipeline.tracking.stitch import SegmentTracks
from maskray.pipeline.tracking.settings import TrackerConfig
from maskray.pipeline.tracking.tracker import Detections, Tracker

HEAD_FRAMES = 3  # frames of overlap between neighbouring segments


class SegmentTracking:
    def __init__(self, shard_id: str, start_frame: int, end_frame: int, config: TrackerConfig,
                 head_frames: int = HEAD_FRAMES):
        # The solver's import (about a second, once per worker process) happens here, outside
        # `seconds`: that measures what tracking costs per frame, not what loading it costs.
        import scipy.optimize  # noqa: F401

        self.tracker = Tracker(config)
        self.config = config
        self.end_frame = end_frame
        self.head_frames = head_frames
        self.summary = SegmentTracks(shard_id, start_frame)
        self._own_frames_seen = 0
        self._frames: list[int] = []  # the frame of each update, in order
        self.seconds = 0.0  # time spent tracking (to weigh its cost against the worker's)

    def track(self, frame: int, prediction) -> np.ndarray:
        """Track numbers (N,) int32 for a `FramePrediction` of `frame` (frames in order)."""
        began = time.perf_counter()
        embeddings = getattr(prediction, "embeddings", None)
        numbers = self.tracker.update(Detections(
            prediction.boxes, prediction.scores, prediction.category_ids, prediction.masks_rle,
            prediction.height, prediction.width, embeddings))
        self._frames.append(frame)
        rows = [(frame, int(n), *(round(float(v), 2) for v in box))
                for n, box in zip(numbers, np.asarray(prediction.boxes).reshape(-1, 4))]
        if frame >= self.end_frame:
            self.summary.lookahead.extend(rows)
        else:
            if self._own_frames_seen < self.head_frames:
                self.summary.head.extend(rows)
            self._own_frames_seen += 1
            for instance, number in enumerate(numbers):
                if int(number) not in self.summary.first:
                    self.summary.first[int(number)] = (frame, instance)
                    if self._own_frames_seen <= self.config.max_gap + 1:  # may continue a lost track
                        self.summary.starts[int(number)] = _start(prediction, instance, frame)
        self.seconds += time.perf_counter() - began
        return numbers

    def record(self) -> dict:
        self.summary.confirmed = set(self.tracker.confirmed)
        self.summary.step = int(np.median(np.diff(self._frames))) if len(self._frames) > 1 else 1
        self.summary.reid = {"max_gap": self.config.max_gap, "match_iou": self.config.match_iou,
                             "reid_similarity": self.config.reid_similarity,
                             "reid_reach": self.config.reid_reach,
                             "same_category": self.config.same_category}
        for track in self.tracker.lost_or_alive():
            number, update = track.pop("track"), track.pop("update")
            self.summary.ends[number] = dict(track, frame=self._frames[update])
        data = self.summary.to_dict()
        data["tracker_s"] = round(self.seconds, 4)
        return data


def _start(prediction, instance: int, frame: int) -> dict:
    embeddings = getattr(prediction, "embeddings", None)
    return {"frame": frame, "category": int(prediction.category_ids[instance]),
            "box": [float(v) for v in np.asarray(prediction.boxes).reshape(-1, 4)[instance]],
            "appearance": None if embeddings is None else
            [float(v) for v in np.asarray(embeddings, np.float64)[instance]]}
