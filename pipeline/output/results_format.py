"""Query results as a user takes them away: an aligned text table, CSV, JSON or Parquet bytes."""

from __future__ import annotations

import json

import pyarrow as pa

from maskray.errors import UsageError
from maskray.pipeline.text_table import table_lines

FORMATS = ("table", "csv", "json", "parquet")


def format_table(table: pa.Table, max_width: int = 40) -> str:
    """An aligned text table: numbers right-aligned, long values cut to `max_width`."""
    columns = [[_cell(value, max_width) for value in column.to_pylist()] for column in table.columns]
    numeric = {i for i, f in enumerate(table.schema) if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)}
    lines = table_lines(table.column_names, zip(*columns), right=numeric, rule=True)
    lines.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(lines) + "\n"


def serialize(table: pa.Table, fmt: str) -> bytes:
    """The bytes of `table` in one of FORMATS."""
    if fmt == "table":
        return format_table(table).encode()
    if fmt == "csv":
        import pyarrow.csv as pacsv

        sink_buffer = pa.BufferOutputStream()
        pacsv.write_csv(_csv_safe(table), sink_buffer)
        return sink_buffer.getvalue().to_pybytes()
    if fmt == "json":
        rows = _shortest_floats(table).to_pylist()
        return (json.dumps(rows, default=_json_default) + "\n").encode()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        sink_buffer = pa.BufferOutputStream()
        pq.write_table(table, sink_buffer, compression="zstd")
        return sink_buffer.getvalue().to_pybytes()
    raise UsageError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")


def _cell(value, max_width: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, list):
        text = "[" + ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value) + "]"
    else:
        text = str(value)
    text = text.replace("\n", " ")
    if len(text) <= max_width:
        return text
    # Keep both ends: a path's file name is at its end, a number's sign at its start.
    head = (max_width - 1) // 3
    return text[:head] + "…" + text[len(text) - (max_width - 1 - head):]


def _csv_safe(table: pa.Table) -> pa.Table:
    """CSV cannot hold lists or structs: such columns become JSON text."""
    columns = []
    for column in table.columns:
        if pa.types.is_nested(column.type):
            column = pa.array([None if v is None else json.dumps(v) for v in column.to_pylist()], pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _shortest_floats(table: pa.Table) -> pa.Table:
    """float32 values as the float64 of their shortest text (0.98, not 0.9800000190734863)."""
    columns = []
    for column in table.columns:
        if column.type == pa.float32():
            column = column.cast(pa.string()).cast(pa.float64())
        elif pa.types.is_list(column.type) and column.type.value_type == pa.float32():
            column = column.cast(pa.list_(pa.string())).cast(pa.list_(pa.float64()))
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _json_default(value):
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
