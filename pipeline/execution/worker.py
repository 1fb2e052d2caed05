"""The worker: one model replica that turns shards into committed Parquet parts.

`ShardWorker` is a plain class (the driver wraps it with `ray.remote(num_gpus=...)`), so
one actor holds one `Predictor`, loaded once. For each shard a decode thread runs ahead of
inference through a bounded queue (the accelerator does not wait for the CPU, and memory
holds at most `2 * batch_size` decoded frames); frames are batched for the Predictor, the
results go to a `ShardWriter`, and only the small commit record goes back to the driver.

Inputs that cannot be read become `frames` rows with status 'error'; frames decoded before a
video breaks are kept. Nothing about one input stops the shard.
"""

from __future__ import annotations

import os
import queue
import socket
import sys
import threading
import time
from typing import Iterator, Optional, Union

import numpy as np
import pyarrow as pa

from maskray.pipeline.inputs.geometry import restore
from maskray.pipeline.inputs.shard_frames import iter_shard_frames, video_segment
from maskray.pipeline.output.schema import (FrameError, FrameRef, error_batches, instances_schema,
                                            predictions_to_batches)

_END = object()


class ShardWorker:
    """Holds one Predictor; `process(shard)` decodes, predicts, writes and commits a shard."""

    def __init__(self, predictor_config: dict, sink, batch_size: int, force_cpu: bool = False,
                 tracking: Optional[dict] = None, weights_data: Optional[bytes] = None,
                 embeddings: bool = False):
        from maskray.errors import MaskrayError
        from maskray.models.predictor import Predictor, PredictorConfig

        self.gpu_ids = _assigned_gpu_ids()
        self.device = _choose_device(self.gpu_ids, force_cpu)
        config = dict(predictor_config, device=self.device)
        if self.device == "cpu":
            config["precision"] = "fp32"
        # A user's mistake found while loading (weights not found, offline `coco`) is kept and
        # raised by every call: Ray then hands the driver the error itself, not a dead actor.
        self.startup_error: Optional[MaskrayError] = None
        try:
            # `weights_data`: the bytes the driver fetched (Ray resolved their ObjectRef).
            self.predictor = Predictor(PredictorConfig(**config), weights_data=weights_data)
        except MaskrayError as error:
            self.startup_error = error
        self.sink = sink  # pipeline.output.sink.OutputSink: where and for which job we write
        self.batch_size = max(1, int(batch_size))
        self.model_name = predictor_config.get("model")
        self.tracking = tracking  # TrackerConfig fields: video segments are tracked; None: off
        # `--embeddings`: store each instance's appearance vector (its size is the model's).
        self.embedding_size = self.predictor.embedding_size if embeddings and self.startup_error is None else None
        # pyarrow imports pandas on its first pa.array() (about 1 s): pay that while the
        # replica starts, not inside its first shard.
        pa.array([0])

    def describe(self) -> dict:
        """Where this replica runs: host, pid, the GPU ids Ray assigned, CUDA_VISIBLE_DEVICES."""
        if self.startup_error is not None:
            raise self.startup_error
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "gpu_ids": [str(i) for i in self.gpu_ids or []],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "device": self.device,
            "weights_id": self.predictor.weights_id,
        }

    def process(self, shard, attempt: int = 1, planned: str = "", piece: str = "",
                failure: Optional[str] = None):
        """Decode, predict and write one shard; returns its commit record (already written).

        `planned`/`piece`: the planned shard this is (a bisected piece of); `failure`: the
        inputs failed the worker every time, so write `failure` as their error rows instead.
        """
        if self.startup_error is not None:
            raise self.startup_error
        started = time.time()
        writer = self.sink.shard_writer(
            shard.id, attempt,
            {"maskray.model": self.model_name, "maskray.weights_id": self.predictor.weights_id},
            **({"instances_schema": instances_schema(self.embedding_size)} if self.embedding_size else {}),
        )
        counts = {"frames": 0, "errors": 0, "instances": 0, "transient_errors": 0}
        timings = {"decode_wait_s": 0.0, "infer_s": 0.0}
        forward_before = self.predictor.forward_s

        pending_refs: list[FrameRef] = []
        pending_rgb: list[np.ndarray] = []
        pending_geometry: list = []  # how each array maps back to its frame's own pixels
        tracking = _segment_tracking(shard, self.tracking)
        lookahead = set(getattr(shard, "lookahead", ()))

        def flush() -> None:
            if not pending_refs:
                return
            began = time.time()
            predictions = self.predictor.predict(pending_rgb)
            predictions = [restore(p, g) for p, g in zip(predictions, pending_geometry)]
            timings["infer_s"] += time.time() - began
            refs, tracks = pending_refs, None
            if tracking is not None:  # every frame, in order; lookahead frames are not written
                tracks = [tracking.track(r.frame, p) for r, p in zip(pending_refs, predictions)]
                own = [i for i, r in enumerate(pending_refs) if r.frame not in lookahead]
                refs = [pending_refs[i] for i in own]
                predictions, tracks = [predictions[i] for i in own], [tracks[i] for i in own]
            instances, frames = predictions_to_batches(refs, predictions, shard.id, tracks, self.embedding_size)
            writer.add(instances, frames)
            counts["frames"] += len(refs)
            counts["instances"] += instances.num_rows
            pending_refs.clear()
            pending_rgb.clear()
            pending_geometry.clear()

        output = self.sink.output
        items = _failure_rows(shard, failure, output) if failure else _decode_ahead(shard, output, self.batch_size, timings)
        for item in items:
            if isinstance(item, FrameError):
                writer.add(*error_batches([item], shard.id, self.embedding_size))
                counts["frames"] += 1
                counts["errors"] += 1
                # An error that may go away (a storage timeout): a resume redoes the shard.
                counts["transient_errors"] += int(item.transient)
                continue
            ref, rgb, geometry = item
            pending_refs.append(ref)
            pending_rgb.append(rgb)
            pending_geometry.append(geometry)
            if len(pending_refs) >= self.batch_size:
                flush()
        flush()

        timings["forward_s"] = self.predictor.forward_s - forward_before  # inside the model
        timings = {key: round(value, 3) for key, value in timings.items()}
        timings["total_s"] = round(time.time() - started, 3)
        return writer.commit(
            frames=counts["frames"], frames_ok=counts["frames"] - counts["errors"], errors=counts["errors"],
            instances=counts["instances"], transient_errors=counts["transient_errors"],
            worker=self.describe(), timings=timings,
            planned=planned or shard.id, piece=piece,
            # What stitching needs, and the tracker's share of the time.
            tracks=tracking.record() if tracking is not None else None,
        )


