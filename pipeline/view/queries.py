"""What the viewer's pages ask of an output, as DuckDB queries through the locked-down reader.

Paging and filtering happen in DuckDB (`Output.sql`, the same lock-down as `maskray query`):
a page reads a few dozen rows, never the whole table. Filter values are bound as `$name`
parameters; the free `WHERE` text a user types is SQL by intent and runs under the lock-down
(no file access, no extensions), so it can only read this output's tables.

For speed, the connection keeps in memory, per snapshot, a copy of both tables without the
heavy columns (`mask_rle`, `keypoints`), the frames numbered in (source, frame) order (`fid`)
and a per-frame summary (instance count, best score). The unfiltered gallery is a slice of
that summary; a filter's frames are found once (a GROUP BY of its instances, in order) and
kept, so the next pages of it are lookups. The masks of the few instances a page shows are
then read from the parts holding their frames (`mask_reader.py`). A `WHERE` that names a
heavy column runs over the parts instead (slower, same answer).

While a job runs, the snapshot of committed shards is renewed at most every `REFRESH_S`
seconds (longer when copying it takes long), so the pages follow the job; a finished job is
read once.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Optional

from maskray.errors import UsageError
from maskray.pipeline import storage
from maskray.pipeline.output import layout
from maskray.pipeline.output.reader import Output, open_output
from maskray.pipeline.output.sql_views import run_query
from maskray.pipeline.output.status import output_status
from maskray.pipeline.view.gallery_filter import GalleryFilter
from maskray.pipeline.view.mask_reader import MaskReader

REFRESH_S = 3.0
MAX_PER_PAGE = 100
DRAWN_PER_THUMB = 20  # masks drawn on one thumbnail, best scores first
TRAIL_FRAMES = 12  # processed frames a track's trail reaches back
TRACK_STRIP_ROWS = 400
HISTOGRAM_BINS = 20
# `fid` numbers the frames in (source, frame) order: grouping, sorting and finding a page's
# rows by one integer is several times faster than by a (string, number) pair.
SORTS = {
    "score": "top_score DESC, fid",
    "instances": "matches DESC, top_score DESC, fid",
    "time": "fid",
}
INSTANCE_COLUMNS = "instance, category_id, category, score, x1, y1, x2, y2, mask_area, track_id"
HEAVY = re.compile(r"\b(mask_rle|keypoints|shard)\b", re.IGNORECASE)
# Built once per snapshot: the tables without their heavy columns, the frame numbering, and
# per frame its instance count and best score (the unfiltered gallery reads only that).
LIGHT_TABLES = (
    "CREATE TEMP TABLE light_frames AS SELECT * FROM frames",
    "CREATE TEMP TABLE unnumbered AS SELECT * EXCLUDE (mask_rle, keypoints, shard) FROM instances",
    "CREATE TEMP TABLE frame_ids AS SELECT source, frame, any_value(shard) AS frame_shard, "
    "row_number() OVER (ORDER BY source, frame)::INTEGER AS fid FROM (SELECT source, frame, shard FROM light_frames "
    "UNION ALL SELECT source, frame, NULL FROM unnumbered) GROUP BY source, frame",
    # Sorted by fid: a page's instances then sit in a few stretches of the table.
    "CREATE TEMP TABLE light_instances AS SELECT k.fid, i.* FROM unnumbered i JOIN frame_ids k "
    "ON i.source = k.source AND i.frame = k.frame ORDER BY k.fid, i.instance",
    "DROP TABLE unnumbered",
    "CREATE TEMP TABLE frame_summary AS SELECT i.fid, any_value(i.source) AS source, any_value(i.frame) AS frame, "
    "count(*) AS matches, max(i.score) AS top_score, any_value(i.time) AS time, any_value(i.width) AS width, "
    "any_value(i.height) AS height, any_value(k.frame_shard) AS frame_shard "
    "FROM light_instances i JOIN frame_ids k USING (fid) GROUP BY i.fid",
)
FRAME_COLUMNS = "fid, source, frame, time, width, height, frame_shard"
CACHED_ORDERS = 8  # filters whose whole ordered list of frames is kept, for paging on,
CACHED_ORDER_BYTES = 64 << 20  # and at most this much of them (12 bytes a frame)


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
        self._masks = MaskReader(self.output)
        self._generation = 0  # counts snapshots: cached orders of older ones are not used
        self._orders: "OrderedDict[tuple, tuple]" = OrderedDict()
        self._category_ids: Optional[dict[str, list[int]]] = None

    def _sql(self, query: str, params: Optional[dict] = None, arrow: bool = False):
        """Rows as dicts (or an Arrow table) of a query on the latest snapshot."""
        with self._lock:
            stale = not self._finished and time.monotonic() - self._read_at > max(REFRESH_S, 10 * self._copy_s)
            if stale or self._connection is None:
                self._reconnect()
            generation = self.output.committed.generation
            try:
                found = run_query(self._connection, query, params=params)
                return found if arrow else found.to_pylist()
            except (UsageError, OSError):
                # Compaction may have replaced the parts of this snapshot: once more on the new one.
                self._reconnect()
                if self.output.committed.generation == generation:
                    raise
                found = run_query(self._connection, query, params=params)
                return found if arrow else found.to_pylist()

    def _reconnect(self) -> None:
        """A connection over the latest snapshot (the same lock-down as `maskray query`)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self.output.refresh()
        self._sources, self._category_ids = None, None
        self._generation += 1
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
        where, params = self._conditions(chosen)
        if chosen.where and HEAVY.search(chosen.where):  # over the parts: numbered through frame_ids
            table = "(SELECT k.fid, i.* FROM instances i JOIN frame_ids k ON i.source = k.source AND i.frame = k.frame)"
        else:
            table = "light_instances"
        frames = self._page_frames(table, where, params, chosen.sort, page * per_page, per_page + 1)
        more = len(frames) > per_page
        frames = frames[:per_page]
        if frames:
            rows = self._sql(
                # A semi join on the page's fids: a hash probe per row, and only matches are materialised.
                f"SELECT fid, source, frame, {INSTANCE_COLUMNS} FROM {table} "
                f"SEMI JOIN (SELECT unnest($page_fids) AS page_fid) ON fid = page_fid WHERE {where} "
                f"QUALIFY row_number() OVER (PARTITION BY fid ORDER BY score DESC) <= {DRAWN_PER_THUMB}",
                dict(params, page_fids=[f["fid"] for f in frames]))
            self._attach_masks(rows, {(f["source"], f["frame"]): f["frame_shard"] for f in frames},
                               keypoints=False)  # thumbnails draw masks and boxes only
            by_frame: dict[int, list] = {}
            for row in rows:
                by_frame.setdefault(row.pop("fid"), []).append(row)
                del row["source"], row["frame"]
            for f in frames:
                f["instances"] = sorted(by_frame.get(f["fid"], []), key=lambda r: r["instance"])
                del f["fid"], f["frame_shard"]
        return {"page": page, "per_page": per_page, "more": more, "frames": _finite(frames)}

    def _conditions(self, chosen: GalleryFilter) -> tuple[str, dict]:
        """The filter's WHERE; a category by its id where it has one (an integer test, not a
        string compare, on every row)."""
        ids = self.category_ids().get(chosen.category or "")
        if ids is None or len(ids) != 1:
            return chosen.conditions()
        where, params = replace(chosen, category=None).conditions()
        return f"{where} AND category_id = $category_id", dict(params, category_id=ids[0])

    def _page_frames(self, table: str, where: str, params: dict, sort: str, offset: int, count: int) -> list[dict]:
        """Frames `offset` to `offset + count` of the filter's frames in `sort` order. Every frame
        with an instance is a slice of the per-frame summary; another filter's frames are found
        once (a GROUP BY of its instances, in order) and kept for the pages after, so paging on
        costs a lookup, not a scan."""
        order = SORTS[sort]
        if where == "TRUE":
            return self._sql(f"SELECT {FRAME_COLUMNS}, matches, top_score FROM frame_summary "
                             f"ORDER BY {order} LIMIT {count} OFFSET {offset}")
        key = (table, where, tuple(sorted(params.items())), sort)
        with self._lock:
            generation = self._generation
            ordered = self._orders.get(key)
            if ordered is not None and ordered[0] == generation:
                self._orders.move_to_end(key)
        if ordered is None or ordered[0] != generation:
            rows = self._sql(f"SELECT fid, count(*)::INTEGER AS matches, max(score) AS top_score FROM {table} "
                             f"WHERE {where} GROUP BY fid ORDER BY {order}", params, arrow=True)
            ordered = (generation, rows["fid"].to_numpy(), rows["matches"].to_numpy(), rows["top_score"].to_numpy())
            with self._lock:
                self._orders[key] = ordered
                while len(self._orders) > 1 and (len(self._orders) > CACHED_ORDERS or sum(
                        sum(array.nbytes for array in kept[1:]) for kept in self._orders.values()) > CACHED_ORDER_BYTES):
                    self._orders.popitem(last=False)
        _, fids, matches, scores = ordered
        chosen = slice(offset, offset + count)
        if not len(fids[chosen]):
            return []
        found = {row["fid"]: row for row in self._sql(f"SELECT {FRAME_COLUMNS} FROM frame_summary "
                                                      "SEMI JOIN (SELECT unnest($fids) AS page_fid) ON fid = page_fid",
                                                      {"fids": fids[chosen].tolist()})}
        if self._generation != generation:  # a newer snapshot numbers frames anew: once more on it
            return self._page_frames(table, where, params, sort, offset, count)
        return [dict(found[int(f)], matches=int(m), top_score=float(s))
                for f, m, s in zip(fids[chosen], matches[chosen], scores[chosen]) if int(f) in found]

    def category_ids(self) -> dict[str, list[int]]:
        if self._category_ids is None:
            rows = self._sql("SELECT category, list(DISTINCT category_id) AS ids FROM light_instances GROUP BY 1")
            self._category_ids = {row["category"]: row["ids"] for row in rows}
        return self._category_ids

    def frame(self, source: str, frame: int) -> Optional[dict]:
        """A frame's row, every instance on it, and for a video its neighbours and trails."""
        params = {"source": source, "frame": int(frame)}
        rows = self._sql("SELECT source, frame, time, width, height, num_instances, status, error, shard, "
                         "(SELECT fid FROM frame_ids WHERE source = $source AND frame = $frame) AS fid "
                         "FROM light_frames WHERE source = $source AND frame = $frame", params)
        if not rows:
            return None
        found = rows[0]
        shard, fid = found.pop("shard"), found.pop("fid")
        found["is_image"] = self.sources().get(source, found["time"] is None)
        found["instances"] = self._sql(
            f"SELECT source, frame, {INSTANCE_COLUMNS} FROM light_instances "
            "WHERE fid = $fid ORDER BY instance", {"fid": fid})  # sorted by fid: other row groups skipped
        self._attach_masks(found["instances"], {(source, int(frame)): shard})
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


    def _attach_masks(self, rows: list[dict], shards: dict[tuple, str], keypoints: bool = True) -> None:
        """Adds `mask_rle` (and `keypoints`) to instance rows (with source, frame, instance),
        read from the parts holding their frames (`shards`: {(source, frame): shard})."""
        if not rows:
            return
        columns = ["mask_rle", "keypoints"] if keypoints else ["mask_rle"]
        with self._lock:  # the snapshot the rows came from
            heavy = self._masks.read([(s, f, shard) for (s, f), shard in shards.items()], keypoints)
        for row in rows:
            row.update(zip(columns, heavy.get((row["source"], row["frame"], row["instance"]), (None,) * len(columns))))


def _finite(value):
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
