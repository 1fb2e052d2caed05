"""What the viewer's pages ask of an output, as DuckDB queries through the locked-down reader.

Paging and filtering happen in DuckDB (`Output.sql`, the same lock-down as `maskray query`):
a page reads a few dozen rows, never the whole table. Filter values are bound as `$name`
parameters; the free `WHERE` text a user types is SQL by intent and runs under the lock-down
(no file access, no extensions), so it can only read this output's tables.

For speed, the connection keeps in memory a copy of both tables without the heavy columns
(`mask_rle`, `keypoints`): pages are found there, and the masks of the few instances a page
shows are then read from the Parquet parts with a filter on `source` and `frame`. A `WHERE`
that names a heavy column runs over the parts instead (slower, same answer).

While a job runs, the snapshot of committed shards is renewed at most every `REFRESH_S`
seconds (longer when copying it takes long), so the pages follow the job; a finished job is
read once.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Optional

import pyarrow.dataset as ds

from maskray.errors import UsageError
from maskray.pipeline import storage
from maskray.pipeline.output import layout
from maskray.pipeline.output.reader import Output, open_output, run_query
from maskray.pipeline.output.status import output_status

REFRESH_S = 3.0
MAX_PER_PAGE = 100
DRAWN_PER_THUMB = 20  # masks drawn on one thumbnail, best scores first
TRAIL_FRAMES = 12  # processed frames a track's trail reaches back
TRACK_STRIP_ROWS = 400
HISTOGRAM_BINS = 20
SORTS = {
    "score": "top_score DESC, source, frame",
    "instances": "matches DESC, top_score DESC, source, frame",
    "time": "source, frame",
}
INSTANCE_COLUMNS = "instance, category_id, category, score, x1, y1, x2, y2, mask_area, track_id"
HEAVY_COLUMNS = ("mask_rle", "keypoints")
HEAVY = re.compile(r"\b(mask_rle|keypoints|shard)\b", re.IGNORECASE)
LIGHT_TABLES = (
    "CREATE TEMP TABLE light_instances AS SELECT * EXCLUDE (mask_rle, keypoints, shard) FROM instances",
    "CREATE TEMP TABLE light_frames AS SELECT * EXCLUDE (shard) FROM frames",
)


# The gallery's form filters, each one condition with its value bound by DuckDB.
_FILTERS = (
    ("category", "category = $category", str),
    ("min_score", "score >= $min_score", float),
    ("max_score", "score <= $max_score", float),
    ("source", "source = $source", str),
    ("track", "track_id = $track", int),
)


@dataclass(frozen=True)
class GalleryFilter:
    """A gallery's question: which instances count; frames holding one are shown."""

    category: Optional[str] = None
    min_score: Optional[float] = None
    max_score: Optional[float] = None
    source: Optional[str] = None
    track: Optional[int] = None
    where: Optional[str] = None  # free SQL over `instances`' columns
    sort: str = "score"

    def conditions(self) -> tuple[str, dict]:
        """(the WHERE text, its parameters)."""
        parts, params = ["TRUE"], {}
        for name, condition, cast in _FILTERS:
            value = getattr(self, name)
            if value is not None and value != "":  # a filter not given (0 is a value)
                parts.append(condition)
                params[name] = cast(value)
        if self.where and self.where.strip():
            if ";" in self.where:
                raise UsageError("the WHERE filter is one condition: no ';'")
            parts.append(f"({self.where})")
        return " AND ".join(parts), params


