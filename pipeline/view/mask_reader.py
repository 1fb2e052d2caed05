"""The masks (and keypoints) of the few frames a viewer page shows, read from the Parquet parts.

A part holds a shard's instances in row groups of tens of thousands of rows, and a mask column
chunk is megabytes: decoding whole row groups for 24 frames is what made a gallery page slow.
For a local output, DuckDB's Parquet reader is asked for the page's frames in the parts that
hold them (found from each frame's shard): it prunes row groups by their statistics and reads
the mask strings of the matching rows only. That connection runs only the fixed query below
(never a user's SQL), and even so it may open nothing but this snapshot's instance parts
(`allowed_paths`, external access otherwise off, settings locked).

An `s3://` or `gs://` output is read through the pyarrow dataset of the snapshot instead (the
same rows; DuckDB here has no object-store client), kept between pages so part footers are not
read again.
"""

from __future__ import annotations

import threading
from typing import Optional

import duckdb
import pyarrow.dataset as ds

from maskray.pipeline import storage
from maskray.pipeline.output.reader import Output

HEAVY_COLUMNS = ("mask_rle", "keypoints")


class MaskReader:
    """Heavy columns of chosen frames of one snapshot of an output (see `Output.refresh`)."""

    def __init__(self, output: Output):
        self.output = output
        self._lock = threading.Lock()
        self._committed = None  # the snapshot the connection or dataset covers
        self._connection = None
        self._dataset = None
        self._paths_of_shard: dict[str, str] = {}
        self._shards: Optional[set] = None

    def _snapshot(self) -> None:
        """Follows the output's snapshot: parts change when shards commit or are compacted."""
        committed = self.output.committed  # a new object whenever the output is read anew
        if committed is self._committed and (self._connection or self._dataset) is not None:
            return
        self.close()
        relative, self._shards = committed.part_paths("instances")
        root = self.output.path.rstrip("/") + "/"
        paths = [root + path for path in relative]
        table = committed.table
        self._paths_of_shard = {shard: root + path for shard, path in
                                zip(table["shard"].to_pylist(), table["instances_path"].to_pylist()) if path}
        if storage.is_local(self.output.uri) and paths:
            connection = duckdb.connect(config={"autoinstall_known_extensions": False,
                                                "autoload_known_extensions": False})
            connection.execute("SET allowed_paths = $paths", {"paths": paths})
            connection.execute("SET enable_external_access = false")
            connection.execute("SET parquet_metadata_cache = true")
            connection.execute("SET lock_configuration = true")
            self._connection = connection
        else:
            self._dataset = self.output.dataset("instances")
        self._committed = committed

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection, self._dataset = None, None

    def read(self, frames: list[tuple[str, int, str]], keypoints: bool) -> dict[tuple, tuple]:
        """{(source, frame, instance): (mask_rle[, keypoints])} of the given (source, frame,
        shard) frames' instances."""
        if not frames:
            return {}
        columns = list(HEAVY_COLUMNS if keypoints else HEAVY_COLUMNS[:1])
        sources = sorted({source for source, _, _ in frames})
        numbers = sorted({frame for _, frame, _ in frames})
        with self._lock:
            self._snapshot()
            generation = self._committed.generation
            try:
                rows = self._rows(frames, columns, sources, numbers)
            except (duckdb.IOException, duckdb.PermissionException, OSError):
                # Compaction may have replaced this snapshot's parts: once more on the new one.
                self.output.refresh()
                self._snapshot()
                if self._committed.generation == generation:
                    raise
                rows = self._rows(frames, columns, sources, numbers)
        return {row[:3]: row[3:] for row in rows}

    def _rows(self, frames: list[tuple[str, int, str]], columns: list[str], sources: list[str],
              numbers: list[int]) -> list[tuple]:
        if self._connection is None:
            wanted = {(source, frame) for source, frame, _ in frames}
            table = self._dataset.to_table(columns=["source", "frame", "instance", *columns],
                                           filter=ds.field("source").isin(sources) & ds.field("frame").isin(numbers))
            return [row for row in zip(*(table.column(c).to_pylist() for c in table.column_names))
                    if row[:2] in wanted]
        paths = sorted({self._paths_of_shard[shard] for _, _, shard in frames if shard in self._paths_of_shard})
        if not paths:
            return []
        # Row groups are pruned on the frame numbers' bounds; the pairs then pick the exact frames.
        query = (f"SELECT source, frame, instance, {', '.join(columns)} FROM read_parquet($paths) "
                 "SEMI JOIN (SELECT unnest($pairs) AS page) ON source = page.s AND frame = page.f "
                 "WHERE frame IN $numbers")
        params = {"paths": paths, "numbers": numbers, "pairs": [{"s": source, "f": frame} for source, frame, _ in frames]}
        if self._shards is not None:  # a merged part also holds rows of shards not committed now
            query += " AND shard IN $shards"
            params["shards"] = sorted(self._shards)
        return self._connection.execute(query, params).fetchall()
