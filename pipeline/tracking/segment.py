"""Tracking one video segment on its worker, and the summary that stitching needs.

The worker hands every frame it predicts, in order, to `SegmentTracking.track`: the
segment's own frames and then its lookahead (the first frames of the next segment, decoded
and tracked but not written). It returns the track numbers to write for the segment's own
frames, and gathers the `SegmentTracks` summary that goes into the commit record.
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
        self.tracker = Tracker(config)
        self.end_frame = end_frame
        self.head_frames = head_frames
        self.summary = SegmentTracks(shard_id, start_frame)
        self._own_frames_seen = 0
        self.seconds = 0.0  # time spent tracking (to weigh its cost against the worker's)

    def track(self, frame: int, prediction) -> np.ndarray:
        """Track numbers (N,) int32 for a `FramePrediction` of `frame` (frames in order)."""
        began = time.perf_counter()
        numbers = self.tracker.update(Detections(
            prediction.boxes, prediction.scores, prediction.category_ids, prediction.masks_rle,
            prediction.height, prediction.width))
        rows = [(frame, int(n), *(round(float(v), 2) for v in box))
                for n, box in zip(numbers, np.asarray(prediction.boxes).reshape(-1, 4))]
        if frame >= self.end_frame:
            self.summary.lookahead.extend(rows)
        else:
            if self._own_frames_seen < self.head_frames:
                self.summary.head.extend(rows)
            self._own_frames_seen += 1
            for instance, number in enumerate(numbers):
                self.summary.first.setdefault(int(number), (frame, instance))
        self.seconds += time.perf_counter() - began
        return numbers

    def record(self) -> dict:
        data = self.summary.to_dict()
        data["tracker_s"] = round(self.seconds, 4)
        return data