class ViewQueries:
    """The viewer's reads of one output; one query at a time (DuckDB runs each on all cores)."""

    def __init__(self, output_uri: str):
        self.output: Output = open_output(output_uri)
        self.uri = self.output.uri
        self._lock = threading.Lock()
        self._read_at = time.monotonic()
        self._finished = storage.exists(layout.success_uri(self.uri))
        self._sources: Optional[dict[str, bool]] = None
        self._connection = None
        self._copy_s = 0.0  # how long copying the light columns took: refreshes wait 10x that

    def _sql(self, query: str, params: Optional[dict] = None) -> list[dict]:
        with self._lock:
            stale = not self._finished and time.monotonic() - self._read_at > max(REFRESH_S, 10 * self._copy_s)
            if stale or self._connection is None:
                self._reconnect()
            generation = self.output.committed.generation
            try:
                return run_query(self._connection, query, params=params).to_pylist()
            except (UsageError, OSError):
                # Compaction may have replaced the parts of this snapshot: once more on the new one.
                self._reconnect()
                if self.output.committed.generation == generation:
                    raise
                return run_query(self._connection, query, params=params).to_pylist()

    def _reconnect(self) -> None:
        """A connection over the latest snapshot (the same lock-down as `maskray query`)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self.output.refresh()
        self._sources = None
        self._finished = storage.exists(layout.success_uri(self.uri))
        self._read_at = time.monotonic()
        self._connection = self.output.connect()
        began = time.monotonic()
        for statement in LIGHT_TABLES:
            run_query(self._connection, statement)
        self._copy_s = time.monotonic() - began

    def sources(self) -> dict[str, bool]:
        """{source: is it an image} of every source the job read: the only files served."""
        if self._sources is None:
            rows = self._sql("SELECT source, bool_and(time IS NULL) AS is_image FROM light_frames GROUP BY 1")
            self._sources = {row["source"]: bool(row["is_image"]) for row in rows}
        return self._sources

    def overview(self) -> dict:
        try:
            status = output_status(self.uri).to_dict()
        except UsageError as error:
            status = {"state": "unknown", "message": str(error)}
        categories = self._sql(
            "SELECT category, count(*) AS n, avg(score) AS mean_score FROM light_instances GROUP BY 1 ORDER BY n DESC, 1")
        bins = self._sql(
            f"SELECT least(floor(score * {HISTOGRAM_BINS}), {HISTOGRAM_BINS - 1})::INT AS bin, count(*) AS n "
            "FROM light_instances GROUP BY 1 ORDER BY 1")
        histogram = [0] * HISTOGRAM_BINS
        for row in bins:
            histogram[max(0, row["bin"])] += row["n"]
        totals = self._sql(
            "SELECT count(DISTINCT source) AS sources, count(*) AS frames, "
            "count(*) FILTER (WHERE status = 'error') AS errors, sum(num_instances)::BIGINT AS instances FROM light_frames")[0]
        errors = self._sql("SELECT source, frame, error FROM light_frames WHERE status = 'error' "
                           "ORDER BY source, frame LIMIT 50")
        return {"status": _finite(status), "totals": totals, "categories": _finite(categories),
                "histogram": histogram, "errors": errors}

    def categories(self) -> list[str]:
        return [r["category"] for r in self._sql("SELECT DISTINCT category FROM light_instances ORDER BY 1")]

    def source_list(self, limit: int = 1000) -> list[dict]:
        return [{"source": s, "is_image": i} for s, i in sorted(self.sources().items())[:limit]]

    def gallery(self, chosen: GalleryFilter, page: int, per_page: int) -> dict:
        """One page of frames holding a matching instance, each with its matching instances."""
        per_page = max(1, min(int(per_page), MAX_PER_PAGE))
        page = max(0, int(page))
        if chosen.sort not in SORTS:
            raise UsageError(f"sort must be one of {', '.join(SORTS)}")
        where, params = chosen.conditions()
        table = "instances" if chosen.where and HEAVY.search(chosen.where) else "light_instances"
        frames = self._sql(
            f"SELECT source, frame, count(*) AS matches, max(score) AS top_score, any_value(time) AS time, "
            f"any_value(width) AS width, any_value(height) AS height FROM {table} WHERE {where} "
            f"GROUP BY source, frame ORDER BY {SORTS[chosen.sort]} LIMIT {per_page + 1} OFFSET {page * per_page}",
            params)
        more = len(frames) > per_page
        frames = frames[:per_page]
        if frames:
            # A join on the page's (source, frame) pairs: a hash probe, not a test per row.
            rows = self._sql(
                f"SELECT source, frame, {INSTANCE_COLUMNS} FROM {table} "
                "SEMI JOIN (SELECT unnest($page_sources) AS page_source, unnest($page_frames) AS page_frame) "
                f"ON source = page_source AND frame = page_frame WHERE {where} "
                f"QUALIFY row_number() OVER (PARTITION BY source, frame ORDER BY score DESC) <= {DRAWN_PER_THUMB}",
                dict(params, page_sources=[f["source"] for f in frames], page_frames=[f["frame"] for f in frames]))
            self._attach_masks(rows, keypoints=False)  # thumbnails draw masks and boxes only
            by_frame: dict[tuple, list] = {}
            for row in rows:
                by_frame.setdefault((row.pop("source"), row.pop("frame")), []).append(row)
            for f in frames:
                f["instances"] = sorted(by_frame.get((f["source"], f["frame"]), []), key=lambda r: r["instance"])
        return {"page": page, "per_page": per_page, "more": more, "frames": _finite(frames)}

    def frame(self, source: str, frame: int) -> Optional[dict]:
        """A frame's row, every instance on it, and for a video its neighbours and trails."""
        params = {"source": source, "frame": int(frame)}
        rows = self._sql("SELECT source, frame, time, width, height, num_instances, status, error FROM light_frames "
                         "WHERE source = $source AND frame = $frame", params)
        if not rows:
            return None
        found = rows[0]
        found["is_image"] = self.sources().get(source, found["time"] is None)
        found["instances"] = self._sql(
            f"SELECT source, frame, {INSTANCE_COLUMNS} FROM light_instances WHERE source = $source AND frame = $frame "
            "ORDER BY instance", params)
        self._attach_masks(found["instances"])
        for row in found["instances"]:
            del row["source"], row["frame"]
        if not found["is_image"]:
            found.update(self._sql(
                "SELECT max(frame) FILTER (WHERE frame < $frame) AS previous, "
                "min(frame) FILTER (WHERE frame > $frame) AS next, "
                "count(*) FILTER (WHERE frame < $frame) AS position, count(*) AS processed "
                "FROM light_frames WHERE source = $source AND status = 'ok'", params)[0])
            found["trails"] = self._sql(
                "SELECT track_id, frame, (x1 + x2) / 2 AS x, (y1 + y2) / 2 AS y FROM light_instances "
                "WHERE source = $source AND track_id IS NOT NULL AND frame <= $frame AND frame >= "
                f"(SELECT coalesce(min(frame), 0) FROM (SELECT frame FROM light_frames WHERE source = $source "
                f"AND status = 'ok' AND frame <= $frame ORDER BY frame DESC LIMIT {TRAIL_FRAMES})) "
                "ORDER BY track_id, frame", params)
        return _finite(found)

    def track(self, source: str, track_id: int) -> list[dict]:
        """Where one track was seen, frame by frame (for its strip of crops)."""
        return _finite(self._sql(
            "SELECT frame, time, category, score, x1, y1, x2, y2 FROM light_instances "
            f"WHERE source = $source AND track_id = $track ORDER BY frame LIMIT {TRACK_STRIP_ROWS}",
            {"source": source, "track": int(track_id)}))


    def _attach_masks(self, rows: list[dict], keypoints: bool = True) -> None:
        """Adds `mask_rle` (and `keypoints`) to instance rows (with source, frame, instance), read
        from the committed parts of only the frames these rows are on."""
        if not rows:
            return
        sources = sorted({r["source"] for r in rows})
        frames = sorted({r["frame"] for r in rows})
        with self._lock:
            dataset = self.output.dataset("instances")
        heavy_columns = list(HEAVY_COLUMNS if keypoints else HEAVY_COLUMNS[:1])
        table = dataset.to_table(columns=["source", "frame", "instance", *heavy_columns],
                                 filter=ds.field("source").isin(sources) & ds.field("frame").isin(frames))
        columns = [table.column(c).to_pylist() for c in table.column_names]
        heavy = {key[:3]: key[3:] for key in zip(*columns)}
        for row in rows:
            values = heavy.get((row["source"], row["frame"], row["instance"]), (None,) * len(heavy_columns))
            row.update(zip(heavy_columns, values))


def _finite(value):
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
