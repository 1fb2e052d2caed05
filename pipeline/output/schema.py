"""Arrow schemas of the output tables and the functions that fill them.

The contract (docs/output.md, "The contract"): `instances` has one row per detected instance,
`frames` one row per processed frame (also with zero instances, or an error). Both schemas
and the batches come from the column lists in columns.py.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pyarrow as pa

from maskray.pipeline.inputs.frame_ref import FrameError, FrameRef
from maskray.pipeline.output.columns import (FRAME_COLUMNS, INSTANCE_COLUMNS, FrameRows, InstanceRows,
                                             embedding_column)

INSTANCES_SCHEMA = pa.schema([column.field for column in INSTANCE_COLUMNS])
FRAMES_SCHEMA = pa.schema([column.field for column in FRAME_COLUMNS])



def instance_columns(embedding_size: Optional[int] = None) -> tuple:
    """The instance columns of a job: INSTANCE_COLUMNS, plus `embedding` of that size if asked."""
    return INSTANCE_COLUMNS + ((embedding_column(embedding_size),) if embedding_size else ())


def instances_schema(embedding_size: Optional[int] = None) -> pa.Schema:
    if not embedding_size:
        return INSTANCES_SCHEMA
    return pa.schema([column.field for column in instance_columns(embedding_size)])


__all__ = ["INSTANCES_SCHEMA", "instances_schema", "FRAMES_SCHEMA", "FrameRef", "FrameError", "predictions_to_batches",
           "frames_batch", "error_batches"]


def predictions_to_batches(
    refs: Sequence[FrameRef], predictions: Sequence, shard: str,
    tracks: Optional[Sequence[np.ndarray]] = None, embedding_size: Optional[int] = None,
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """Turn frames and their predictions into (instances, frames) record batches.

    `predictions[i]` belongs to `refs[i]` and is a `models.frame_prediction.FramePrediction`;
    instances are written in the order given, which is descending score. `tracks[i]`, when
    given, holds the track number of each instance of frame i. `embedding_size`: also the
    `embedding` column (`submit --embeddings`).
    """
    rows = InstanceRows(refs, predictions, shard, tracks)
    instances = pa.RecordBatch.from_arrays([column.array(rows) for column in instance_columns(embedding_size)],
                                           schema=instances_schema(embedding_size))
    frames = frames_batch([(r, int(n)) for r, n in zip(refs, rows.counts)], shard)
    return instances, frames


def frames_batch(rows: Sequence[tuple[FrameRef | FrameError, int]], shard: str) -> pa.RecordBatch:
    """Rows of the `frames` table: (ref or error, num_instances) per frame.

    A `FrameError` row gets status 'error', its message, and null width/height.
    """
    frame_rows = FrameRows(rows, shard)
    return pa.RecordBatch.from_arrays([column.array(frame_rows) for column in FRAME_COLUMNS],
                                      schema=FRAMES_SCHEMA)


def error_batches(errors: Sequence[FrameError], shard: str,
                  embedding_size: Optional[int] = None) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """(empty instances, error frames) for inputs that could not be decoded."""
    empty = pa.RecordBatch.from_pylist([], schema=instances_schema(embedding_size))
    return empty, frames_batch([(e, 0) for e in errors], shard)