def _failure_rows(shard, message: str, output: Optional[str]) -> Iterator[FrameError]:
    """One error row per input of a shard whose inputs failed the worker every time."""
    if shard.kind == "video" and not shard.planning_error:
        try:
            index, frames = video_segment(shard, output)
        except Exception:  # noqa: BLE001 - no index: one row at the segment's start says why
            index, frames = None, [shard.start_frame]
        for frame in frames:
            yield FrameError(shard.uris[0], int(frame), index.time(frame) if index else None, message)
        return
    if shard.kind == "pages":
        for frame in range(shard.start_frame, shard.end_frame):
            yield FrameError(shard.uris[0], frame, None, message)
        return
    for uri in shard.uris:
        yield FrameError(uri, 0, None, message)


def _segment_tracking(shard, settings: Optional[dict]):
    """The tracker of a video segment, or None (images, a planning error, tracking off)."""
    if settings is None or shard.kind != "video" or shard.planning_error:
        return None
    from maskray.pipeline.tracking.segment import SegmentTracking
    from maskray.pipeline.tracking.settings import TrackerConfig

    return SegmentTracking(shard.id, shard.start_frame, shard.end_frame, TrackerConfig(**settings))


def _decode_ahead(shard, output: Optional[str], batch_size: int, timings: dict) -> Iterator[Union[tuple, FrameError]]:
    """Items of `iter_shard_frames(shard)`, decoded by a thread running ahead of the caller.

    The queue holds at most `2 * batch_size` frames; if the caller stops early (an exception),
    the thread notices the stop flag and ends instead of blocking forever.
    """
    items: queue.Queue = queue.Queue(maxsize=2 * batch_size)
    stop = threading.Event()
    failure: list[BaseException] = []

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iter_shard_frames(shard, output):
                if not put(item):
                    return
        except BaseException as error:  # handed to the consumer, which re-raises it
            failure.append(error)
        put(_END)

    thread = threading.Thread(target=produce, name=f"decode-{shard.id}", daemon=True)
    thread.start()
    try:
        while True:
            began = time.time()
            item = items.get()
            timings["decode_wait_s"] += time.time() - began
            if item is _END:
                break
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        thread.join(timeout=5)


def _assigned_gpu_ids() -> Optional[list]:
    """GPU ids Ray gave this actor; None outside Ray (benchmarks/worker_profile.py), where
    nothing is assigned and a visible GPU is used."""
    ray = sys.modules.get("ray")  # a Ray worker has imported Ray; nothing else need import it
    if ray is None or not ray.is_initialized():
        return None
    try:
        return list(ray.get_runtime_context().get_accelerator_ids().get("GPU", []))
    except Exception:  # not inside a Ray worker
        return []


def _choose_device(gpu_ids: Optional[list], force_cpu: bool) -> str:
    if force_cpu or gpu_ids == []:
        return "cpu"
    import torch

    # Ray sets CUDA_VISIBLE_DEVICES to the assigned ids, so "cuda" means our own GPU.
    return "cuda" if torch.cuda.is_available() else "cpu"

