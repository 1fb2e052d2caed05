"""DuckDB over a job's output: the SQL views' columns, the locked-down connection settings,
running a query with one-line errors, and telling whether a query can observe `track_id`."""

from __future__ import annotations

import json
from contextlib import nullcontext
from typing import Optional

import duckdb
import pyarrow as pa

from maskray.errors import UsageError, first_line
from maskray.pipeline.output.schema import FRAMES_SCHEMA, INSTANCES_SCHEMA

# What `instances` shows in SQL: the parts' columns, with the segment-local `track` number
# replaced by the video's stitched `track_id` (null for images and not yet stitched videos).
INSTANCES_COLUMNS = [n for n in INSTANCES_SCHEMA.names if n != "track"] + ["track_id"]
# One row per track: where and when it was seen, how sure the model was, where its box went.
TRACKS_SQL = """
SELECT source, track_id, mode(category) AS category,
       min(frame) AS first_frame, max(frame) AS last_frame,
       min(time) AS first_time, max(time) AS last_time,
       count(*) AS frames_seen, avg(score) AS mean_score,
       arg_min((x1 + x2) / 2, frame) AS first_x, arg_min((y1 + y2) / 2, frame) AS first_y,
       arg_max((x1 + x2) / 2, frame) AS last_x, arg_max((y1 + y2) / 2, frame) AS last_y,
       avg(x2 - x1) AS mean_width, avg(y2 - y1) AS mean_height
FROM instances WHERE track_id IS NOT NULL GROUP BY source, track_id
"""

LOCKED_DOWN = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "lock_configuration": True,
}


def needs_track_ids(connection, query: str) -> bool:
    """False only when `query` cannot observe `track_id`: DuckDB's own parse of it (no files
    read) shows no `*`, no `tracks` view, and only columns of `instances`/`frames` other than
    `track_id` (an alias or a whole-row reference counts as may-observe). Joining the ids never
    changes the row count (one id per (shard, track)), so such a query answers the same."""
    try:
        tree = json.loads(connection.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0])
    except (duckdb.Error, TypeError, ValueError):
        return True
    if tree.get("error"):
        return True
    plain = set(INSTANCES_COLUMNS + FRAMES_SCHEMA.names) - {"track_id"}
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if node.get("class") == "STAR" or node.get("type") == "STAR":
                return True
            if node.get("class") == "COLUMN_REF" and node.get("column_names", [""])[-1] not in plain:
                return True
            if node.get("type") == "BASE_TABLE" and node.get("table_name") not in ("instances", "frames"):
                return True
            stack.extend(node.values())
    return False


def run_query(connection, query: str, *, limit: Optional[int] = None, params: Optional[dict] = None,
              reading=nullcontext) -> pa.Table:
    """Run `query` on a connection from `Output.connect`; UsageError (one line) when DuckDB
    rejects it. params: values of `$name` placeholders, bound by DuckDB. reading: a context
    that names a missing or damaged part met by the scan (`Output._reading`)."""
    try:
        with reading():
            relation = connection.sql(query, params=params) if params else connection.sql(query)
            # Statements such as SET or CREATE give no relation: they run and return nothing.
            if relation is None:
                return pa.table({})
            return (relation if limit is None else relation.limit(limit)).to_arrow_table()
    except duckdb.Error as error:
        raise UsageError(f"query failed: {duckdb_message(error)}") from None


def duckdb_message(error: Exception) -> str:
    # DuckDB puts a caret diagram ("LINE 1: ...") under its message and may wrap a hint onto
    # the next line: keep the message and its hint, on one line.
    message = str(error).split("\n\nLINE ")[0]
    return first_line(" ".join(message.split()))
